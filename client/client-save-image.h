/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The memory image header (DESIGN.md "Memory image"), read by the client itself: snapshotctl
 * is a plain bus client and does not link the daemon's library. Never prints. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SAVE_HEADER_SIZE 92U

typedef struct SaveHeader {
        char magic[17];         /* as on disk, NUL added; non-printable bytes as '?' */
        bool complete;          /* LibvirtQemudSave: the save completed and was synced */
        bool partial;           /* LibvirtQemudPart: the save never completed */
        uint32_t version, data_len, was_running, format, cookie_offset;
        uint64_t stream_offset; /* 92 + data_len */
        uint64_t size;          /* of the file */
} SaveHeader;

/* Reads the 92-byte header at the start of path. 0: *ret holds it (partial or complete).
 * -EBADMSG: not a memory image (*ret still says the size, and the magic when there was
 * one); other errors: why the file could not be read (e.g. -EACCES as non-root). */
int save_header_read(const char *path, SaveHeader *ret);

/* "raw", "gzip", ... for libvirt's format numbers; NULL when unknown. */
const char *save_header_format_name(uint32_t format);

/* Why an image is unreadable, for "unreadable: <reason>": strerror, or for -EBADMSG what
 * was wrong with its contents. */
void save_header_error(int r, const SaveHeader *h, char *buf, size_t size);
