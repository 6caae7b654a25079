/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reading a memory image's header (DESIGN.md "Memory image"; the daemon's writer is
 * daemon/save-image.c) for `snapshotctl info`: the client stays a plain bus client and
 * does not link the daemon, so it reads the 92 bytes itself. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client-save-image.h"

int save_header_read(const char *path, SaveHeader *ret) {
        struct {
                char magic[16];
                uint32_t version, data_len, was_running, format, cookie_offset, unused[14];
        } h;
        struct stat st;
        ssize_t n;
        int fd;

        _Static_assert(sizeof(h) == 92, "the header is 92 bytes");

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return -EBADF;
        }
        n = pread(fd, &h, sizeof(h), 0);
        close(fd);
        if (n != (ssize_t) sizeof(h))
                return -EBADMSG;

        *ret = (SaveHeader) {
                .version = h.version, .data_len = h.data_len, .was_running = h.was_running,
                .format = h.format, .stream_offset = 92 + (uint64_t) h.data_len, .size = (uint64_t) st.st_size,
        };
        memcpy(ret->magic, h.magic, 16);
        ret->magic[16] = 0;
        if (memcmp(h.magic, "LibvirtQemudSave", 16) == 0)
                ret->complete = true;
        else if (memcmp(h.magic, "LibvirtQemudPart", 16) != 0)
                return -EBADMSG;
        return 0;
}
