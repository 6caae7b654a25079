/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct SaveHeader {
        char magic[17];
        bool complete;          /* LibvirtQemudSave, not LibvirtQemudPart */
        uint32_t version, data_len, was_running, format;
        uint64_t stream_offset, size;
} SaveHeader;

/* -EBADMSG: not a memory image; other errors: why it could not be read. */
int save_header_read(const char *path, SaveHeader *ret);
