/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The memory image: libvirt's virDomainSave() format, so libvirt's tools can read what we
 * write. A 92-byte header in host byte order, then data_len bytes (the domain XML, its NUL
 * and zero padding), then QEMU's migration stream at 92 + data_len. Pure codec: never logs.
 *
 * Writing, in the order the daemon does it:
 *   save_image_check_space(dirfd, ram + headroom)      -ENOSPC → NoSpace, nothing created
 *   open O_EXCL|O_NOFOLLOW, save_image_begin()          "LibvirtQemudPart", offset at stream
 *   getfd + migrate fd:NAME ... QEMU reports completed   QEMU writes from the file offset
 *   save_image_commit()                                 fsync, "LibvirtQemudSave", fsync
 * A crash anywhere before the commit leaves the partial magic, which the reader refuses
 * with -EINPROGRESS, so a partial image is never taken for a whole one. */
#pragma once

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SAVE_IMAGE_MAGIC_PARTIAL "LibvirtQemudPart"
#define SAVE_IMAGE_MAGIC         "LibvirtQemudSave"
#define SAVE_IMAGE_MAGIC_SIZE    16U            /* no NUL on disk */
#define SAVE_IMAGE_VERSION       2U
#define SAVE_IMAGE_HEADER_SIZE   92U
/* libvirt's virQEMUSaveDataWrite() sets data_len = strlen(xml) + 1 + 64 KiB on a new image,
 * so the XML can be edited in place later (virsh save-image-define) and grow. Same here. */
#define SAVE_IMAGE_XML_PADDING   (64U * 1024U)
/* The reader refuses larger data_len values: a domain XML is far smaller, and this bounds
 * what a corrupt header can make us allocate. */
#define SAVE_IMAGE_DATA_MAX      (16U * 1024U * 1024U)

/* How the stream after the header is stored; the numbers are on disk (libvirt's
 * virQEMUSaveFormat, src/qemu/qemu_saveimage.h; 3 was lzma, retired before any release as
 * xz took its place). "sparse" (libvirt ≥ 10.x) is QEMU's mapped-ram layout, not a plain
 * stream at 92 + data_len; snapshotd writes only raw. */
typedef enum SaveImageFormat {
        SAVE_IMAGE_FORMAT_RAW    = 0,
        SAVE_IMAGE_FORMAT_GZIP   = 1,
        SAVE_IMAGE_FORMAT_BZIP2  = 2,
        SAVE_IMAGE_FORMAT_XZ     = 3,
        SAVE_IMAGE_FORMAT_LZOP   = 4,
        SAVE_IMAGE_FORMAT_ZSTD   = 5,
        SAVE_IMAGE_FORMAT_SPARSE = 6,
        _SAVE_IMAGE_FORMAT_MAX,
        _SAVE_IMAGE_FORMAT_INVALID = -EINVAL,
} SaveImageFormat;

const char *save_image_format_to_string(SaveImageFormat f);    /* NULL when out of range */
SaveImageFormat save_image_format_from_string(const char *s);  /* -EINVAL when unknown */

/* libvirt's virQEMUSaveHeader, field for field. cookie_offset: when non-zero, the XML takes
 * data[0..cookie_offset) and libvirt's save cookie follows it; we write 0 (no cookie). */
typedef struct SaveImageHeader {
        char magic[SAVE_IMAGE_MAGIC_SIZE];
        uint32_t version;
        uint32_t data_len;
        uint32_t was_running;
        uint32_t format;
        uint32_t cookie_offset;
        uint32_t unused[14];
} SaveImageHeader;

static_assert(sizeof(SaveImageHeader) == SAVE_IMAGE_HEADER_SIZE, "save image header is 92 bytes");
static_assert(offsetof(SaveImageHeader, version) == 16, "version follows the 16-byte magic");
static_assert(offsetof(SaveImageHeader, unused) == 36, "five u32 fields before unused[]");

/* Starts an image in fd (a regular file opened for writing, without O_APPEND): truncates it,
 * writes the header with the partial magic, version 2, format raw, domain_xml with its NUL
 * and SAVE_IMAGE_XML_PADDING zero bytes, and leaves the file offset at the stream offset
 * (returned in *ret_stream_offset, may be NULL), where QEMU's migration stream must start.
 * -EINVAL: empty XML, not a regular file, O_APPEND; -EFBIG: XML too large. */
int save_image_begin(int fd, const char *domain_xml, bool was_running, uint64_t *ret_stream_offset);

/* Finishes an image once QEMU reported the migration completed: fdatasync() (the stream and
 * the file size reach the disk first), rewrite the magic to "LibvirtQemudSave" at offset 0,
 * fdatasync() again. Works on a write-only fd and does not move the file offset. A new
 * file's directory entry is the caller's to fsync. */
int save_image_commit(int fd);

/* Reads and checks the header of an image (pread only: the file offset does not move; fd
 * must be readable). On success fills *ret (host byte order) and, when ret_xml is not NULL,
 * *ret_xml with the domain XML (malloc()ed). Errors, checked in this order:
 *   -EBADMSG          shorter than the header, or neither magic
 *   -EINPROGRESS      partial magic: the save never completed (the image is unusable)
 *   -EPROTOTYPE       version 2 in the other byte order: written on a host of the other
 *                     endianness (we do not convert)
 *   -EPROTONOSUPPORT  any other version
 *   -EOPNOTSUPP       format not in SaveImageFormat
 *   -EBADMSG          data_len 0 or over SAVE_IMAGE_DATA_MAX, header + data_len beyond the
 *                     end of the file (truncated), cookie_offset beyond data_len, or an
 *                     XML that is empty or has no NUL within its bytes
 * Outputs are untouched on error. */
int save_image_read_header(int fd, SaveImageHeader *ret, char **ret_xml);

/* 92 + data_len: where the migration stream starts. -EINVAL when data_len is 0. */
int save_image_stream_offset(const SaveImageHeader *h, uint64_t *ret);

/* Whether the file system of dirfd has need_bytes free for an unprivileged writer
 * (f_bavail * f_frsize). -ENOSPC when not; *ret_available (may be NULL) is set in both
 * cases so the caller can say how much there is. */
int save_image_check_space(int dirfd, uint64_t need_bytes, uint64_t *ret_available);
