/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "macro.h"
#include "worker.h"

struct Worker {
        worker_fn fn;
        void *arg;
        void (*arg_free)(void *arg);    /* NULL: fn owns arg */
        worker_done_fn done;
        void *userdata;
        int result;
        int pipe[2];
        sd_event_source *source;
        /* Two owners, the thread and the loop side; the last to let go frees. */
        atomic_int refs;
};

static void worker_unref(Worker *w) {
        if (atomic_fetch_sub(&w->refs, 1) != 1)
                return;
        if (w->arg_free)
                w->arg_free(w->arg);
        sd_event_source_disable_unref(w->source);
        if (w->pipe[0] >= 0)
                close(w->pipe[0]);
        if (w->pipe[1] >= 0)
                close(w->pipe[1]);
        free(w);
}

static void *worker_thread(void *p) {
        Worker *w = p;
        char c = 1;

        w->result = w->fn(w->arg);
        /* The write publishes result to the loop side. */
        (void) !write(w->pipe[1], &c, 1);
        worker_unref(w);
        return NULL;
}

static int on_worker_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        worker_done_fn done = w->done;
        void *ud = w->userdata;
        int r = w->result;

        w->done = NULL;
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        /* Before the last reference goes: done may read what fn left in an owned arg. */
        if (done)
                done(r, ud);
        worker_unref(w);
        return 0;
}

int worker_start(Worker **ret, sd_event *event, worker_fn fn, void *arg, worker_done_fn done, void *userdata) {
        return worker_start_owned(ret, event, fn, arg, NULL, done, userdata);
}

int worker_start_owned(Worker **ret, sd_event *event, worker_fn fn, void *arg, void (*arg_free)(void *arg),
                       worker_done_fn done, void *userdata) {
        pthread_attr_t attr;
        pthread_t thread;
        Worker *w;
        int r;

        w = calloc(1, sizeof(Worker));
        if (!w)
                return -ENOMEM;
        *w = (Worker) { .fn = fn, .arg = arg, .arg_free = arg_free, .done = done, .userdata = userdata,
                        .pipe = { -1, -1 } };
        atomic_init(&w->refs, 1);

        if (pipe2(w->pipe, O_CLOEXEC) < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(event, &w->source, w->pipe[0], EPOLLIN, on_worker_done, w);
        if (r < 0)
                goto fail;

        atomic_fetch_add(&w->refs, 1);
        (void) pthread_attr_init(&attr);
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = -pthread_create(&thread, &attr, worker_thread, w);
        (void) pthread_attr_destroy(&attr);
        if (r < 0) {
                atomic_fetch_sub(&w->refs, 1);
                goto fail;
        }

        *ret = w;
        return 0;
fail:
        w->arg_free = NULL;     /* still the caller's */
        worker_unref(w);
        return r;
}

void worker_start_or_run(Worker **ret, sd_event *event, worker_fn fn, void *arg, void (*arg_free)(void *arg),
                         worker_done_fn done, void *userdata) {
        int r;

        if (worker_start_owned(ret, event, fn, arg, arg_free, done, userdata) >= 0)
                return;
        *ret = NULL;
        r = fn(arg);
        if (done)
                done(r, userdata);
        if (arg_free)
                arg_free(arg);
}

void worker_detach(Worker *w) {
        if (!w)
                return;
        w->done = NULL;
        /* Drop the event source here, on the loop's thread: sd-event is not thread-safe, and
         * the worker thread may be the one to free w. */
        w->source = sd_event_source_disable_unref(w->source);
        worker_unref(w);
}
