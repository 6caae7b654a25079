/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Walking a domain's snapshot tree for the list methods, in O(n) whatever its shape: one
 * pass links each snapshot to its first child and next sibling (by index), then an explicit
 * stack walks it depth-first, so a 10000-deep chain needs neither n scans nor n frames. */
#include <errno.h>
#include <stdlib.h>

#include "domain.h"
#include "macro.h"
#include "snapshot-bus.h"
#include "snapshot.h"

#define NONE ((size_t) -1)

int domain_list_snapshots(Domain *d, const Snapshot *from, uint64_t flags, bool recurse, Snapshot ***ret, size_t *ret_n) {
        size_t n = d->n_snapshots, root = NONE, sp = 0, k = 0;
        _cleanup_free_ size_t *first = NULL, *next = NULL, *count = NULL, *stack = NULL;
        _cleanup_free_ Snapshot **out = NULL;

        first = malloc((n + 1) * sizeof(size_t));
        next = malloc((n + 1) * sizeof(size_t));
        count = calloc(n + 1, sizeof(size_t));
        stack = malloc((n + 1) * sizeof(size_t));
        out = calloc(n + 1, sizeof(Snapshot *));
        if (!first || !next || !count || !stack || !out)
                return -ENOMEM;

        /* Slot n stands for "no parent": the roots hang off it. Walking backwards and
         * prepending keeps siblings in creation order. */
        for (size_t i = 0; i <= n; i++)
                first[i] = next[i] = NONE;
        for (size_t i = n; i > 0; i--) {
                Snapshot *s = d->snapshots[i - 1];
                size_t p = s->parent ? s->parent->index : n;

                next[i - 1] = first[p];
                first[p] = i - 1;
                count[p]++;
        }

        root = from ? from->index : n;
        for (size_t c = first[root]; c != NONE; c = next[c])
                stack[sp++] = c;
        /* The stack pops in reverse: flip this level so the first child comes out first. */
        for (size_t a = 0, b = sp; b > a + 1; a++, b--) {
                size_t t = stack[a];
                stack[a] = stack[b - 1];
                stack[b - 1] = t;
        }

        while (sp > 0) {
                size_t i = stack[--sp], mark = sp;
                Snapshot *s = d->snapshots[i];

                if (snapshot_matches_filter(s, count[i], flags))
                        out[k++] = s;
                if (!recurse)
                        continue;
                for (size_t c = first[i]; c != NONE; c = next[c])
                        stack[sp++] = c;
                for (size_t a = mark, b = sp; b > a + 1; a++, b--) {
                        size_t t = stack[a];
                        stack[a] = stack[b - 1];
                        stack[b - 1] = t;
                }
        }

        *ret = TAKE_PTR(out);
        *ret_n = k;
        return 0;
}
