/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reverting to a snapshot: job-revert.c (the job, internal snapshots) and
 * job-revert-external.c (restarting a managed QEMU on fresh overlays, loading memory). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "macro.h"
#include "qmp.h"

typedef struct Domain Domain;
typedef struct Snapshot Snapshot;
typedef struct RevertJob RevertJob;

/* The restart path's state, kept inside the job. */
typedef struct RevertExternal {
        bool active;
        int step;
        int memory_fd;
        bool was_running;
        bool ev_completed;
        bool waiting_incoming;
        char **created;         /* overlays this revert created, for cleanup on failure */
        json_t *previous;       /* [{target, file, format}]: each disk's image before the revert */
        int failpoint_step;     /* the step whose failpoint was checked last */
} RevertExternal;

int revert_job_start(Domain *d, Snapshot *s, uint64_t flags, sd_bus_message *m, sd_bus_error *error);
RevertJob *revert_job_free(RevertJob *j);
void revert_job_on_event(RevertJob *j, const char *event, json_t *data);
void revert_job_on_disconnect(RevertJob *j);

/* For job-revert-external.c */
void revert_job_finish(RevertJob *j);
void revert_job_fail(RevertJob *j, const char *name, const char *fmt, ...) _printf_(3, 4);
void revert_job_qmp(RevertJob *j, const char *command, json_t *args, int fd,
                    void (*fn)(RevertJob *j, json_t *reply, const QmpError *err));
void revert_job_on_reply_next(RevertJob *j, json_t *reply, const QmpError *err);
Domain *revert_job_domain(RevertJob *j);
Snapshot *revert_job_snapshot(RevertJob *j);
RevertExternal *revert_job_external(RevertJob *j);
bool revert_job_want_running(RevertJob *j, bool was_running);

int revert_external_check(Domain *d, Snapshot *s, uint64_t flags, sd_bus_error *error);
void revert_external_start(RevertJob *j);
void revert_external_on_event(RevertJob *j, const char *event, json_t *data);
void revert_external_on_disconnect(RevertJob *j);
void revert_external_clear(RevertExternal *e);
/* The journal of the job (NULL when it has none). */
struct Journal *revert_job_journal(RevertJob *j);
/* A dead snapshotd's external revert: each disk back on its image before it, its overlays
 * removed. */
void revert_external_undo_journal(Domain *d, json_t *journal);

/* A dead snapshotd's internal revert, from its journal: finished (see job-revert.c). */
int revert_job_resume(Domain *d, json_t *journal);
