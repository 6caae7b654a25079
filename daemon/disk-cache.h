/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a domain's QEMU looked like at the last snapshot: its disks (top node, image,
 * format, size), memory and vcpus. query-block describes every disk's whole backing chain
 * and so gets slower with each snapshot; with this cache the next create only asks QEMU,
 * per disk, which node the device uses now (qom-get), and falls back to query-block when
 * anything changed behind our back. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct DiskInfo {
        char *target;
        char *qom_path;         /* the device, for qom-get ... "drive" */
        char *top_node;
        char *file;
        char *format;
        uint64_t virtual_size;
        bool read_only;
} DiskInfo;

typedef struct DiskCache {
        bool valid;
        DiskInfo *disks;
        size_t n_disks;
        uint64_t memory_kib;
        unsigned vcpus;
} DiskCache;

void disk_cache_clear(DiskCache *c);
int disk_info_copy(DiskInfo *dst, const DiskInfo *src);
void disk_info_clear(DiskInfo *i);
/* The disk now runs on a new top node (after a snapshot). */
int disk_cache_update_top(DiskCache *c, const char *target, const char *node, const char *file, const char *format);
