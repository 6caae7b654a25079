/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A non-blocking AF_UNIX stream that carries newline-terminated JSON messages, on sd-event.
 * The transport under the QMP and guest-agent clients. Never blocks, never logs.
 *
 * Input: each line ("\n", optionally "\r\n") is parsed as one JSON object or array. A 0xFF byte
 * (the guest agent's guest-sync-delimited sentinel) is skipped: the partial line in front of it
 * is discarded and the delimiter handler is told, in order with the messages around it.
 * A line longer than the input limit (default 16 MiB) fails the connection with -EMSGSIZE.
 *
 * Output: messages are queued and written when the socket takes them; a message may carry one
 * fd, sent with SCM_RIGHTS along with its first byte. Sending while still connecting is fine.
 *
 * Every handler runs from the event loop, never from inside a json_stream_*() call. A handler may
 * close, reconnect or drop the last reference to the stream. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

typedef struct JsonStream JsonStream;

typedef struct JsonStreamHandlers {
        /* json_stream_connect() succeeded. */
        void (*connected)(JsonStream *s, void *userdata);
        /* One message (borrowed: valid during the call). For a line that is not valid JSON,
         * message is NULL and error is -EBADMSG; the stream goes on. */
        void (*message)(JsonStream *s, json_t *message, int error, void *userdata);
        /* A 0xFF byte arrived. Optional. */
        void (*delimiter)(JsonStream *s, void *userdata);
        /* The connection could not be made or ended: -ECONNRESET on EOF, -EMSGSIZE for an
         * oversized line, the connect()/read()/write() errno otherwise. Called once per connection;
         * the stream is already closed then and may be connected again. */
        void (*disconnected)(JsonStream *s, int error, void *userdata);
} JsonStreamHandlers;

#define JSON_STREAM_INPUT_MAX_DEFAULT (16U * 1024U * 1024U)

int json_stream_new(JsonStream **ret, sd_event *event, const JsonStreamHandlers *handlers, void *userdata);
JsonStream *json_stream_ref(JsonStream *s);
JsonStream *json_stream_unref(JsonStream *s);  /* closes without calling any handler */
static inline void json_stream_unrefp(JsonStream **s) {
        if (*s)
                json_stream_unref(*s);
}

/* Starts connecting. Returns < 0 only when the attempt could not start (-EISCONN when already
 * open, -EINVAL for a bad path, -ENOMEM...); a failing connect() reaches the disconnected handler. */
int json_stream_connect(JsonStream *s, const char *socket_path);
/* Takes over an already connected socket (e.g. one end of a socketpair()); fd is owned afterwards,
 * also on failure. No connected handler call. */
int json_stream_adopt_fd(JsonStream *s, int fd);
/* Drops the connection, the queues and any pending handler call, without calling a handler. */
void json_stream_close(JsonStream *s);

bool json_stream_is_open(JsonStream *s);       /* connecting or connected */
bool json_stream_is_connected(JsonStream *s);

/* Queue message (serialized compactly plus "\n"). fd >= 0 is dup'ed and sent with the first byte. */
int json_stream_send(JsonStream *s, json_t *message, int fd);
/* Queue raw bytes (e.g. the 0xFF that resets the guest agent's parser). */
int json_stream_send_raw(JsonStream *s, const void *data, size_t size, int fd);
/* Bytes queued and not yet written. */
size_t json_stream_get_queued(JsonStream *s);
/* Writes what is queued now rather than on the loop's next turn, for a caller about to be
 * busy for a while. Errors and short writes are left to the loop, which reports them. */
void json_stream_flush(JsonStream *s);

void json_stream_set_input_max(JsonStream *s, size_t max);
