/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The QMP and guest-agent clients against fake peers. Each peer is a forked child that accepts on a
 * unix socket in a temp dir and plays a script with blocking I/O; the test's side runs sd-event. */
#include "macro.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "agent.h"
#include "qmp.h"

static int failures;
static int n_test;
static char tmpdir[] = "/tmp/test-qmp.XXXXXX";

#define check(expr)                                                                     \
        do {                                                                            \
                if (!(expr)) {                                                          \
                        fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        failures++;                                                     \
                }                                                                       \
        } while (0)

static void begin(const char *name) {
        printf("# %s\n", name);
        n_test++;
}

/* ---- the fake peer (child process, blocking) ---- */

typedef struct Peer {
        int fd;
        char buf[1 << 20];
        size_t size;
        int last_fd;           /* last fd that came with SCM_RIGHTS */
} Peer;

#define peer_fail(...)                                                  \
        do {                                                            \
                fprintf(stderr, "  peer: " __VA_ARGS__);                \
                fputc('\n', stderr);                                    \
                _exit(1);                                               \
        } while (0)

/* Reads more input; returns 0 on EOF. */
static ssize_t peer_fill(Peer *p) {
        union {
                struct cmsghdr cmsghdr;
                uint8_t buf[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        struct iovec iov = { p->buf + p->size, sizeof(p->buf) - p->size };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control) };
        ssize_t n;

        n = recvmsg(p->fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0)
                peer_fail("recvmsg: %m");
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                        memcpy(&p->last_fd, CMSG_DATA(c), sizeof(int));
        p->size += n;
        return n;
}

/* Next line as JSON, skipping any 0xFF bytes; NULL on EOF. */
static json_t *peer_read(Peer *p) {
        for (;;) {
                char *nl;

                while (p->size > 0 && (unsigned char) p->buf[0] == 0xFF) {
                        memmove(p->buf, p->buf + 1, --p->size);
                }
                nl = memchr(p->buf, '\n', p->size);
                if (nl) {
                        size_t len = nl - p->buf + 1;
                        json_t *j = json_loadb(p->buf, len, 0, NULL);

                        if (!j)
                                peer_fail("bad JSON from client: %.*s", (int) len, p->buf);
                        memmove(p->buf, p->buf + len, p->size - len);
                        p->size -= len;
                        return j;
                }
                if (peer_fill(p) == 0)
                        return NULL;
        }
}

static void peer_write(Peer *p, const char *fmt, ...) {
        char text[65536];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        if (write(p->fd, text, n) != n)
                peer_fail("write: %m");
}

/* Reads a command, checks its name, returns its id (QMP) or 0. */
static json_int_t peer_expect(Peer *p, const char *command, json_t **ret_args) {
        json_t *j = peer_read(p);
        json_int_t id;

        if (!j)
                peer_fail("EOF while waiting for %s", command);
        if (!streq_ptr(json_string_value(json_object_get(j, "execute")), command))
                peer_fail("expected %s, got %s", command, json_dumps(j, JSON_COMPACT));
        id = json_integer_value(json_object_get(j, "id"));
        if (ret_args)
                *ret_args = json_incref(json_object_get(j, "arguments"));
        json_decref(j);
        return id;
}

static void peer_expect_eof(Peer *p) {
        json_t *j = peer_read(p);

        if (j)
                peer_fail("expected EOF, got %s", json_dumps(j, JSON_COMPACT));
}

/* Reads and ignores everything until the client hangs up. */
static void peer_drain(Peer *p) {
        while (peer_fill(p) > 0)
                p->size = 0;
}

