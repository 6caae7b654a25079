/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* qcow2 overlay writer; the on-disk format is QEMU's docs/interop/qcow2.txt. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "qcow2-overlay.h"

#define CLUSTER_SIZE (1ULL << QCOW2_CLUSTER_BITS)
#define HEADER_LENGTH 112U              /* v3 with the compression-type byte, as QEMU writes */
#define EXT_BACKING_FORMAT 0xE2792ACAU
#define REFCOUNT_ORDER 4U               /* 16-bit refcounts */
/* QEMU refuses L1 tables over 32 MiB (QCOW_MAX_L1_SIZE). */
#define L1_MAX_BYTES (32ULL << 20)

static void put32(uint8_t *p, uint32_t v) {
        v = htobe32(v);
        memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v) {
        v = htobe64(v);
        memcpy(p, &v, sizeof(v));
}

static int pwrite_all(int fd, const void *buf, size_t n, uint64_t off) {
        const uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = pwrite(fd, p, n, (off_t) off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
                off += (uint64_t) k;
        }
        return 0;
}

int qcow2_overlay_write(int fd, uint64_t virtual_size, const char *backing_file, const char *backing_format) {
        /* Each L2 table (one cluster of 8-byte entries) maps that many clusters. */
        const uint64_t per_l1_entry = CLUSTER_SIZE * (CLUSTER_SIZE / 8);
        uint8_t header[CLUSTER_SIZE / 16];      /* 4 KiB: header, extensions and the name */
        uint64_t l1_entries, l1_clusters, n_clusters, off;
        size_t name_len, fmt_len, ext;
        uint8_t refblock[64], reftable[8];
        int r;

        if (virtual_size % 512 != 0 || isempty(backing_file) || isempty(backing_format))
                return -EINVAL;
        name_len = strlen(backing_file);
        fmt_len = strlen(backing_format);
        if (name_len > QCOW2_BACKING_NAME_MAX || fmt_len > 64)
                return -EINVAL;

        l1_entries = virtual_size / per_l1_entry + (virtual_size % per_l1_entry != 0);
        if (l1_entries * 8 > L1_MAX_BYTES)
                return -EFBIG;
        l1_clusters = (l1_entries * 8 + CLUSTER_SIZE - 1) / CLUSTER_SIZE;
        if (l1_clusters == 0)
                l1_clusters = 1;
        /* header, refcount table, refcount block, L1: all counted by the one refcount
         * block (32768 entries), which they never outgrow (at most 512 L1 clusters). */
        n_clusters = 3 + l1_clusters;

        memset(header, 0, sizeof(header));
        memcpy(header, "QFI\xfb", 4);
        put32(header + 4, 3);                           /* version */
        put32(header + 20, QCOW2_CLUSTER_BITS);
        put64(header + 24, virtual_size);
        put32(header + 32, 0);                          /* no encryption */
        put32(header + 36, (uint32_t) l1_entries);
        put64(header + 40, 3 * CLUSTER_SIZE);           /* L1 table */
        put64(header + 48, 1 * CLUSTER_SIZE);           /* refcount table */
        put32(header + 56, 1);                          /* refcount table clusters */
        /* 60: no internal snapshots; 72..95: no incompatible, compatible, autoclear features */
        put32(header + 96, REFCOUNT_ORDER);
        put32(header + 100, HEADER_LENGTH);
        /* 104: compression type zlib (0), then padding to 112 */

        ext = HEADER_LENGTH;
        put32(header + ext, EXT_BACKING_FORMAT);
        put32(header + ext + 4, (uint32_t) fmt_len);
        memcpy(header + ext + 8, backing_format, fmt_len);
        ext += 8 + (fmt_len + 7) / 8 * 8;
        ext += 8;                                       /* end of extensions: type 0, length 0 */

        put64(header + 8, ext);                         /* the backing file's name, unterminated */
        put32(header + 16, (uint32_t) name_len);
        memcpy(header + ext, backing_file, name_len);

        r = pwrite_all(fd, header, ext + name_len, 0);
        if (r < 0)
                return r;

        put64(reftable, 2 * CLUSTER_SIZE);
        r = pwrite_all(fd, reftable, sizeof(reftable), 1 * CLUSTER_SIZE);
        if (r < 0)
                return r;

        /* refcount 1 for each cluster in use; the rest of the block stays zero */
        for (off = 0; off < n_clusters; off += sizeof(refblock) / 2) {
                size_t n = n_clusters - off < sizeof(refblock) / 2 ? (size_t) (n_clusters - off) : sizeof(refblock) / 2;

                memset(refblock, 0, sizeof(refblock));
                for (size_t i = 0; i < n; i++)
                        refblock[2 * i + 1] = 1;
                r = pwrite_all(fd, refblock, 2 * n, 2 * CLUSTER_SIZE + 2 * off);
                if (r < 0)
                        return r;
        }

        /* The L1 table: zeroes, as a hole. */
        if (ftruncate(fd, (off_t) (n_clusters * CLUSTER_SIZE)) < 0)
                return -errno;
        return 0;
}
