/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The name index of a domain's snapshots against a plain array: puts, lookups and removals in
 * random order (so the backward-shift deletion meets wrapped and colliding probe runs), with
 * and without growth in between. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "snapshot-index.h"
#include "snapshot.h"
#include "unit-test.h"

#define N 3000

static Snapshot snaps[N];
static SnapshotDef defs[N];
static char names[N][16];
static bool present[N];

static void check_all(const SnapshotIndex *x, const char *when) {
        size_t bad = 0, n = 0;

        for (size_t i = 0; i < N; i++) {
                Snapshot *s = snapshot_index_get(x, names[i]);

                if (present[i] ? s != &snaps[i] : s != NULL)
                        bad++;
                n += present[i];
        }
        CHECK(bad == 0, "%s: %zu lookups wrong", when, bad);
        CHECK(x->n_items == n, "%s: %zu items, expected %zu", when, x->n_items, n);
}

int main(void) {
        SnapshotIndex x = {};
        Snapshot dup;
        SnapshotDef dupdef;
        unsigned seed = 42;

        for (size_t i = 0; i < N; i++) {
                snprintf(names[i], sizeof(names[i]), "s%zu", i);
                defs[i].name = names[i];
                snaps[i].def = &defs[i];
        }

        CHECK(snapshot_index_get(&x, "s1") == NULL, "empty index finds nothing");
        snapshot_index_remove(&x, &snaps[0]);   /* no-op on an empty index */

        for (size_t i = 0; i < N; i++) {
                CHECK(snapshot_index_put(&x, &snaps[i]) == 0, "put %zu", i);
                present[i] = true;
        }
        check_all(&x, "after puts");

        dupdef.name = names[7];
        dup.def = &dupdef;
        CHECK(snapshot_index_put(&x, &dup) == -EEXIST, "a second snapshot of the same name is refused");
        snapshot_index_remove(&x, &dup);        /* not in: nothing happens */
        CHECK(snapshot_index_get(&x, names[7]) == &snaps[7], "removing an absent twin keeps the original");

        /* Remove two thirds in random order, checking everything now and then. */
        for (size_t k = 0; k < 2 * N / 3; k++) {
                size_t i = rand_r(&seed) % N;

                snapshot_index_remove(&x, &snaps[i]);
                present[i] = false;
                if (k % 500 == 0)
                        check_all(&x, "while removing");
        }
        check_all(&x, "after removals");

        /* Put some back (reusing freed slots), remove others again. */
        for (size_t k = 0; k < N; k++) {
                size_t i = rand_r(&seed) % N;

                if (present[i]) {
                        snapshot_index_remove(&x, &snaps[i]);
                        present[i] = false;
                } else {
                        CHECK(snapshot_index_put(&x, &snaps[i]) == 0, "re-put %zu", i);
                        present[i] = true;
                }
        }
        check_all(&x, "after churn");

        snapshot_index_clear(&x);
        CHECK(x.n_slots == 0 && x.n_items == 0 && !x.slots, "clear empties it");
        CHECK(snapshot_index_get(&x, names[1]) == NULL, "cleared index finds nothing");

        return unit_done("test-snapshot-index");
}
