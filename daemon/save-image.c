/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <byteswap.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "macro.h"
#include "save-image.h"

static const char *const save_image_format_table[_SAVE_IMAGE_FORMAT_MAX] = {
        [SAVE_IMAGE_FORMAT_RAW]    = "raw",
        [SAVE_IMAGE_FORMAT_GZIP]   = "gzip",
        [SAVE_IMAGE_FORMAT_BZIP2]  = "bzip2",
        [SAVE_IMAGE_FORMAT_XZ]     = "xz",
        [SAVE_IMAGE_FORMAT_LZOP]   = "lzop",
        [SAVE_IMAGE_FORMAT_ZSTD]   = "zstd",
        [SAVE_IMAGE_FORMAT_SPARSE] = "sparse",
};

const char *save_image_format_to_string(SaveImageFormat f) {
        if (f < 0 || f >= _SAVE_IMAGE_FORMAT_MAX)
                return NULL;
        return save_image_format_table[f];
}

SaveImageFormat save_image_format_from_string(const char *s) {
        if (!s)
                return _SAVE_IMAGE_FORMAT_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(save_image_format_table); i++)
                if (streq(save_image_format_table[i], s))
                        return (SaveImageFormat) i;
        return _SAVE_IMAGE_FORMAT_INVALID;
}

static int pwrite_full(int fd, const void *buf, size_t n, off_t offset) {
        const uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = pwrite(fd, p, n, offset);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)     /* pwrite() of n > 0 bytes to a regular file never says 0 */
                        return -EIO;
                p += k;
                n -= (size_t) k;
                offset += k;
        }
        return 0;
}

/* Reads up to n bytes; fewer only at the end of the file. Returns the count read. */
static ssize_t pread_full(int fd, void *buf, size_t n, off_t offset) {
        uint8_t *p = buf;
        size_t done = 0;

        while (done < n) {
                ssize_t k = pread(fd, p + done, n - done, offset + (off_t) done);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                done += (size_t) k;
        }
        return (ssize_t) done;
}

static int fdatasync_retry(int fd) {
        while (fdatasync(fd) < 0) {
                if (errno != EINTR)
                        return -errno;
        }
        return 0;
}

int save_image_begin(int fd, const char *domain_xml, bool was_running, uint64_t *ret_stream_offset) {
        _cleanup_free_ uint8_t *buf = NULL;
        SaveImageHeader h = {};
        struct stat st;
        size_t xml_size, total;
        int flags, r;

        if (fd < 0 || isempty(domain_xml))
                return -EINVAL;

        xml_size = strlen(domain_xml) + 1;
        if (xml_size > SAVE_IMAGE_DATA_MAX - SAVE_IMAGE_XML_PADDING)
                return -EFBIG;

        if (fstat(fd, &st) < 0)
                return -errno;
        /* QEMU writes the stream through this fd from its offset: it must be a plain, seekable
         * file, and pwrite() on an O_APPEND fd would append instead of writing at 0. */
        if (!S_ISREG(st.st_mode))
                return -EINVAL;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if (flags & O_APPEND)
                return -EINVAL;

        memcpy(h.magic, SAVE_IMAGE_MAGIC_PARTIAL, SAVE_IMAGE_MAGIC_SIZE);
        h.version = SAVE_IMAGE_VERSION;
        h.data_len = (uint32_t) (xml_size + SAVE_IMAGE_XML_PADDING);
        h.was_running = was_running;
        h.format = SAVE_IMAGE_FORMAT_RAW;

        /* One buffer, one write: header, XML with its NUL, then zeros (calloc). */
        total = SAVE_IMAGE_HEADER_SIZE + h.data_len;
        buf = calloc(1, total);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, &h, sizeof(h));
        memcpy(buf + SAVE_IMAGE_HEADER_SIZE, domain_xml, xml_size);

        /* A reused file (REUSE_EXT) may hold a longer old image: nothing of it may survive
         * past the end of the new stream. */
        if (ftruncate(fd, 0) < 0)
                return -errno;
        r = pwrite_full(fd, buf, total, 0);
        if (r < 0)
                return r;
        if (lseek(fd, (off_t) total, SEEK_SET) < 0)
                return -errno;

        if (ret_stream_offset)
                *ret_stream_offset = total;
        return 0;
}

