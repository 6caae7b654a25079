/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

/* macro.h first: jansson >= 2.9 defines its own json_decrefp(), which macro.h must not redefine. */
#include "macro.h"
#include "json-stream.h"

#define READ_CHUNK (64U * 1024U)
/* connect() on a unix socket fails with EAGAIN (rather than waiting) when the listener's backlog is
 * full, e.g. while QEMU is still busy with another client. Retry for a while before giving up. */
#define CONNECT_RETRY_USEC (20 * USEC_PER_MSEC)
#define CONNECT_RETRY_MAX 50U

typedef enum StreamState {
        STREAM_CLOSED,
        STREAM_CONNECTING,
        STREAM_CONNECTED,
} StreamState;

typedef struct OutItem {
        struct OutItem *next;
        char *data;
        size_t size;
        size_t offset;
        int fd;
} OutItem;

struct JsonStream {
        unsigned n_ref;
        sd_event *event;
        JsonStreamHandlers handlers;
        void *userdata;

        StreamState state;
        int fd;
        char *path;
        unsigned connect_tries;
        int pending_error;

        sd_event_source *io;
        sd_event_source *defer;   /* reports a connect() failure from the loop */
        sd_event_source *retry;   /* retries connect() after EAGAIN */

        /* Bumped whenever the connection is dropped, so that a dispatch loop notices that a
         * handler closed (or reconnected) the stream under it. */
        uint64_t generation;

        OutItem *out_head, *out_tail;
        size_t out_queued;

        char *in;
        size_t in_size, in_alloc;
        size_t in_scanned;        /* bytes of in[] already known to hold no '\n' and no 0xFF */
        size_t input_max;
};

static void out_item_free(OutItem *o) {
        if (!o)
                return;
        if (o->fd >= 0)
                (void) close(o->fd);
        free(o->data);
        free(o);
}

static void stream_reset(JsonStream *s) {
        s->io = sd_event_source_disable_unref(s->io);
        s->defer = sd_event_source_disable_unref(s->defer);
        s->retry = sd_event_source_disable_unref(s->retry);

        if (s->fd >= 0) {
                (void) close(s->fd);
                s->fd = -1;
        }

        while (s->out_head) {
                OutItem *o = s->out_head;

                s->out_head = o->next;
                out_item_free(o);
        }
        s->out_tail = NULL;
        s->out_queued = 0;

        free(s->in);
        s->in = NULL;
        s->in_size = s->in_alloc = s->in_scanned = 0;

        s->pending_error = 0;
        s->state = STREAM_CLOSED;
        s->generation++;
}

static void stream_fail(JsonStream *s, int error) {
        if (s->state == STREAM_CLOSED)
                return;

        stream_reset(s);

        if (s->handlers.disconnected) {
                json_stream_ref(s);
                s->handlers.disconnected(s, error, s->userdata);
                json_stream_unref(s);
        }
}

int json_stream_new(JsonStream **ret, sd_event *event, const JsonStreamHandlers *handlers, void *userdata) {
        JsonStream *s;

        if (!ret || !event)
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;

        s->n_ref = 1;
        s->event = sd_event_ref(event);
        if (handlers)
                s->handlers = *handlers;
        s->userdata = userdata;
        s->fd = -1;
        s->input_max = JSON_STREAM_INPUT_MAX_DEFAULT;

        *ret = s;
        return 0;
}

JsonStream *json_stream_ref(JsonStream *s) {
        if (s)
                s->n_ref++;
        return s;
}

