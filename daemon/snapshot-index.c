/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "macro.h"
#include "snapshot-index.h"
#include "snapshot.h"

/* Names come from callers: a per-process random seed keeps them from choosing collisions
 * ahead of time. A bad chain would only make lookups as slow as the linear scan this
 * replaced, never wrong. */
static uint64_t hash_seed(void) {
        static uint64_t seed;
        static int done;

        if (!done) {
                if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
                        seed = (uint64_t) (uintptr_t) &seed * 0x9e3779b97f4a7c15ULL;
                done = 1;
        }
        return seed;
}

/* FNV-1a over the seed and the name, with a final mix so the low bits (the slot) depend on
 * every byte. */
static size_t hash_name(const char *name) {
        uint64_t h = 0xcbf29ce484222325ULL ^ hash_seed();

        for (const unsigned char *p = (const unsigned char *) name; *p; p++) {
                h ^= *p;
                h *= 0x100000001b3ULL;
        }
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        return (size_t) h;
}

static int grow(SnapshotIndex *x) {
        size_t n = x->n_slots ? x->n_slots * 2 : 16;
        Snapshot **slots;

        slots = calloc(n, sizeof(Snapshot *));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < x->n_slots; i++) {
                Snapshot *s = x->slots[i];
                size_t k;

                if (!s)
                        continue;
                for (k = hash_name(snapshot_name(s)) & (n - 1); slots[k]; k = (k + 1) & (n - 1))
                        ;
                slots[k] = s;
        }
        free(x->slots);
        x->slots = slots;
        x->n_slots = n;
        return 0;
}

int snapshot_index_put(SnapshotIndex *x, Snapshot *s) {
        size_t k;
        int r;

        /* Keep the load under 3/4: probes stay short. */
        if ((x->n_items + 1) * 4 > x->n_slots * 3) {
                r = grow(x);
                if (r < 0)
                        return r;
        }
        for (k = hash_name(snapshot_name(s)) & (x->n_slots - 1); x->slots[k]; k = (k + 1) & (x->n_slots - 1))
                if (streq(snapshot_name(x->slots[k]), snapshot_name(s)))
                        return -EEXIST;
        x->slots[k] = s;
        x->n_items++;
        return 0;
}

Snapshot *snapshot_index_get(const SnapshotIndex *x, const char *name) {
        if (x->n_slots == 0 || !name)
                return NULL;
        for (size_t k = hash_name(name) & (x->n_slots - 1); x->slots[k]; k = (k + 1) & (x->n_slots - 1))
                if (streq(snapshot_name(x->slots[k]), name))
                        return x->slots[k];
        return NULL;
}

void snapshot_index_remove(SnapshotIndex *x, Snapshot *s) {
        size_t mask = x->n_slots - 1, i, j;

        if (x->n_slots == 0)
                return;
        for (i = hash_name(snapshot_name(s)) & mask; x->slots[i] != s; i = (i + 1) & mask)
                if (!x->slots[i])
                        return;

        /* Backward-shift deletion: move later members of the probe run into the hole when
         * their home slot lies at or before it, so lookups never meet a false gap. */
        x->slots[i] = NULL;
        x->n_items--;
        for (j = (i + 1) & mask; x->slots[j]; j = (j + 1) & mask) {
                size_t home = hash_name(snapshot_name(x->slots[j])) & mask;

                /* j's home lies cyclically in (i, j]: it stays. */
                if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
                        continue;
                x->slots[i] = x->slots[j];
                x->slots[j] = NULL;
                i = j;
        }
}

void snapshot_index_clear(SnapshotIndex *x) {
        free(x->slots);
        *x = (SnapshotIndex) {};
}