int save_image_commit(int fd) {
        int r;

        if (fd < 0)
                return -EINVAL;

        /* The stream must be on disk before the header says it is complete; otherwise a
         * crash could leave a "whole" image with a hole where the stream should be. */
        r = fdatasync_retry(fd);
        if (r < 0)
                return r;
        /* Only the magic changes; 16 bytes inside the first sector. */
        r = pwrite_full(fd, SAVE_IMAGE_MAGIC, SAVE_IMAGE_MAGIC_SIZE, 0);
        if (r < 0)
                return r;
        return fdatasync_retry(fd);
}

int save_image_read_header(int fd, SaveImageHeader *ret, char **ret_xml) {
        _cleanup_free_ char *xml = NULL;
        SaveImageHeader h;
        struct stat st;
        uint32_t xml_len;
        ssize_t n;

        if (fd < 0 || !ret)
                return -EINVAL;

        if (fstat(fd, &st) < 0)
                return -errno;
        n = pread_full(fd, &h, sizeof(h), 0);
        if (n < 0)
                return (int) n;
        if ((size_t) n < sizeof(h))
                return -EBADMSG;

        if (memcmp(h.magic, SAVE_IMAGE_MAGIC, SAVE_IMAGE_MAGIC_SIZE) != 0) {
                if (memcmp(h.magic, SAVE_IMAGE_MAGIC_PARTIAL, SAVE_IMAGE_MAGIC_SIZE) == 0)
                        return -EINPROGRESS;
                return -EBADMSG;
        }

        if (h.version != SAVE_IMAGE_VERSION)
                return bswap_32(h.version) == SAVE_IMAGE_VERSION ? -EPROTOTYPE : -EPROTONOSUPPORT;
        if (h.format >= _SAVE_IMAGE_FORMAT_MAX)
                return -EOPNOTSUPP;

        if (h.data_len == 0 || h.data_len > SAVE_IMAGE_DATA_MAX)
                return -EBADMSG;
        /* st_size of a regular file; a block device says 0 and is refused here too. */
        if ((uint64_t) st.st_size < (uint64_t) SAVE_IMAGE_HEADER_SIZE + h.data_len)
                return -EBADMSG;
        if (h.cookie_offset > h.data_len)
                return -EBADMSG;

        xml_len = h.cookie_offset > 0 ? h.cookie_offset : h.data_len;
        xml = malloc(xml_len);
        if (!xml)
                return -ENOMEM;
        n = pread_full(fd, xml, xml_len, SAVE_IMAGE_HEADER_SIZE);
        if (n < 0)
                return (int) n;
        if ((size_t) n < xml_len)       /* shrank since fstat() */
                return -EBADMSG;
        if (xml[0] == 0 || !memchr(xml, 0, xml_len))
                return -EBADMSG;

        *ret = h;
        if (ret_xml) {
                /* Hand out only the string, not the padding after it. */
                char *s = strdup(xml);
                if (!s)
                        return -ENOMEM;
                *ret_xml = s;
        }
        return 0;
}

int save_image_stream_offset(const SaveImageHeader *h, uint64_t *ret) {
        if (!h || !ret || h->data_len == 0)
                return -EINVAL;
        *ret = (uint64_t) SAVE_IMAGE_HEADER_SIZE + h->data_len;
        return 0;
}

int save_image_check_space(int dirfd, uint64_t need_bytes, uint64_t *ret_available) {
        struct statvfs sv;
        uint64_t avail;

        if (dirfd < 0)
                return -EINVAL;
        if (fstatvfs(dirfd, &sv) < 0)
                return -errno;
        if (__builtin_mul_overflow((uint64_t) sv.f_bavail, (uint64_t) sv.f_frsize, &avail))
                avail = UINT64_MAX;

        if (ret_available)
                *ret_available = avail;
        return avail < need_bytes ? -ENOSPC : 0;
}
