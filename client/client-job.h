/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct JobOptions {
        bool no_progress;               /* --no-progress */
        bool abort_on_interrupt;        /* --abort-on-interrupt: Ctrl-C aborts without asking */
        bool not_abortable;             /* AbortJob cannot stop it (revert, delete): Ctrl-C only
                                         * stops waiting, the job goes on in snapshotd */
} JobOptions;

/* Calls m (CreateSnapshot, Delete, Revert ...) and waits for its reply while drawing the
 * domain's Progress signals on stderr: one line redrawn in place when stderr is a TTY,
 * plain "progress: ..." lines otherwise. Ctrl-C asks on the terminal whether to call
 * AbortJob (a second Ctrl-C while asking leaves the job running); without a terminal, or
 * with abort_on_interrupt, it calls AbortJob at once. A job that cannot be aborted makes
 * Ctrl-C stop waiting (-ECANCELED). On a failed call the error is in *error. */
int bus_call_job(sd_bus *bus, sd_bus_message *m, const char *domain_path, const JobOptions *opts,
                 sd_bus_error *error, sd_bus_message **ret_reply);

/* The percentage shown for Progress(processed, remaining, total): the part of total that
 * does not remain. Not processed/total: a live save sends dirtied pages again (processed
 * may exceed total) and never sends zero pages (it may end well below total). */
unsigned job_progress_percent(uint64_t processed, uint64_t remaining, uint64_t total);