JsonStream *json_stream_unref(JsonStream *s) {
        if (!s || --s->n_ref > 0)
                return NULL;

        stream_reset(s);
        free(s->path);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

static int stream_update_events(JsonStream *s) {
        uint32_t events = EPOLLIN;

        if (!s->io)
                return 0;
        if (s->state == STREAM_CONNECTING || s->out_head)
                events |= EPOLLOUT;

        return sd_event_source_set_io_events(s->io, events);
}

static int stream_read(JsonStream *s) {
        ssize_t n;

        if (s->in_alloc - s->in_size < READ_CHUNK) {
                size_t a = s->in_alloc * 2;
                char *p;

                if (a < s->in_size + READ_CHUNK)
                        a = s->in_size + READ_CHUNK;
                p = realloc(s->in, a);
                if (!p)
                        return -ENOMEM;
                s->in = p;
                s->in_alloc = a;
        }

        n = read(s->fd, s->in + s->in_size, s->in_alloc - s->in_size);
        if (n < 0) {
                if (IN_SET2(errno, EAGAIN, EINTR))
                        return 0;
                return -errno;
        }
        if (n == 0)
                return -ECONNRESET;

        s->in_size += n;
        return 1;
}

/* After a handler ran from stream_io() (which holds one reference): did it close or reconnect the
 * stream, or drop the owner's last reference? Then nothing more may be delivered. */
static bool stream_abandoned(JsonStream *s, uint64_t generation) {
        return s->generation != generation || s->n_ref <= 1;
}

static void stream_dispatch_line(JsonStream *s, const char *line, size_t len) {
        _cleanup_(json_decrefp) json_t *m = NULL;

        /* Tolerate "\r\n" and blank lines. */
        while (len > 0 && strchr(" \t\r", line[len - 1]))
                len--;
        while (len > 0 && strchr(" \t\r", line[0])) {
                line++;
                len--;
        }
        if (len == 0)
                return;

        m = json_loadb(line, len, 0, NULL);
        if (s->handlers.message)
                s->handlers.message(s, m, m ? 0 : -EBADMSG, s->userdata);
}

/* Splits the input into lines and 0xFF delimiters and hands them out in order. Returns 1 when a
 * handler dropped the connection (the buffer is gone then), 0 otherwise, < 0 on a framing error. */
static int stream_process(JsonStream *s) {
        uint64_t generation = s->generation;
        size_t start = 0;

        for (size_t i = s->in_scanned; i < s->in_size; i++) {
                unsigned char c = (unsigned char) s->in[i];

                if (c == 0xFF) {
                        /* Whatever partial line precedes the sentinel is noise from before the resync. */
                        start = i + 1;
                        if (s->handlers.delimiter) {
                                s->handlers.delimiter(s, s->userdata);
                                if (stream_abandoned(s, generation))
                                        return 1;
                        }
                        continue;
                }
                if (c != '\n')
                        continue;

                if (i - start > s->input_max)
                        return -EMSGSIZE;

                stream_dispatch_line(s, s->in + start, i - start);
                if (stream_abandoned(s, generation))
                        return 1;
                start = i + 1;
        }

        if (start > 0) {
                memmove(s->in, s->in + start, s->in_size - start);
                s->in_size -= start;
        }
        s->in_scanned = s->in_size;

        if (s->in_size > s->input_max)
                return -EMSGSIZE;

        return 0;
}

static int stream_write(JsonStream *s) {
        while (s->out_head) {
                OutItem *o = s->out_head;
                union {
                        struct cmsghdr cmsghdr;
                        uint8_t buf[CMSG_SPACE(sizeof(int))];
                } control = {};
                struct iovec iov = {
                        .iov_base = o->data + o->offset,
                        .iov_len = o->size - o->offset,
                };
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                };
                ssize_t n;

                if (o->fd >= 0) {
                        struct cmsghdr *cmsg;

                        mh.msg_control = &control;
                        mh.msg_controllen = sizeof(control);
                        cmsg = CMSG_FIRSTHDR(&mh);
                        cmsg->cmsg_level = SOL_SOCKET;
                        cmsg->cmsg_type = SCM_RIGHTS;
                        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(cmsg), &o->fd, sizeof(int));
                }

                n = sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }

                /* The fd travelled with the first bytes; never send it twice. */
                if (o->fd >= 0) {
                        (void) close(o->fd);
                        o->fd = -1;
                }

                o->offset += n;
                s->out_queued -= n;
                if (o->offset < o->size)
                        continue;

                s->out_head = o->next;
                if (!s->out_head)
                        s->out_tail = NULL;
                out_item_free(o);
        }

        return 0;
}

static int stream_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        _cleanup_(json_stream_unrefp) JsonStream *s = json_stream_ref(userdata);
        uint64_t generation = s->generation;
        int r;

        if (s->state == STREAM_CONNECTING) {
                int error = 0;
                socklen_t len = sizeof(error);

                if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error != 0) {
                        stream_fail(s, -error);
                        return 0;
                }
                if (!(revents & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
                        return 0;

                s->state = STREAM_CONNECTED;
                if (s->handlers.connected) {
                        s->handlers.connected(s, s->userdata);
                        if (stream_abandoned(s, generation))
                                return 0;
                }
        }

        /* Read before writing: a peer that answered and then went away must still have its answer
         * delivered before the write error ends the connection. */
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                r = stream_read(s);
                if (r > 0)
                        r = stream_process(s);
                if (r < 0) {
                        stream_fail(s, r);
                        return 0;
                }
                if (stream_abandoned(s, generation))
                        return 0;
        }

        if (s->out_head) {
                r = stream_write(s);
                if (r < 0) {
                        stream_fail(s, r);
                        return 0;
                }
        }

        r = stream_update_events(s);
        if (r < 0)
                stream_fail(s, r);
        return 0;
}

static int stream_watch(JsonStream *s) {
        int r;

        r = sd_event_add_io(s->event, &s->io, s->fd, EPOLLIN | EPOLLOUT, stream_io, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->io, "json-stream-io");

        return stream_update_events(s);
}

static int stream_on_defer(sd_event_source *source, void *userdata) {
        JsonStream *s = userdata;

        stream_fail(s, s->pending_error);
        return 0;
}

