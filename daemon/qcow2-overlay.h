/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A new, empty qcow2 overlay, written by us instead of QEMU's blockdev-create job.
 *
 * What QEMU's default qcow2 create makes (version 3, 64 KiB clusters, 16-bit refcounts, no
 * features), laid out as qemu-img lays it out: the header in cluster 0 with a backing-format
 * extension and the backing file's name, the refcount table in cluster 1, its one refcount
 * block in cluster 2, then the zeroed L1 table. Every guest read falls through to the
 * backing file until QEMU allocates. Writing those few hundred bytes ourselves replaces a
 * QEMU job and four monitor round trips per disk (about 10 ms each under load), on the path
 * a live save waits on before it starts and a disk-only call waits on before its
 * transaction. Pure codec: never logs. */
#pragma once

#include <stdint.h>

#define QCOW2_CLUSTER_BITS 16U
#define QCOW2_BACKING_NAME_MAX 1023U

/* Writes the overlay into fd (an empty regular file open for writing). virtual_size must be
 * a multiple of 512; backing_file (at most 1023 bytes, as QEMU will open it) and
 * backing_format ("qcow2", "raw", ...) are written as given. Does not sync: durability is
 * the caller's (fdatasync before the snapshot is recorded).
 * -EINVAL: size not a multiple of 512, empty or too long backing name or format; -EFBIG:
 * larger than a qcow2 L1 table can address; -errno from the writes. */
int qcow2_overlay_write(int fd, uint64_t virtual_size, const char *backing_file, const char *backing_format);
