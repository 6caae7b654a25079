/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Framing of the JSON stream under QMP and the guest agent: partial reads, several messages per
 * read, "\r\n", 0xFF delimiters, bad lines, oversized input, EOF, fd passing, async connect. */
#include "macro.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "json-stream.h"

static int failures;
static int n_test;

#define check(expr)                                                                     \
        do {                                                                            \
                if (!(expr)) {                                                          \
                        fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        failures++;                                                     \
                }                                                                       \
        } while (0)

/* What the handlers saw, one line per event: "M <json>", "B" (bad line), "D", "C", "X <errno>". */
typedef struct Log {
        char text[8192];
        unsigned n_messages;
        unsigned n_disconnects;
        int disconnect_error;
        bool close_on_message;
        bool unref_on_message;
        JsonStream **owner;
} Log;

static void log_add(Log *l, const char *fmt, ...) {
        size_t n = strlen(l->text);
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(l->text + n, sizeof(l->text) - n, fmt, ap);
        va_end(ap);
}

static void on_connected(JsonStream *s, void *userdata) {
        log_add(userdata, "C;");
}

static void on_message(JsonStream *s, json_t *m, int error, void *userdata) {
        Log *l = userdata;

        if (m) {
                _cleanup_free_ char *t = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);

                log_add(l, "M %s;", t);
        } else
                log_add(l, "B %d;", error);
        l->n_messages++;

        if (l->close_on_message)
                json_stream_close(s);
        if (l->unref_on_message)
                *l->owner = json_stream_unref(*l->owner);
}

static void on_delimiter(JsonStream *s, void *userdata) {
        log_add(userdata, "D;");
}

static void on_disconnected(JsonStream *s, int error, void *userdata) {
        Log *l = userdata;

        log_add(l, "X %d;", error);
        l->n_disconnects++;
        l->disconnect_error = error;
}

static const JsonStreamHandlers handlers = {
        .connected = on_connected,
        .message = on_message,
        .delimiter = on_delimiter,
        .disconnected = on_disconnected,
};

static void pump(sd_event *e) {
        /* Run until nothing is pending (twice in a row, to let io settle). */
        for (int idle = 0; idle < 2;)
                idle = sd_event_run(e, 1000) > 0 ? 0 : idle + 1;
}

