/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Deleting snapshots: records (metadata only) and their data (merging overlays, dropping
 * internal snapshots and memory images). See job-delete.c for what is safe when. */
#pragma once

#include <jansson.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct Domain Domain;
typedef struct Snapshot Snapshot;
typedef struct DeleteJob DeleteJob;

/* Forgets one record: children move up to its parent, the current mark too. Touches no file. */
int snapshot_forget(Snapshot *s);
/* Forgets s and/or its descendants as SNAPSHOT_DELETE_CHILDREN/_CHILDREN_ONLY say. */
int snapshot_forget_tree(Snapshot *s, uint64_t flags);

/* Deletes with data; replies to m when done. */
int delete_job_start(Domain *d, Snapshot *s, uint64_t flags, sd_bus_message *m, sd_bus_error *error);
DeleteJob *delete_job_free(DeleteJob *j);
void delete_job_on_event(DeleteJob *j, const char *event, json_t *data);
void delete_job_on_job_event(DeleteJob *j, const char *event, json_t *data);
/* A dead snapshotd's delete, from its journal: finished (see job-delete.c). Returns 1. */
int delete_job_resume(Domain *d, json_t *journal);