static int stream_connect_attempt(JsonStream *s);

static int stream_on_retry(sd_event_source *source, uint64_t usec, void *userdata) {
        JsonStream *s = userdata;
        int r;

        s->retry = sd_event_source_disable_unref(s->retry);
        r = stream_connect_attempt(s);
        if (r < 0)
                stream_fail(s, r);
        return 0;
}

static int stream_connect_attempt(JsonStream *s) {
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int r;

        strncpy(sa.sun_path, s->path, sizeof(sa.sun_path) - 1);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;

        s->state = STREAM_CONNECTING;

        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
                if (errno == EAGAIN && s->connect_tries++ < CONNECT_RETRY_MAX)
                        return sd_event_add_time_relative(s->event, &s->retry, CLOCK_MONOTONIC,
                                                          CONNECT_RETRY_USEC, USEC_PER_MSEC,
                                                          stream_on_retry, s);

                /* Report through the disconnected handler, from the loop, like any later failure. */
                s->pending_error = -errno;
                return sd_event_add_defer(s->event, &s->defer, stream_on_defer, s);
        }

        s->fd = TAKE_FD(fd);
        r = stream_watch(s);
        if (r < 0)
                return r;

        return 0;
}

int json_stream_connect(JsonStream *s, const char *socket_path) {
        char *p;
        int r;

        if (!s || isempty(socket_path))
                return -EINVAL;
        if (s->state != STREAM_CLOSED)
                return -EISCONN;
        if (strlen(socket_path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return -EINVAL;

        p = strdup(socket_path);
        if (!p)
                return -ENOMEM;
        free(s->path);
        s->path = p;
        s->connect_tries = 0;

        r = stream_connect_attempt(s);
        if (r < 0) {
                stream_reset(s);
                return r;
        }

        return 0;
}

int json_stream_adopt_fd(JsonStream *s, int fd) {
        int flags, r;

        if (!s || fd < 0) {
                if (fd >= 0)
                        (void) close(fd);
                return -EINVAL;
        }
        if (s->state != STREAM_CLOSED) {
                (void) close(fd);
                return -EISCONN;
        }

        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
                r = -errno;
                (void) close(fd);
                return r;
        }

        s->fd = fd;
        s->state = STREAM_CONNECTED;
        r = stream_watch(s);
        if (r < 0) {
                stream_reset(s);
                return r;
        }

        return 0;
}

void json_stream_close(JsonStream *s) {
        if (s && s->state != STREAM_CLOSED)
                stream_reset(s);
}

bool json_stream_is_open(JsonStream *s) {
        return s && s->state != STREAM_CLOSED;
}

bool json_stream_is_connected(JsonStream *s) {
        return s && s->state == STREAM_CONNECTED;
}

static int stream_enqueue(JsonStream *s, char *data, size_t size, int fd) {
        _cleanup_close_ int copy = -1;
        OutItem *o;

        if (fd >= 0) {
                copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (copy < 0) {
                        free(data);
                        return -errno;
                }
        }

        o = calloc(1, sizeof(*o));
        if (!o) {
                free(data);
                return -ENOMEM;
        }
        o->data = data;
        o->size = size;
        o->fd = TAKE_FD(copy);

        if (s->out_tail)
                s->out_tail->next = o;
        else
                s->out_head = o;
        s->out_tail = o;
        s->out_queued += size;

        /* Written from the loop, so that a write error is reported from there, never from here. */
        (void) stream_update_events(s);
        return 0;
}

int json_stream_send(JsonStream *s, json_t *message, int fd) {
        char *text, *line;
        size_t len;

        if (!s || !message)
                return -EINVAL;
        if (s->state == STREAM_CLOSED)
                return -ENOTCONN;

        text = json_dumps(message, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        line = realloc(text, len + 2);
        if (!line) {
                free(text);
                return -ENOMEM;
        }
        line[len] = '\n';
        line[len + 1] = 0;

        return stream_enqueue(s, line, len + 1, fd);
}

int json_stream_send_raw(JsonStream *s, const void *data, size_t size, int fd) {
        char *copy;

        if (!s || !data || size == 0)
                return -EINVAL;
        if (s->state == STREAM_CLOSED)
                return -ENOTCONN;

        copy = malloc(size);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, data, size);

        return stream_enqueue(s, copy, size, fd);
}

void json_stream_flush(JsonStream *s) {
        if (!s || s->state != STREAM_CONNECTED || !s->out_head)
                return;
        /* A failed write stays queued: the loop's EPOLLOUT tries again and reports it. */
        (void) stream_write(s);
        (void) stream_update_events(s);
}

size_t json_stream_get_queued(JsonStream *s) {
        return s ? s->out_queued : 0;
}

void json_stream_set_input_max(JsonStream *s, size_t max) {
        if (s)
                s->input_max = max > 0 ? max : JSON_STREAM_INPUT_MAX_DEFAULT;
}
