/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Several changes to one domain's snapshot records, written as one: every record written
 * (and fsynced) first, then renamed in, then the removed ones unlinked, then one fsync of the
 * directory. Forgetting a chain of N snapshots cost 3 fsyncs and 3 directory fsyncs a record
 * on the event loop (470 ms for 300); as a batch it is N unlinks and one directory fsync,
 * and it can run on a worker: it holds its own copies of everything. */
#pragma once

#include <stdbool.h>

#include "snapshot-def.h"

typedef struct StoreBatch StoreBatch;

StoreBatch *store_batch_new(const char *state_dir, const char *domain);
/* The record as def says at store_batch_seal(): def must live until then (a chain deleted
 * from its leaf moves the current mark up one record at a time, and formatting each of them
 * only to remove it next was most of the loop's time). A later save or remove of the same
 * name replaces it. Records that carry the current mark are written before the others:
 * after a crash in between, two records claim it and loading picks the newer
 * (domain_set_current). */
int store_batch_save(StoreBatch *b, const SnapshotDef *def);
int store_batch_remove(StoreBatch *b, const char *name);
/* Formats every record saved: after it the batch holds no pointer of the caller's, and may
 * go to a worker. */
int store_batch_seal(StoreBatch *b);
bool store_batch_empty(const StoreBatch *b);
/* Carries it out; the first error, after doing what it could. A record that is already gone
 * is not an error. Blocking: on a worker, or where the loop may wait. */
int store_batch_run(StoreBatch *b);
/* For worker_start_owned(). */
int store_batch_run_worker(void *b);
void store_batch_free_worker(void *b);
StoreBatch *store_batch_free(StoreBatch *b);
static inline void store_batch_freep(StoreBatch **b) {
        store_batch_free(*b);
}