/* A trimmed QEMU 7.2 schema: numbered type names, "transaction" reached through references. */
static const char schema[] =
        "[{\"name\":\"query-status\",\"meta-type\":\"command\",\"arg-type\":\"0\",\"ret-type\":\"1\"},"
        "{\"name\":\"transaction\",\"meta-type\":\"command\",\"arg-type\":\"27\",\"ret-type\":\"0\"},"
        "{\"name\":\"0\",\"meta-type\":\"object\",\"members\":[]},"
        "{\"name\":\"27\",\"meta-type\":\"object\",\"members\":[{\"name\":\"actions\",\"type\":\"[28]\"},"
        "{\"name\":\"properties\",\"default\":null,\"type\":\"29\"}]},"
        "{\"name\":\"[28]\",\"meta-type\":\"array\",\"element-type\":\"28\"},"
        "{\"name\":\"28\",\"meta-type\":\"object\",\"members\":[{\"name\":\"type\",\"type\":\"30\"}],\"tag\":\"type\","
        "\"variants\":[{\"case\":\"abort\",\"type\":\"31\"},{\"case\":\"blockdev-snapshot\",\"type\":\"32\"},"
        "{\"case\":\"blockdev-snapshot-sync\",\"type\":\"33\"}]},"
        "{\"name\":\"30\",\"meta-type\":\"enum\",\"values\":[\"abort\",\"blockdev-snapshot\",\"blockdev-snapshot-sync\"]},"
        "{\"name\":\"int\",\"meta-type\":\"builtin\",\"json-type\":\"int\"}]";

static void peer_handshake(Peer *p) {
        json_int_t id;

        peer_write(p, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": [\"oob\"]}}\r\n");
        id = peer_expect(p, "qmp_capabilities", NULL);
        peer_write(p, "{\"return\": {}, \"id\": %lld}\r\n", (long long) id);
        id = peer_expect(p, "query-commands", NULL);
        peer_write(p, "{\"return\": [{\"name\": \"query-status\"}, {\"name\": \"transaction\"}, {\"name\": \"getfd\"}], \"id\": %lld}\r\n",
                   (long long) id);
        id = peer_expect(p, "query-qmp-schema", NULL);
        peer_write(p, "{\"return\": %s, \"id\": %lld}\r\n", schema, (long long) id);
}

typedef void (*peer_script)(Peer *p, unsigned connection);

static char *socket_path(const char *name) {
        static char path[256];

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        return path;
}

/* Forks a peer that serves n_connections connections, one after the other, on a fresh socket. */
static pid_t peer_start(const char *name, unsigned n_connections, peer_script script) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int listener;
        pid_t pid;

        if (strlen(socket_path(name)) >= sizeof(sa.sun_path))
                abort();
        memcpy(sa.sun_path, socket_path(name), strlen(socket_path(name)) + 1);
        (void) unlink(sa.sun_path);
        listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(listener, 4) < 0)
                abort();

        fflush(stdout);
        pid = fork();
        if (pid < 0)
                abort();
        if (pid == 0) {
                static Peer p;

                alarm(20);
                for (unsigned i = 0; i < n_connections; i++) {
                        p.fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
                        if (p.fd < 0)
                                peer_fail("accept: %m");
                        p.size = 0;
                        p.last_fd = -1;
                        script(&p, i);
                        close(p.fd);
                }
                _exit(0);
        }

        close(listener);
        return pid;
}

static void peer_wait(pid_t pid) {
        int status;

        check(waitpid(pid, &status, 0) == pid);
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- the client side ---- */

typedef struct Ctx {
        sd_event *event;
        Qmp *qmp;
        Agent *agent;
        bool in_call;          /* set around qmp_call()/agent_call(): callbacks must not see it */
        unsigned n_up, n_down;
        int down_error;
        unsigned n_events;
        char log[4096];        /* order of callbacks */
        unsigned n_replies;
        int pipe_read;
} Ctx;

static void ctx_log(Ctx *c, const char *fmt, ...) {
        size_t n = strlen(c->log);
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->log + n, sizeof(c->log) - n, fmt, ap);
        va_end(ap);
}

static void on_state(Qmp *q, bool connected, int error, void *userdata) {
        Ctx *c = userdata;

        check(!c->in_call);
        if (connected)
                c->n_up++;
        else {
                c->n_down++;
                c->down_error = error;
        }
        ctx_log(c, "%s(%d);", connected ? "up" : "down", error);
}

