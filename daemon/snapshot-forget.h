/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Forgetting snapshot records: the whole of a metadata-only delete, and the last step of a
 * delete with data. In memory and on the bus at once; the files change later, in one batch
 * (store-batch.h), which the caller runs on a worker. */
#pragma once

#include <stdint.h>

#include "store-batch.h"

typedef struct Domain Domain;
typedef struct Snapshot Snapshot;

/* The snapshots a delete with these flags removes (SNAPSHOT_DELETE_CHILDREN/_CHILDREN_ONLY),
 * children before parents. */
int snapshot_delete_order(Domain *d, Snapshot *s, uint64_t flags, Snapshot ***ret, size_t *ret_n);
/* Forgets one record: its children move up to its parent, the current mark too; s is freed.
 * The records to rewrite and the one to remove go into b. Touches no file. Snapshots marked
 * doomed (forgotten in the same call) get no PropertiesChanged: each gets ObjectRemoved, and
 * a parent's Children, read from the whole list, made deleting a long chain quadratic. */
int snapshot_forget(Snapshot *s, StoreBatch *b);
