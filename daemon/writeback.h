/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Early writeback of a file another process writes (QEMU, the memory image): a thread asks
 * the kernel every few milliseconds to start writing what is dirty
 * (sync_file_range(SYNC_FILE_RANGE_WRITE), which does not wait for it), so that the fsync
 * after the save finds most of the image on disk already instead of all of it in the page
 * cache. */
#pragma once

#include <systemd/sd-event.h>

typedef struct Writeback Writeback;

/* fd is dup'ed. */
int writeback_start(Writeback **ret, sd_event *event, int fd);
/* Returns at once; the thread ends within one interval and frees what it holds. NULL ok. */
void writeback_stop(Writeback *wb);
