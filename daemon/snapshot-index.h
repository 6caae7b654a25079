/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A domain's snapshots by name: a hash table of Snapshot pointers, so finding one (every bus
 * call on a snapshot object, LookupSnapshot, linking parents at start-up) costs the same with
 * 10,000 snapshots as with 10. The key is read from the snapshot itself (snapshot_name()), so a
 * redefine that swaps a snapshot's definition under the same name needs no update. */
#pragma once

#include <stddef.h>

typedef struct Snapshot Snapshot;

typedef struct SnapshotIndex {
        Snapshot **slots;       /* open addressing, linear probing; NULL: empty */
        size_t n_slots;         /* 0 or a power of two */
        size_t n_items;
} SnapshotIndex;

/* -EEXIST when a snapshot of that name is in already. */
int snapshot_index_put(SnapshotIndex *x, Snapshot *s);
/* Removes s itself (not another snapshot of the same name); no-op when absent. */
void snapshot_index_remove(SnapshotIndex *x, Snapshot *s);
Snapshot *snapshot_index_get(const SnapshotIndex *x, const char *name);
void snapshot_index_clear(SnapshotIndex *x);
