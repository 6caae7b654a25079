/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "snapshot-def.h"

static const char *const snapshot_location_table[_SNAPSHOT_LOCATION_MAX] = {
        [SNAPSHOT_LOCATION_DEFAULT] = "",
        [SNAPSHOT_LOCATION_NO] = "no",
        [SNAPSHOT_LOCATION_INTERNAL] = "internal",
        [SNAPSHOT_LOCATION_EXTERNAL] = "external",
};

const char *snapshot_location_to_string(SnapshotLocation l) {
        if (l < 0 || l >= _SNAPSHOT_LOCATION_MAX)
                return NULL;
        return snapshot_location_table[l];
}

SnapshotLocation snapshot_location_from_string(const char *s) {
        if (!s)
                return _SNAPSHOT_LOCATION_INVALID;
        for (SnapshotLocation l = 0; l < _SNAPSHOT_LOCATION_MAX; l++)
                if (streq(snapshot_location_table[l], s))
                        return l;
        return _SNAPSHOT_LOCATION_INVALID;
}

static void domain_disk_def_clear(DomainDiskDef *d) {
        free(d->target);
        free(d->file);
        free(d->format);
        free(d->node_name);
        *d = (DomainDiskDef) {};
}

void domain_def_clear(DomainDef *def) {
        if (!def)
                return;
        free(def->name);
        for (size_t i = 0; i < def->n_disks; i++)
                domain_disk_def_clear(&def->disks[i]);
        free(def->disks);
        *def = (DomainDef) {};
}

static void snapshot_disk_def_clear(SnapshotDiskDef *d) {
        free(d->target);
        free(d->file);
        free(d->format);
        *d = (SnapshotDiskDef) {};
}

SnapshotDef *snapshot_def_free(SnapshotDef *def) {
        if (!def)
                return NULL;
        free(def->name);
        free(def->description);
        free(def->parent);
        free(def->state);
        free(def->memory_file);
        if (def->disks)
                for (size_t i = 0; i < def->n_disks; i++)
                        snapshot_disk_def_clear(&def->disks[i]);
        free(def->disks);
        domain_def_clear(&def->domain);
        free(def);
        return NULL;
}

/* strdup() that keeps NULL as NULL. */
static int strdup_opt(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int domain_def_copy(const DomainDef *src, DomainDef *dst) {
        int r;

        *dst = (DomainDef) {
                .memory_kib = src->memory_kib,
                .vcpus = src->vcpus,
        };
        r = strdup_opt(src->name, &dst->name);
        if (r < 0)
                return r;
        if (src->n_disks > 0) {
                dst->disks = calloc(src->n_disks, sizeof(DomainDiskDef));
                if (!dst->disks)
                        return -ENOMEM;
        }
        /* Count as we go so that a half-built copy is freed correctly. */
        for (size_t i = 0; i < src->n_disks; i++) {
                DomainDiskDef *d = &dst->disks[i];

                dst->n_disks++;
                if (strdup_opt(src->disks[i].target, &d->target) < 0 ||
                    strdup_opt(src->disks[i].file, &d->file) < 0 ||
                    strdup_opt(src->disks[i].format, &d->format) < 0 ||
                    strdup_opt(src->disks[i].node_name, &d->node_name) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int snapshot_def_copy(const SnapshotDef *src, SnapshotDef **ret) {
        _cleanup_(snapshot_def_freep) SnapshotDef *c = NULL;
        int r;

        if (!src || !ret)
                return -EINVAL;

        c = calloc(1, sizeof(SnapshotDef));
        if (!c)
                return -ENOMEM;

        c->creation_usec = src->creation_usec;
        c->memory = src->memory;
        c->current = src->current;
        c->quiesced = src->quiesced;

        if (strdup_opt(src->name, &c->name) < 0 ||
            strdup_opt(src->description, &c->description) < 0 ||
            strdup_opt(src->parent, &c->parent) < 0 ||
            strdup_opt(src->state, &c->state) < 0 ||
            strdup_opt(src->memory_file, &c->memory_file) < 0)
                return -ENOMEM;

        if (src->n_disks > 0) {
                c->disks = calloc(src->n_disks, sizeof(SnapshotDiskDef));
                if (!c->disks)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < src->n_disks; i++) {
                SnapshotDiskDef *d = &c->disks[i];

                c->n_disks++;
                d->location = src->disks[i].location;
                if (strdup_opt(src->disks[i].target, &d->target) < 0 ||
                    strdup_opt(src->disks[i].file, &d->file) < 0 ||
                    strdup_opt(src->disks[i].format, &d->format) < 0)
                        return -ENOMEM;
        }

        r = domain_def_copy(&src->domain, &c->domain);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

static bool domain_def_equal(const DomainDef *a, const DomainDef *b) {
        if (!streq_ptr(a->name, b->name) ||
            a->memory_kib != b->memory_kib ||
            a->vcpus != b->vcpus ||
            a->n_disks != b->n_disks)
                return false;
        for (size_t i = 0; i < a->n_disks; i++)
                if (!streq_ptr(a->disks[i].target, b->disks[i].target) ||
                    !streq_ptr(a->disks[i].file, b->disks[i].file) ||
                    !streq_ptr(a->disks[i].format, b->disks[i].format) ||
                    !streq_ptr(a->disks[i].node_name, b->disks[i].node_name))
                        return false;
        return true;
}

bool snapshot_def_equal(const SnapshotDef *a, const SnapshotDef *b) {
        if (a == b)
                return true;
        if (!a || !b)
                return false;

        if (!streq_ptr(a->name, b->name) ||
            !streq_ptr(a->description, b->description) ||
            !streq_ptr(a->parent, b->parent) ||
            a->creation_usec != b->creation_usec ||
            !streq_ptr(a->state, b->state) ||
            a->memory != b->memory ||
            !streq_ptr(a->memory_file, b->memory_file) ||
            a->current != b->current ||
            a->quiesced != b->quiesced ||
            a->n_disks != b->n_disks)
                return false;

        for (size_t i = 0; i < a->n_disks; i++)
                if (!streq_ptr(a->disks[i].target, b->disks[i].target) ||
                    a->disks[i].location != b->disks[i].location ||
                    !streq_ptr(a->disks[i].file, b->disks[i].file) ||
                    !streq_ptr(a->disks[i].format, b->disks[i].format))
                        return false;

        return domain_def_equal(&a->domain, &b->domain);
}
