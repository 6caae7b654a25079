/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "disk-cache.h"
#include "macro.h"

void disk_info_clear(DiskInfo *i) {
        free(i->target);
        free(i->qom_path);
        free(i->top_node);
        free(i->file);
        free(i->format);
        *i = (DiskInfo) {};
}

void disk_cache_clear(DiskCache *c) {
        for (size_t i = 0; i < c->n_disks; i++)
                disk_info_clear(&c->disks[i]);
        free(c->disks);
        *c = (DiskCache) {};
}

static int dup_field(char **dst, const char *src) {
        *dst = NULL;
        if (!src)
                return 0;
        *dst = strdup(src);
        return *dst ? 0 : -ENOMEM;
}

int disk_info_copy(DiskInfo *dst, const DiskInfo *src) {
        *dst = (DiskInfo) { .virtual_size = src->virtual_size, .read_only = src->read_only };
        if (dup_field(&dst->target, src->target) < 0 || dup_field(&dst->qom_path, src->qom_path) < 0 ||
            dup_field(&dst->top_node, src->top_node) < 0 || dup_field(&dst->file, src->file) < 0 ||
            dup_field(&dst->format, src->format) < 0) {
                disk_info_clear(dst);
                return -ENOMEM;
        }
        return 0;
}

int disk_cache_update_top(DiskCache *c, const char *target, const char *node, const char *file, const char *format) {
        for (size_t i = 0; i < c->n_disks; i++) {
                DiskInfo *d = &c->disks[i];
                char *n, *f, *fmt;

                if (!streq_ptr(d->target, target))
                        continue;
                n = strdup(node);
                f = strdup(file);
                fmt = strdup(format);
                if (!n || !f || !fmt) {
                        free(n);
                        free(f);
                        free(fmt);
                        c->valid = false;
                        return -ENOMEM;
                }
                free(d->top_node);
                free(d->file);
                free(d->format);
                d->top_node = n;
                d->file = f;
                d->format = fmt;
                return 0;
        }
        c->valid = false;
        return -ENOENT;
}
