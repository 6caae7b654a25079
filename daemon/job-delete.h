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

/* Deletes s and/or its descendants as the SNAPSHOT_DELETE_* flags say: with data, or with
 * METADATA_ONLY only the records (snapshot-forget.h); replies to m when done. */
int delete_job_start(Domain *d, Snapshot *s, uint64_t flags, sd_bus_message *m, sd_bus_error *error);
DeleteJob *delete_job_free(DeleteJob *j);
void delete_job_on_event(DeleteJob *j, const char *event, json_t *data);
void delete_job_on_job_event(DeleteJob *j, const char *event, json_t *data);
/* A dead snapshotd's delete, from its journal: finished (see job-delete.c). Returns 1. */
int delete_job_resume(Domain *d, json_t *journal);