static void on_event(Qmp *q, const char *event, json_t *data, void *userdata) {
        Ctx *c = userdata;

        check(!c->in_call);
        c->n_events++;
        ctx_log(c, "ev:%s;", event);
}

/* Logs "tag=ok" or "tag=<errno>:<class>" for each reply; tag is the userdata string. */
static Ctx *current;

static void on_reply(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        check(!current->in_call);
        current->n_replies++;
        if (reply)
                ctx_log(current, "%s=ok;", (const char *) userdata);
        else
                ctx_log(current, "%s=%d:%s;", (const char *) userdata, err->error, err->klass ?: "-");
}

static bool run_until(Ctx *c, bool (*done)(Ctx *c)) {
        for (int i = 0; i < 2000 && !done(c); i++)
                if (sd_event_run(c->event, 10 * USEC_PER_MSEC) < 0)
                        return false;
        return done(c);
}

static unsigned want_replies;
static bool replies_done(Ctx *c) {
        return c->n_replies >= want_replies;
}
static bool up_done(Ctx *c) {
        return c->n_up > 0 || c->n_down > 0;
}
static bool down_done(Ctx *c) {
        return c->n_down > 0;
}

static int call(Ctx *c, const char *command, json_t *args, int fd, uint64_t timeout, const char *tag, uint64_t *id) {
        int r;

        c->in_call = true;
        r = qmp_call(c->qmp, command, args, fd, timeout, on_reply, (void *) tag, id);
        c->in_call = false;
        return r;
}

static void ctx_init(Ctx *c, const char *socket) {
        memset(c, 0, sizeof(*c));
        current = c;
        if (sd_event_new(&c->event) < 0)
                abort();
        if (socket) {
                check(qmp_new(&c->qmp, c->event, socket_path(socket)) == 0);
                qmp_set_handlers(c->qmp, on_state, on_event, c);
        }
}

static void ctx_done(Ctx *c) {
        qmp_unref(c->qmp);
        agent_unref(c->agent);
        sd_event_unref(c->event);
}

static void expect_log(Ctx *c, const char *want) {
        if (!streq(c->log, want)) {
                fprintf(stderr, "  got:  %s\n  want: %s\n", c->log, want);
                failures++;
        }
}

/* -- handshake, probing, events, out-of-order replies, errors, fd passing -- */

