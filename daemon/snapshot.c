/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "domain.h"
#include "macro.h"
#include "snapshot-bus.h"
#include "snapshot.h"

int snapshot_new(Snapshot **ret, Domain *d, SnapshotDef *def) {
        _cleanup_(snapshot_def_freep) SnapshotDef *owned = def;
        _cleanup_(snapshot_freep) Snapshot *s = NULL;
        int r;

        s = calloc(1, sizeof(Snapshot));
        if (!s)
                return -ENOMEM;
        s->domain = d;
        s->def = TAKE_PTR(owned);

        r = snapshot_build_path(d->path, def->name, &s->path);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

Snapshot *snapshot_free(Snapshot *s) {
        if (!s)
                return NULL;
        snapshot_def_free(s->def);
        free(s->path);
        free(s);
        return NULL;
}

const char *snapshot_name(const Snapshot *s) {
        return s->def->name;
}

bool snapshot_is_current(const Snapshot *s) {
        return s->domain && s->domain->current == s;
}

size_t snapshot_n_children(const Snapshot *s) {
        Domain *d = s->domain;
        size_t n = 0;

        for (size_t i = 0; i < d->n_snapshots; i++)
                if (d->snapshots[i]->parent == s)
                        n++;
        return n;
}

int snapshot_list_children(Domain *d, const Snapshot *s, Snapshot ***ret, size_t *ret_n) {
        _cleanup_free_ Snapshot **l = NULL;
        size_t n = 0;

        l = calloc(d->n_snapshots + 1, sizeof(Snapshot *));
        if (!l)
                return -ENOMEM;
        /* d->snapshots is kept in creation order, so children come out in that order too. */
        for (size_t i = 0; i < d->n_snapshots; i++)
                if (d->snapshots[i]->parent == s)
                        l[n++] = d->snapshots[i];

        *ret = TAKE_PTR(l);
        *ret_n = n;
        return 0;
}

bool snapshot_is_external(const Snapshot *s) {
        if (s->def->memory == SNAPSHOT_LOCATION_EXTERNAL)
                return true;
        for (size_t i = 0; i < s->def->n_disks; i++)
                if (s->def->disks[i].location == SNAPSHOT_LOCATION_EXTERNAL)
                        return true;
        return false;
}

bool snapshot_is_internal(const Snapshot *s) {
        return !snapshot_is_external(s);
}

bool snapshot_is_disk_only(const Snapshot *s) {
        return streq_ptr(s->def->state, "disk-snapshot");
}

bool snapshot_matches_filter(const Snapshot *s, size_t n_children, uint64_t flags) {
        uint64_t leaves = flags & (SNAPSHOT_LIST_LEAVES | SNAPSHOT_LIST_NO_LEAVES);
        uint64_t meta = flags & (SNAPSHOT_LIST_METADATA | SNAPSHOT_LIST_NO_METADATA);
        uint64_t kind = flags & (SNAPSHOT_LIST_INACTIVE | SNAPSHOT_LIST_ACTIVE | SNAPSHOT_LIST_DISK_ONLY);
        uint64_t loc = flags & (SNAPSHOT_LIST_INTERNAL | SNAPSHOT_LIST_EXTERNAL);

        /* As in libvirt, each group filters only when some but not all of its bits are set. */
        if (leaves == SNAPSHOT_LIST_LEAVES && n_children > 0)
                return false;
        if (leaves == SNAPSHOT_LIST_NO_LEAVES && n_children == 0)
                return false;

        /* Every snapshot we list has metadata. */
        if (meta == SNAPSHOT_LIST_NO_METADATA)
                return false;

        if (kind != 0 && kind != (SNAPSHOT_LIST_INACTIVE | SNAPSHOT_LIST_ACTIVE | SNAPSHOT_LIST_DISK_ONLY)) {
                bool match = false;

                if ((kind & SNAPSHOT_LIST_DISK_ONLY) && snapshot_is_disk_only(s))
                        match = true;
                if ((kind & SNAPSHOT_LIST_INACTIVE) && streq_ptr(s->def->state, "shutoff"))
                        match = true;
                if ((kind & SNAPSHOT_LIST_ACTIVE) && !snapshot_is_disk_only(s) &&
                    !streq_ptr(s->def->state, "shutoff"))
                        match = true;
                if (!match)
                        return false;
        }

        if (loc == SNAPSHOT_LIST_INTERNAL && !snapshot_is_internal(s))
                return false;
        if (loc == SNAPSHOT_LIST_EXTERNAL && !snapshot_is_external(s))
                return false;

        return true;
}