static void setup(sd_event **e, JsonStream **s, int *peer, Log *l) {
        int sv[2];

        memset(l, 0, sizeof(*l));
        if (sd_event_new(e) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        if (json_stream_new(s, *e, &handlers, l) < 0 || json_stream_adopt_fd(*s, sv[0]) < 0)
                abort();
        *peer = sv[1];
}

static void teardown(sd_event *e, JsonStream *s, int peer) {
        json_stream_unref(s);
        if (peer >= 0)
                close(peer);
        sd_event_unref(e);
}

static void begin(const char *name) {
        printf("# %s\n", name);
        n_test++;
}

static void expect_log(Log *l, const char *want) {
        if (!streq(l->text, want)) {
                fprintf(stderr, "  got:  %s\n  want: %s\n", l->text, want);
                failures++;
        }
}

static void test_byte_at_a_time(void) {
        static const char input[] = "{\"a\": 1}\n{\"b\": [1, \"x\\n\"]}\r\n";
        sd_event *e;
        JsonStream *s;
        Log l;
        int peer;

        begin("byte at a time");
        setup(&e, &s, &peer, &l);
        for (size_t i = 0; i < strlen(input); i++) {
                check(write(peer, input + i, 1) == 1);
                pump(e);
        }
        expect_log(&l, "M {\"a\":1};M {\"b\":[1,\"x\\n\"]};");
        teardown(e, s, peer);
}

static void test_many_in_one_read(void) {
        static const char input[] = "{\"a\":1}\n{\"a\":2}\n\r\n  \n{\"a\":3}\n{\"a\":";
        sd_event *e;
        JsonStream *s;
        Log l;
        int peer;

        begin("several messages in one read, blank lines, a partial tail");
        setup(&e, &s, &peer, &l);
        check(write(peer, input, strlen(input)) == (ssize_t) strlen(input));
        pump(e);
        expect_log(&l, "M {\"a\":1};M {\"a\":2};M {\"a\":3};");
        check(write(peer, "4}\r\n", 4) == 4);
        pump(e);
        expect_log(&l, "M {\"a\":1};M {\"a\":2};M {\"a\":3};M {\"a\":4};");
        teardown(e, s, peer);
}

static void test_delimiter(void) {
        static const char input[] = "{\"stale\":1}\ngarbage{\"x\"\xff{\"return\":5}\n\xff\xff{\"z\":0}\n";
        sd_event *e;
        JsonStream *s;
        Log l;
        int peer;

        begin("0xFF delimiters discard the partial line before them");
        setup(&e, &s, &peer, &l);
        check(write(peer, input, strlen(input)) == (ssize_t) strlen(input));
        pump(e);
        expect_log(&l, "M {\"stale\":1};D;M {\"return\":5};D;D;M {\"z\":0};");
        teardown(e, s, peer);

        /* The same, one byte at a time. */
        setup(&e, &s, &peer, &l);
        for (size_t i = 0; i < strlen(input); i++) {
                check(write(peer, input + i, 1) == 1);
                pump(e);
        }
        expect_log(&l, "M {\"stale\":1};D;M {\"return\":5};D;D;M {\"z\":0};");
        teardown(e, s, peer);
}

static void test_bad_line(void) {
        static const char input[] = "not json\n{\"a\":1}\n\"scalar\"\n";
        sd_event *e;
        JsonStream *s;
        Log l;
        int peer;

        begin("a line that is not JSON is reported and skipped");
        setup(&e, &s, &peer, &l);
        check(write(peer, input, strlen(input)) == (ssize_t) strlen(input));
        pump(e);
        expect_log(&l, "B -74;M {\"a\":1};B -74;");
        check(json_stream_is_connected(s));
        teardown(e, s, peer);
}

static void test_oversize(void) {
        char buf[4096];
        sd_event *e;
        JsonStream *s;
        Log l;
        int peer;

        begin("oversized input fails with -EMSGSIZE, once");
        setup(&e, &s, &peer, &l);
        json_stream_set_input_max(s, 1024);
        memset(buf, ' ', sizeof(buf));
        buf[0] = '[';
        check(write(peer, buf, sizeof(buf)) == (ssize_t) sizeof(buf));
        pump(e);
        check(l.n_disconnects == 1);
        check(l.disconnect_error == -EMSGSIZE);
        check(!json_stream_is_open(s));
        /* Also a complete line beyond the limit. */
        teardown(e, s, peer);

        setup(&e, &s, &peer, &l);
        json_stream_set_input_max(s, 1024);
        buf[sizeof(buf) - 2] = ']';
        buf[sizeof(buf) - 1] = '\n';
        check(write(peer, buf, sizeof(buf)) == (ssize_t) sizeof(buf));
        pump(e);
        expect_log(&l, "X -90;");
        teardown(e, s, peer);

        /* The default limit lets a large (schema-sized) message through. */
        setup(&e, &s, &peer, &l);
        {
                size_t n = 3 * 1024 * 1024;
                _cleanup_free_ char *big = malloc(n);
                size_t off = 0;

                memset(big, ' ', n);
                big[0] = '[';
                big[n - 2] = ']';
                big[n - 1] = '\n';
                while (off < n) {
                        ssize_t k = write(peer, big + off, n - off > 65536 ? 65536 : n - off);
                        check(k > 0);
                        off += k;
                        pump(e);
                }
        }
        expect_log(&l, "M [];");
        teardown(e, s, peer);
}

static void test_eof(void) {
        sd_event *e;
        JsonStream *s;
        Log l;
        int peer;

        begin("EOF after a message: the message, then one disconnect");
        setup(&e, &s, &peer, &l);
        check(write(peer, "{\"last\":true}\n{\"cut", 19) == 19);
        close(peer);
        pump(e);
        expect_log(&l, "M {\"last\":true};X -104;");
        check(json_stream_send_raw(s, "x", 1, -1) == -ENOTCONN);
        teardown(e, s, -1);
}

static void test_close_in_handler(void) {
        static const char input[] = "{\"a\":1}\n{\"a\":2}\n";
        sd_event *e;
        JsonStream *s;
        Log l;
        int peer;

        begin("a handler closing the stream stops delivery");
        setup(&e, &s, &peer, &l);
        l.close_on_message = true;
        check(write(peer, input, strlen(input)) == (ssize_t) strlen(input));
        pump(e);
        expect_log(&l, "M {\"a\":1};");
        teardown(e, s, peer);

        begin("a handler dropping the last reference");
        setup(&e, &s, &peer, &l);
        l.unref_on_message = true;
        l.owner = &s;
        check(write(peer, input, strlen(input)) == (ssize_t) strlen(input));
        pump(e);
        expect_log(&l, "M {\"a\":1};");
        check(s == NULL);
        teardown(e, s, peer);
}

static void test_send_with_fd(void) {
        _cleanup_(json_decrefp) json_t *m = NULL;
        union {
                struct cmsghdr cmsghdr;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control;
        char data[256] = {}, piped[8] = {};
        struct iovec iov = { data, sizeof(data) - 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control) };
        struct cmsghdr *cmsg;
        int pipefd[2], got = -1;
        size_t have = 0;
        sd_event *e;
        JsonStream *s;
        Log l;
        int peer;

        begin("send queues lines, an fd travels with SCM_RIGHTS");
        setup(&e, &s, &peer, &l);
        check(pipe2(pipefd, O_CLOEXEC) == 0);

        check(json_stream_send_raw(s, "\xff", 1, -1) == 0);
        m = json_pack("{s:s, s:{s:s}}", "execute", "getfd", "arguments", "fdname", "x");
        check(json_stream_send(s, m, pipefd[1]) == 0);
        close(pipefd[1]);   /* the stream holds its own copy */
        check(json_stream_get_queued(s) > 0);
        pump(e);
        check(json_stream_get_queued(s) == 0);

        while (have < 50) {
                ssize_t n;

                iov.iov_base = data + have;
                iov.iov_len = sizeof(data) - 1 - have;
                mh.msg_control = &control;
                mh.msg_controllen = sizeof(control);
                n = recvmsg(peer, &mh, MSG_CMSG_CLOEXEC);
                if (n <= 0)
                        break;
                for (cmsg = CMSG_FIRSTHDR(&mh); cmsg; cmsg = CMSG_NXTHDR(&mh, cmsg))
                        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
                                memcpy(&got, CMSG_DATA(cmsg), sizeof(int));
                have += n;
                if (memchr(data + 1, '\n', have > 0 ? have - 1 : 0))
                        break;
        }
        check(streq(data, "\xff{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"x\"}}\n"));
        check(got >= 0);
        if (got >= 0) {
                check(write(got, "hi", 2) == 2);
                close(got);
                check(read(pipefd[0], piped, sizeof(piped)) == 2 && streq(piped, "hi"));
        }
        close(pipefd[0]);
        teardown(e, s, peer);
}

static void test_connect(void) {
        char dir[] = "/tmp/test-json-stream.XXXXXX", path[128];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int listener, conn;
        sd_event *e;
        JsonStream *s;
        Log l = {};

        begin("connect: absent socket fails from the loop; present socket connects");
        check(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/sock", dir);

        check(sd_event_new(&e) >= 0);
        check(json_stream_new(&s, e, &handlers, &l) >= 0);

        check(json_stream_connect(s, path) == 0);
        check(l.n_disconnects == 0);   /* not from inside the call */
        check(json_stream_connect(s, path) == -EISCONN);
        pump(e);
        expect_log(&l, "X -2;");

        listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        memcpy(sa.sun_path, path, strlen(path) + 1);   /* path is short: tmpdir + "/sock" */
        check(bind(listener, (struct sockaddr *) &sa, sizeof(sa)) == 0);
        check(listen(listener, 1) == 0);

        memset(l.text, 0, sizeof(l.text));
        check(json_stream_connect(s, path) == 0);
        check(json_stream_send_raw(s, "{}\n", 3, -1) == 0);   /* queued while connecting */
        pump(e);
        expect_log(&l, "C;");
        check(json_stream_is_connected(s));
        conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        check(conn >= 0);
        {
                char b[8] = {};
                check(read(conn, b, sizeof(b)) == 3 && streq(b, "{}\n"));
        }
        check(write(conn, "{\"ok\":1}\n", 9) == 9);
        pump(e);
        expect_log(&l, "C;M {\"ok\":1};");

        json_stream_close(s);
        check(!json_stream_is_open(s));
        pump(e);
        expect_log(&l, "C;M {\"ok\":1};");   /* closing calls no handler */

        close(conn);
        close(listener);
        unlink(path);
        rmdir(dir);
        json_stream_unref(s);
        sd_event_unref(e);
}

int main(void) {
        test_byte_at_a_time();
        test_many_in_one_read();
        test_delimiter();
        test_bad_line();
        test_oversize();
        test_eof();
        test_close_in_handler();
        test_send_with_fd();
        test_connect();

        printf("%s: %d tests, %d failed checks\n", failures ? "FAIL" : "PASS", n_test, failures);
        return failures ? 1 : 0;
}
