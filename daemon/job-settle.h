/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Waiting out QEMU jobs a dead snapshotd left running. A job of ours (a block-commit, a
 * snapshot-load) keeps running in QEMU after snapshotd dies; before a resumed job looks at
 * the block graph it must know how those ended. job_settle polls query-jobs until every
 * job whose id starts with the prefix has concluded or gone — cancelling them first when
 * asked — dismisses the concluded ones, and hands their final states to the callback. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

typedef struct Domain Domain;
typedef struct JobSettle JobSettle;

/* jobs: an array of {"id", "status", "error"?} of the matching jobs seen last (a job that was
 * auto-dismissed is not in it); err < 0 when QEMU could not be asked or they never settled. */
typedef void (*job_settle_done_t)(void *userdata, json_t *jobs, int err);

int job_settle(Domain *d, const char *id_prefix, bool cancel, job_settle_done_t done, void *userdata,
               JobSettle **ret);
JobSettle *job_settle_free(JobSettle *s);
