/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "snapshot-bus.h"
#include "snapshot-forget.h"
#include "snapshot.h"

int snapshot_delete_order(Domain *d, Snapshot *s, uint64_t flags, Snapshot ***ret, size_t *ret_n) {
        _cleanup_free_ Snapshot **all = NULL, **out = NULL;
        size_t n_all = 0, k = 0;
        int r;

        out = calloc(d->n_snapshots + 1, sizeof(Snapshot *));
        if (!out)
                return -ENOMEM;
        if (flags & (SNAPSHOT_DELETE_CHILDREN | SNAPSHOT_DELETE_CHILDREN_ONLY)) {
                r = domain_list_snapshots(d, s, 0, true, &all, &n_all);
                if (r < 0)
                        return r;
                /* The list is parents-first: reversed, every child precedes its parent. */
                for (size_t i = n_all; i > 0; i--)
                        out[k++] = all[i - 1];
        }
        if (!(flags & SNAPSHOT_DELETE_CHILDREN_ONLY))
                out[k++] = s;

        *ret = TAKE_PTR(out);
        *ret_n = k;
        return 0;
}

int snapshot_forget(Snapshot *s, StoreBatch *b) {
        Domain *d = s->domain;
        Manager *m = d->manager;
        _cleanup_free_ char *name = NULL, *path = NULL;
        Snapshot *parent = s->parent;
        int r;

        name = strdup(snapshot_name(s));
        path = strdup(s->path);
        if (!name || !path)
                return -ENOMEM;

        for (size_t i = 0; i < d->n_snapshots; i++) {
                Snapshot *c = d->snapshots[i];

                if (c->parent != s)
                        continue;
                r = snapshot_def_set_string(c->def, &c->def->parent, parent ? snapshot_name(parent) : NULL);
                if (r < 0)
                        return r;
                r = store_batch_save(b, c->def);
                if (r < 0)
                        return r;
                c->parent = parent;
                if (!c->doomed)
                        (void) sd_bus_emit_properties_changed(m->bus, c->path, SNAPSHOT_IFACE_SNAPSHOT, "Parent", NULL);
        }

        /* The mark moves up; s's own record is queued, then replaced by its removal. */
        if (snapshot_is_current(s)) {
                r = domain_move_current(d, parent, b);
                if (r < 0)
                        return r;
        }

        r = store_batch_remove(b, name);
        if (r < 0)
                return r;

        domain_remove_snapshot(d, s);
        snapshot_free(s);
        if (parent && !parent->doomed)
                (void) sd_bus_emit_properties_changed(m->bus, parent->path, SNAPSHOT_IFACE_SNAPSHOT, "Children", NULL);
        (void) sd_bus_emit_object_removed(m->bus, path);
        (void) manager_send_snapshot_deleted(m, d->path, name);
        log_info("Domain '%s': snapshot '%s' deleted.", domain_name(d), name);
        return 0;
}