static void script_main(Peer *p, unsigned connection) {
        json_int_t a, b, e, g;
        json_t *args;
        char buf[16] = {};

        peer_handshake(p);
        a = peer_expect(p, "query-status", NULL);
        b = peer_expect(p, "query-name", NULL);
        peer_write(p, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n");
        peer_write(p, "{\"return\": {\"name\": \"vm\"}, \"id\": %lld}\r\n{\"event\": \"RESUME\"}\r\n", (long long) b);
        peer_write(p, "{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": %lld}\r\n", (long long) a);

        e = peer_expect(p, "bogus", NULL);
        peer_write(p, "{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command bogus has not been found\"}}\r\n",
                   (long long) e);

        g = peer_expect(p, "getfd", &args);
        if (p->last_fd < 0)
                peer_fail("getfd without an fd");
        if (!streq_ptr(json_string_value(json_object_get(args, "fdname")), "save"))
                peer_fail("getfd arguments");
        json_decref(args);
        snprintf(buf, sizeof(buf), "via-fd");
        if (write(p->last_fd, buf, strlen(buf)) != (ssize_t) strlen(buf))
                peer_fail("write to passed fd");
        close(p->last_fd);
        peer_write(p, "{\"return\": {}, \"id\": %lld}\n", (long long) g);
        peer_expect_eof(p);
}

static QmpError last_error;
static char last_desc[256], last_class[64];
static void on_reply_keep_error(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        on_reply(q, reply, err, userdata);
        if (err) {
                last_error = *err;
                snprintf(last_desc, sizeof(last_desc), "%s", err->desc ?: "");
                snprintf(last_class, sizeof(last_class), "%s", err->klass ?: "");
        }
}

static void test_main(void) {
        int pipefd[2];
        char buf[16] = {};
        pid_t pid;
        Ctx c;

        begin("qmp: handshake, probe, events between replies, out of order, error, getfd");
        pid = peer_start("main", 1, script_main);
        ctx_init(&c, "main");

        check(!qmp_is_connected(c.qmp));
        check(call(&c, "query-status", NULL, -1, 0, "early", NULL) == -ENOTCONN);
        check(qmp_connect(c.qmp) == 0);
        check(qmp_connect(c.qmp) == -EALREADY);
        check(run_until(&c, up_done));
        expect_log(&c, "up(0);");
        check(qmp_is_connected(c.qmp));
        check(qmp_has_command(c.qmp, "query-status"));
        check(qmp_has_command(c.qmp, "getfd"));
        check(!qmp_has_command(c.qmp, "blockdev-snapshot"));
        check(qmp_has_transaction_action(c.qmp, "blockdev-snapshot"));
        check(qmp_has_transaction_action(c.qmp, "blockdev-snapshot-sync"));
        check(!qmp_has_transaction_action(c.qmp, "block-dirty-bitmap-add"));

        check(call(&c, "query-status", NULL, -1, 0, "status", NULL) == 0);
        check(call(&c, "query-name", json_object(), -1, 0, "name", NULL) == 0);
        check(c.n_replies == 0);
        want_replies = 2;
        check(run_until(&c, replies_done));
        expect_log(&c, "up(0);ev:STOP;name=ok;ev:RESUME;status=ok;");

        c.in_call = true;
        check(qmp_call(c.qmp, "bogus", NULL, -1, 0, on_reply_keep_error, (void *) "bogus", NULL) == 0);
        c.in_call = false;
        want_replies = 3;
        check(run_until(&c, replies_done));
        check(last_error.error == -EIO);
        check(streq(last_class, "CommandNotFound"));
        check(streq(last_desc, "The command bogus has not been found"));

        check(pipe2(pipefd, O_CLOEXEC) == 0);
        check(call(&c, "getfd", json_pack("{s:s}", "fdname", "save"), pipefd[1], 0, "getfd", NULL) == 0);
        close(pipefd[1]);
        want_replies = 4;
        check(run_until(&c, replies_done));
        check(strstr(c.log, "getfd=ok;") != NULL);
        check(read(pipefd[0], buf, sizeof(buf)) == 6 && streq(buf, "via-fd"));
        close(pipefd[0]);

        /* Bad arguments never reach the wire. */
        check(call(&c, "x", json_string("not an object"), -1, 0, "x", NULL) == -EINVAL);

        qmp_disconnect(c.qmp);
        check(!qmp_is_connected(c.qmp));
        ctx_done(&c);
        peer_wait(pid);
}

/* -- timeout, late reply dropped, connection kept -- */

static void script_timeout(Peer *p, unsigned connection) {
        json_int_t slow, ping;

        peer_handshake(p);
        slow = peer_expect(p, "slow", NULL);
        /* The client sends "ping" only after "slow" timed out: answer both now. */
        ping = peer_expect(p, "ping", NULL);
        peer_write(p, "{\"return\": {\"late\": true}, \"id\": %lld}\n", (long long) slow);
        peer_write(p, "{\"return\": {}, \"id\": %lld}\n", (long long) ping);
        peer_expect_eof(p);
}

static void test_timeout(void) {
        pid_t pid;
        Ctx c;

        begin("qmp: a call times out, its late reply is dropped, the connection stays");
        pid = peer_start("timeout", 1, script_timeout);
        ctx_init(&c, "timeout");
        check(qmp_connect(c.qmp) == 0);
        check(run_until(&c, up_done));

        check(call(&c, "slow", NULL, -1, 200 * USEC_PER_MSEC, "slow", NULL) == 0);
        want_replies = 1;
        check(run_until(&c, replies_done));
        check(call(&c, "ping", NULL, -1, 0, "ping", NULL) == 0);
        want_replies = 2;
        check(run_until(&c, replies_done));
        /* Give a wrongly delivered late reply a chance to show up. */
        for (int i = 0; i < 10; i++)
                (void) sd_event_run(c.event, 10 * USEC_PER_MSEC);
        expect_log(&c, "up(0);slow=-110:-;ping=ok;");
        check(qmp_is_connected(c.qmp));

        ctx_done(&c);
        peer_wait(pid);
}

/* -- peer disconnect mid-command, then reconnect -- */

static void script_drop(Peer *p, unsigned connection) {
        peer_handshake(p);
        if (connection == 0) {
                (void) peer_expect(p, "one", NULL);
                (void) peer_expect(p, "two", NULL);
                return;  /* hang up with both pending */
        }
        peer_expect_eof(p);
}

static void reconnect_on_down(Qmp *q, bool connected, int error, void *userdata) {
        on_state(q, connected, error, userdata);
        if (!connected && ((Ctx *) userdata)->n_down == 1)
                check(qmp_connect(q) == 0);
}

static bool up_twice(Ctx *c) {
        return c->n_up >= 2;
}

static void test_disconnect(void) {
        pid_t pid;
        Ctx c;

        begin("qmp: peer hangs up mid-command: all pending fail with -ECONNRESET, then state(false); reconnect");
        pid = peer_start("drop", 2, script_drop);
        ctx_init(&c, "drop");
        qmp_set_handlers(c.qmp, reconnect_on_down, on_event, &c);
        check(qmp_connect(c.qmp) == 0);
        check(run_until(&c, up_done));
        check(call(&c, "one", NULL, -1, 0, "one", NULL) == 0);
        check(call(&c, "two", NULL, -1, 0, "two", NULL) == 0);
        check(run_until(&c, up_twice));
        /* Pending calls complete in whatever order, but both before "down". */
        check(streq(c.log, "up(0);one=-104:-;two=-104:-;down(-104);up(0);") ||
              streq(c.log, "up(0);two=-104:-;one=-104:-;down(-104);up(0);"));
        if (!strstr(c.log, "down(-104);up(0);"))
                fprintf(stderr, "  got: %s\n", c.log);
        check(qmp_has_transaction_action(c.qmp, "blockdev-snapshot"));
        ctx_done(&c);
        peer_wait(pid);
}

/* -- the callback drops the last reference; qmp_cancel; qmp_disconnect -- */

static void script_two_calls(Peer *p, unsigned connection) {
        json_int_t a;

        peer_handshake(p);
        a = peer_expect(p, "first", NULL);
        (void) peer_expect(p, "second", NULL);
        if (connection == 0)
                peer_write(p, "{\"return\": {}, \"id\": %lld}\n", (long long) a);
        peer_expect_eof(p);
}

static void on_reply_unref(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        on_reply(q, reply, err, userdata);
        current->qmp = qmp_unref(current->qmp);
}

static void test_unref_in_callback(void) {
        pid_t pid;
        Ctx c;

        begin("qmp: a reply callback drops the last reference: others get -ECANCELED");
        pid = peer_start("unref", 1, script_two_calls);
        ctx_init(&c, "unref");
        check(qmp_connect(c.qmp) == 0);
        check(run_until(&c, up_done));
        check(qmp_call(c.qmp, "first", NULL, -1, 0, on_reply_unref, (void *) "first", NULL) == 0);
        check(call(&c, "second", NULL, -1, 0, "second", NULL) == 0);
        want_replies = 2;
        check(run_until(&c, replies_done));
        expect_log(&c, "up(0);first=ok;second=-125:-;");
        check(c.qmp == NULL);
        ctx_done(&c);
        peer_wait(pid);
}

static void test_cancel_and_disconnect(void) {
        uint64_t id;
        pid_t pid;
        Ctx c;

        begin("qmp: qmp_cancel silences a call; qmp_disconnect fails the rest with -ECANCELED from the loop");
        pid = peer_start("cancel", 1, script_two_calls);
        ctx_init(&c, "cancel");
        check(qmp_connect(c.qmp) == 0);
        check(run_until(&c, up_done));
        check(call(&c, "first", NULL, -1, 0, "first", &id) == 0);
        check(call(&c, "second", NULL, -1, 0, "second", NULL) == 0);
        qmp_cancel(c.qmp, id);
        for (int i = 0; i < 20; i++)
                (void) sd_event_run(c.event, 10 * USEC_PER_MSEC);
        expect_log(&c, "up(0);");

        c.in_call = true;
        qmp_disconnect(c.qmp);
        c.in_call = false;
        want_replies = 1;
        check(run_until(&c, replies_done));
        expect_log(&c, "up(0);second=-125:-;");
        ctx_done(&c);
        peer_wait(pid);
}

static void test_connect_fail(void) {
        Ctx c;

        begin("qmp: connecting to an absent socket reports state(false) from the loop");
        ctx_init(&c, "absent");
        c.in_call = true;
        check(qmp_connect(c.qmp) == 0);
        c.in_call = false;
        check(c.n_down == 0);
        check(run_until(&c, down_done));
        expect_log(&c, "down(-2);");
        check(qmp_connect(c.qmp) == 0);   /* and it may be tried again */
        ctx_done(&c);
}

static void script_silent(Peer *p, unsigned connection) {
        /* Accept and say nothing, like a chardev with no agent behind it. */
        peer_drain(p);
}

/* ---- guest agent ---- */

static void on_agent_reply(Agent *a, json_t *reply, const QmpError *err, void *userdata) {
        check(!current->in_call);
        current->n_replies++;
        if (reply) {
                _cleanup_free_ char *t = json_dumps(reply, JSON_COMPACT | JSON_ENCODE_ANY);
                ctx_log(current, "%s=%s;", (const char *) userdata, t);
        } else
                ctx_log(current, "%s=%d:%s;", (const char *) userdata, err->error, err->desc);
}

static int acall(Ctx *c, const char *command, uint64_t timeout, const char *tag) {
        int r;

        c->in_call = true;
        r = agent_call(c->agent, command, NULL, timeout, on_agent_reply, (void *) tag, NULL);
        c->in_call = false;
        return r;
}

static json_int_t agent_expect_sync(Peer *p) {
        json_t *args = NULL;
        json_int_t id;

        /* The client must start with 0xFF. */
        while (p->size == 0)
                if (peer_fill(p) == 0)
                        peer_fail("EOF before sync");
        if ((unsigned char) p->buf[0] != 0xFF)
                peer_fail("no 0xFF before guest-sync-delimited");
        (void) peer_expect(p, "guest-sync-delimited", &args);
        id = json_integer_value(json_object_get(args, "id"));
        json_decref(args);
        return id;
}

static void script_agent(Peer *p, unsigned connection) {
        json_int_t id = agent_expect_sync(p);

        /* What a real agent says about the 0xFF, a stale reply, a torn line, then the answer. */
        peer_write(p, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\n");
        peer_write(p, "{\"return\": %lld}\n", (long long) id + 1);
        peer_write(p, "{\"return\": {\"half");
        peer_write(p, "\xff{\"return\": %lld}\n", (long long) id);

        (void) peer_expect(p, "guest-fsfreeze-status", NULL);
        peer_write(p, "{\"return\": \"thawed\"}\n");
        /* The second queued call goes out on the same connection, without a new sync. */
        (void) peer_expect(p, "guest-fsfreeze-freeze", NULL);
        peer_write(p, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fsfreeze is disabled\"}}\n");
        /* Nothing is left: the client must hang up, so others can use the socket. */
        peer_expect_eof(p);
}

static void test_agent(void) {
        pid_t pid;
        Ctx c;

        begin("agent: sync with noise before the delimiter, two queued calls, disconnect when idle");
        pid = peer_start("qga", 1, script_agent);
        ctx_init(&c, NULL);
        check(agent_new(&c.agent, c.event, socket_path("qga")) == 0);
        check(!agent_answered(c.agent));
        check(acall(&c, "guest-fsfreeze-status", 0, "status") == 0);
        check(acall(&c, "guest-fsfreeze-freeze", 0, "freeze") == 0);
        check(c.n_replies == 0);
        want_replies = 2;
        check(run_until(&c, replies_done));
        expect_log(&c, "status=\"thawed\";freeze=-5:fsfreeze is disabled;");
        check(agent_answered(c.agent));
        ctx_done(&c);
        peer_wait(pid);   /* the peer checks that we hung up */
}

static void script_agent_hung_then_ok(Peer *p, unsigned connection) {
        json_int_t id;

        if (connection == 0) {
                /* No agent in the guest: the chardev accepts, nobody answers. */
                peer_drain(p);
                return;
        }
        id = agent_expect_sync(p);
        peer_write(p, "\xff{\"return\": %lld}\n", (long long) id);
        (void) peer_expect(p, "guest-ping", NULL);
        peer_write(p, "{\"return\": {}}\n");
        peer_expect_eof(p);
}

static void test_agent_hung(void) {
        pid_t pid;
        Ctx c;

        begin("agent: nobody answers → -ETIMEDOUT and hang up; the next call resyncs");
        pid = peer_start("qga-hung", 2, script_agent_hung_then_ok);
        ctx_init(&c, NULL);
        check(agent_new(&c.agent, c.event, socket_path("qga-hung")) == 0);
        check(acall(&c, "guest-ping", 300 * USEC_PER_MSEC, "ping1") == 0);
        want_replies = 1;
        check(run_until(&c, replies_done));
        expect_log(&c, "ping1=-110:The guest agent did not answer in time;");
        check(!agent_answered(c.agent));

        check(acall(&c, "guest-ping", 0, "ping2") == 0);
        want_replies = 2;
        check(run_until(&c, replies_done));
        expect_log(&c, "ping1=-110:The guest agent did not answer in time;ping2={};");
        check(agent_answered(c.agent));
        ctx_done(&c);
        peer_wait(pid);
}

static void test_agent_absent(void) {
        Ctx c;

        begin("agent: absent socket → -ENOTCONN");
        ctx_init(&c, NULL);
        check(agent_new(&c.agent, c.event, socket_path("qga-absent")) == 0);
        check(acall(&c, "guest-ping", 0, "ping") == 0);
        want_replies = 1;
        check(run_until(&c, replies_done));
        expect_log(&c, "ping=-107:The guest agent socket is not available;");
        check(!agent_answered(c.agent));
        ctx_done(&c);
}

static void test_agent_unref(void) {
        pid_t pid;
        Ctx c;

        begin("agent: dropping the agent fails queued calls with -ECANCELED");
        pid = peer_start("qga-unref", 1, script_silent);
        ctx_init(&c, NULL);
        check(agent_new(&c.agent, c.event, socket_path("qga-unref")) == 0);
        check(acall(&c, "guest-ping", 0, "a") == 0);
        check(acall(&c, "guest-ping", 0, "b") == 0);
        for (int i = 0; i < 10; i++)
                (void) sd_event_run(c.event, 10 * USEC_PER_MSEC);
        c.agent = agent_unref(c.agent);
        expect_log(&c, "a=-125:Canceled;b=-125:Canceled;");
        ctx_done(&c);
        peer_wait(pid);
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        if (!mkdtemp(tmpdir))
                return 1;

        test_main();
        test_timeout();
        test_disconnect();
        test_unref_in_callback();
        test_cancel_and_disconnect();
        test_connect_fail();
        test_agent();
        test_agent_hung();
        test_agent_absent();
        test_agent_unref();

        /* Only our sockets live there. */
        {
                DIR *d = opendir(tmpdir);
                struct dirent *de;

                while (d && (de = readdir(d)))
                        if (de->d_name[0] != '.')
                                (void) unlinkat(dirfd(d), de->d_name, 0);
                if (d)
                        closedir(d);
                (void) rmdir(tmpdir);
        }
        printf("%s: %d tests, %d failed checks\n", failures ? "FAIL" : "PASS", n_test, failures);
        return failures ? 1 : 0;
}
