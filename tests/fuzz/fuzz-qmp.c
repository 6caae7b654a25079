/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the QMP client reading what a (hostile or broken) QEMU sends: greeting,
 * qmp_capabilities, the query-commands / query-qmp-schema probes (ids 1, 2, 3 on a new
 * client), replies and errors to a call made once connected (id 4), and events.
 *
 * The input is the byte stream of the QMP socket's server side, sent whole through a listening
 * unix socket in a private temp dir; the client runs on a private sd-event loop, which is run
 * without blocking until the server side's EOF has been seen. What the client sends is read
 * and thrown away. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"
#include "qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct State {
        unsigned n_ready;
        unsigned n_lost;
        bool call_done;
} State;

static void on_call(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        State *st = userdata;

        /* Exactly one of reply and err, and an error always says why. */
        if (!reply == !err || (err && (err->error >= 0 || !err->desc)) || st->call_done)
                abort();
        st->call_done = true;
}

static void on_state(Qmp *q, bool connected, int error, void *userdata) {
        State *st = userdata;

        if (connected) {
                st->n_ready++;
                (void) qmp_has_command(q, "transaction");
                (void) qmp_has_transaction_action(q, "blockdev-snapshot");
                if (qmp_call(q, "query-status", NULL, -1, 0, on_call, st, NULL) < 0)
                        abort();
        } else {
                if (error >= 0)
                        abort();
                st->n_lost++;
        }
}

static void on_event(Qmp *q, const char *event, json_t *data, void *userdata) {
        if (!event)
                abort();
}

static char dir[] = "/tmp/fuzz-qmp.XXXXXX";
static char path[sizeof(((struct sockaddr_un *) NULL)->sun_path)];

static void remove_socket(void) {
        (void) unlink(path);
        (void) rmdir(dir);
}

static void run_loop(sd_event *e) {
        for (unsigned i = 0; i < 10000; i++)
                if (sd_event_run(e, 0) <= 0)
                        return;
}

static void drain(int fd) {
        char buf[4096];

        while (read(fd, buf, sizeof(buf)) > 0)
                ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static sd_event *event;
        static int listen_fd = -1;
        Qmp *q = NULL;
        State st = {};
        size_t done = 0;
        int fd, r;

        if (listen_fd < 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };

                if (!mkdtemp(dir))
                        abort();
                snprintf(path, sizeof(path), "%s/qmp.sock", dir);
                strcpy(sa.sun_path, path);
                listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
                    listen(listen_fd, 4) < 0)
                        abort();
                /* Every input connects to it again. */
                (void) atexit(remove_socket);
                if (sd_event_new(&event) < 0)
                        abort();
        }

        r = qmp_new(&q, event, path);
        if (r < 0)
                abort();
        qmp_set_handlers(q, on_state, on_event, &st);
        r = qmp_connect(q);
        if (r < 0)
                abort();
        run_loop(event);

        /* A unix connect() completes at once when the backlog has room: the peer is there. */
        if (poll(&(struct pollfd) { .fd = listen_fd, .events = POLLIN }, 1, 5000) != 1)
                abort();
        fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
                abort();

        while (done < size) {
                ssize_t k = write(fd, data + done, size - done);

                if (k < 0) {
                        if (errno != EAGAIN)
                                break;
                } else
                        done += k;
                run_loop(event);
                drain(fd);
        }
        run_loop(event);
        drain(fd);

        (void) shutdown(fd, SHUT_WR);
        run_loop(event);
        drain(fd);

        /* The server side's EOF must have ended the connection, reported exactly once. */
        if (qmp_is_connected(q) || st.n_lost != 1 || st.n_ready > 1)
                abort();

        (void) close(fd);
        qmp_unref(q);
        run_loop(event);
        return 0;
}
