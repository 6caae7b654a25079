/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reading a memory image's header (DESIGN.md "Memory image"; the daemon's writer is
 * daemon/save-image.c) for `snapshotctl info`. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client-save-image.h"
#include "daemon/macro.h"

/* libvirt's virQEMUSaveHeader, in host byte order. */
struct header {
        char magic[16];
        uint32_t version, data_len, was_running, format, cookie_offset, unused[14];
};

_Static_assert(sizeof(struct header) == SAVE_HEADER_SIZE, "the header is 92 bytes");

int save_header_read(const char *path, SaveHeader *ret) {
        _cleanup_close_ int fd = -1;
        struct header h;
        struct stat st;
        ssize_t n;

        *ret = (SaveHeader) {};

        /* O_NONBLOCK: a FIFO put where an image should be must not hang us. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? -EISDIR : -EBADF;
        ret->size = (uint64_t) st.st_size;

        n = pread(fd, &h, sizeof(h), 0);
        if (n < 0)
                return -errno;
        if ((size_t) n < sizeof(h))
                return -EBADMSG;

        for (size_t i = 0; i < sizeof(h.magic); i++)
                ret->magic[i] = h.magic[i] >= 0x20 && h.magic[i] < 0x7f ? h.magic[i] : '?';
        ret->magic[16] = '\0';
        ret->complete = memcmp(h.magic, "LibvirtQemudSave", 16) == 0;
        ret->partial = memcmp(h.magic, "LibvirtQemudPart", 16) == 0;
        if (!ret->complete && !ret->partial)
                return -EBADMSG;

        ret->version = h.version;
        ret->data_len = h.data_len;
        ret->was_running = h.was_running;
        ret->format = h.format;
        ret->cookie_offset = h.cookie_offset;
        ret->stream_offset = SAVE_HEADER_SIZE + (uint64_t) h.data_len;
        return 0;
}

const char *save_header_format_name(uint32_t format) {
        static const char *const names[] = { "raw", "gzip", "bzip2", "xz", "lzop", "zstd", "sparse" };

        return format < ELEMENTSOF(names) ? names[format] : NULL;
}

void save_header_error(int r, const SaveHeader *h, char *buf, size_t size) {
        if (r != -EBADMSG)
                snprintf(buf, size, "%s", strerror(r < 0 ? -r : r));
        else if (h->size < SAVE_HEADER_SIZE)
                snprintf(buf, size, "not a memory image (%llu bytes, shorter than the %u-byte header)",
                         (unsigned long long) h->size, SAVE_HEADER_SIZE);
        else
                snprintf(buf, size, "not a memory image (magic '%s')", h->magic);
}
