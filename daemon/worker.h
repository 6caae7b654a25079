/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs one blocking function (an fsync of a memory image) in a thread and reports its result
 * on the event loop, so the loop never waits for the disk. */
#pragma once

#include <systemd/sd-event.h>

typedef struct Worker Worker;

typedef int (*worker_fn)(void *arg);
/* r: what fn returned (negative errno on failure). */
typedef void (*worker_done_fn)(int r, void *userdata);

/* Starts fn(arg) in a new thread; done(r, userdata) runs later on the event loop. */
int worker_start(Worker **ret, sd_event *event, worker_fn fn, void *arg, worker_done_fn done, void *userdata);
/* Forgets the worker: done is never called. The thread finishes on its own and cleans up. */
void worker_detach(Worker *w);
