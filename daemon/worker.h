/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs one blocking function (an fsync of a memory image, a journal or record write) in a
 * thread and reports its result on the event loop, so the loop never waits for the disk. */
#pragma once

#include <systemd/sd-event.h>

typedef struct Worker Worker;

typedef int (*worker_fn)(void *arg);
/* r: what fn returned (negative errno on failure). */
typedef void (*worker_done_fn)(int r, void *userdata);

/* Starts fn(arg) in a new thread; done(r, userdata) runs later on the event loop. */
int worker_start(Worker **ret, sd_event *event, worker_fn fn, void *arg, worker_done_fn done, void *userdata);
/* The same, but the worker owns arg: arg_free(arg) runs once both the thread and the loop
 * side are done with it (after done returns, or after the thread of a detached worker
 * ends), so done can read what fn left in it. On failure arg stays the caller's. */
int worker_start_owned(Worker **ret, sd_event *event, worker_fn fn, void *arg, void (*arg_free)(void *arg),
                       worker_done_fn done, void *userdata);
/* worker_start_owned(), or when no thread starts, fn(arg) and done right here (*ret NULL),
 * then arg_free(arg). The caller returns after this: done may have ended its job. */
void worker_start_or_run(Worker **ret, sd_event *event, worker_fn fn, void *arg, void (*arg_free)(void *arg),
                         worker_done_fn done, void *userdata);
/* Forgets the worker: done is never called. The thread finishes on its own and cleans up. */
void worker_detach(Worker *w);
