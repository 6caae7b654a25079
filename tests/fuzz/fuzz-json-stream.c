/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the line reader under QMP and the guest agent. json-stream has no
 * "feed bytes" entry point, so the input goes through a socketpair into a stream on a
 * private sd-event loop, which is run without blocking until the stream saw EOF.
 *
 * Input: two control bytes, then the bytes the peer sends.
 *   byte 0, bits 0-2  size of each write: 1, 2, 3, 7, 64, 512, 4096 or everything at once
 *                     (partial reads and lines split across reads)
 *           bit 3     input limit of 64 bytes (the -EMSGSIZE path)
 *           bit 4     the message handler closes the stream at message number N
 *           bit 5     the message handler drops the last reference at message number N
 *           bit 6     the delimiter handler closes the stream
 *           bit 7     queue a message of our own first (output and input interleaved)
 *   byte 1            N */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "json-stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct State {
        JsonStream *stream;     /* NULL once a handler dropped it */
        uint8_t flags;
        unsigned at;
        unsigned n_messages;
        bool disconnected;
} State;

static void on_message(JsonStream *s, json_t *m, int error, void *userdata) {
        State *st = userdata;

        /* Touch what the reader produced, as the QMP client would. */
        if (m) {
                char *t = json_dumps(m, JSON_COMPACT);

                free(t);
        } else if (error != -EBADMSG)
                abort();

        if (st->n_messages++ != st->at)
                return;
        if (st->flags & 0x10)
                json_stream_close(s);
        if (st->flags & 0x20)
                st->stream = json_stream_unref(st->stream);
}

static void on_delimiter(JsonStream *s, void *userdata) {
        State *st = userdata;

        if (st->flags & 0x40)
                json_stream_close(s);
}

static void on_disconnected(JsonStream *s, int error, void *userdata) {
        State *st = userdata;

        if (error >= 0 || st->disconnected)
                abort();
        st->disconnected = true;
}

static const JsonStreamHandlers handlers = {
        .message = on_message,
        .delimiter = on_delimiter,
        .disconnected = on_disconnected,
};

static void run_loop(sd_event *e) {
        /* Dispatch everything that is ready without waiting; bounded in case a source stays ready. */
        for (unsigned i = 0; i < 10000; i++)
                if (sd_event_run(e, 0) <= 0)
                        return;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const size_t chunk_sizes[] = { 1, 2, 3, 7, 64, 512, 4096, SIZE_MAX };
        static sd_event *event;
        State st = {};
        size_t chunk, done = 0;
        int fds[2], r;

        if (size < 2)
                return 0;
        st.flags = data[0];
        st.at = data[1];
        chunk = chunk_sizes[st.flags & 7];
        data += 2;
        size -= 2;

        if (!event && sd_event_new(&event) < 0)
                abort();

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
                abort();
        r = json_stream_new(&st.stream, event, &handlers, &st);
        if (r < 0)
                abort();
        r = json_stream_adopt_fd(st.stream, fds[0]);
        if (r < 0)
                abort();
        if (st.flags & 0x08)
                json_stream_set_input_max(st.stream, 64);
        if (st.flags & 0x80) {
                json_t *hello = json_pack("{s:s}", "execute", "qmp_capabilities");

                if (!hello || json_stream_send(st.stream, hello, -1) < 0)
                        abort();
                json_decref(hello);
        }

        while (done < size) {
                size_t n = chunk < size - done ? chunk : size - done;
                ssize_t k = write(fds[1], data + done, n);

                if (k < 0) {
                        if (errno != EAGAIN)
                                break;  /* the stream closed its end */
                } else
                        done += k;
                run_loop(event);
                if (!st.stream || !json_stream_is_open(st.stream))
                        break;
        }

        (void) shutdown(fds[1], SHUT_WR);
        run_loop(event);

        /* An open stream must have seen the EOF by now. */
        if (st.stream && json_stream_is_open(st.stream))
                abort();

        (void) close(fds[1]);
        json_stream_unref(st.stream);
        return 0;
}
