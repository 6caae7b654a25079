/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

typedef struct JobOptions {
        bool no_progress;               /* --no-progress */
        bool abort_on_interrupt;        /* --abort-on-interrupt: Ctrl-C aborts without asking */
        bool no_abort_prompt;           /* not a job AbortJob can stop (delete, revert) */
} JobOptions;

/* Calls m (CreateSnapshot, Delete, Revert ...) and waits for its reply while drawing the
 * domain's Progress signals on stderr. Ctrl-C asks (on a TTY) whether to call AbortJob. */
int bus_call_job(sd_bus *bus, sd_bus_message *m, const char *domain_path, const JobOptions *opts,
                 sd_bus_error *error, sd_bus_message **ret_reply);
