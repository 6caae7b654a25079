/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The memory image header: write → commit → read round trip, the stream offset, refusal of
 * partial and malformed images, the free-space check, and a byte-for-byte check of the
 * layout by Python's struct (the way tests/lib/snaptest.py reads it). */
#include <byteswap.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libxml/tree.h>

#include "macro.h"
#include "save-image.h"
#include "snapshot-store.h"
#include "unit-test.h"

#define S(x) ((char *) (x))

static char tmpdir[] = "/tmp/test-save-image-XXXXXX";

static DomainDiskDef disks[] = {
        { S("vda"), S("/var/lib/snapshotd/images/vm1/base.qcow2"), S("qcow2"), S("#block123") },
        { S("vdb"), S("/var/lib/snapshotd/images/vm1/data.raw"), S("raw"), NULL },
};
static const DomainDef dom = {
        .name = S("vm1"),
        .memory_kib = 1048576,
        .vcpus = 2,
        .disks = disks,
        .n_disks = ELEMENTSOF(disks),
};

static int open_new(const char *name) {
        _cleanup_free_ char *p = NULL;

        if (asprintf(&p, "%s/%s", tmpdir, name) < 0)
                abort();
        return open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

/* A file holding exactly the given header and data bytes. */
static int make_image(const char *name, const SaveImageHeader *h, const void *data, size_t n) {
        int fd = open_new(name);

        if (fd < 0 || pwrite(fd, h, sizeof(*h), 0) != (ssize_t) sizeof(*h) ||
            (n > 0 && pwrite(fd, data, n, sizeof(*h)) != (ssize_t) n))
                abort();
        return fd;
}

static SaveImageHeader good_header(uint32_t data_len) {
        SaveImageHeader h = { .version = 2, .data_len = data_len, .was_running = 1 };

        memcpy(h.magic, SAVE_IMAGE_MAGIC, SAVE_IMAGE_MAGIC_SIZE);
        return h;
}

static int read_header(int fd) {
        SaveImageHeader h;
        _cleanup_free_ char *xml = NULL;

        return save_image_read_header(fd, &h, &xml);
}

static void formats(void) {
        static const char *const names[] = { "raw", "gzip", "bzip2", "xz", "lzop", "zstd", "sparse" };

        /* On-disk numbers, libvirt's virQEMUSaveFormat. */
        CHECK(SAVE_IMAGE_FORMAT_RAW == 0 && SAVE_IMAGE_FORMAT_GZIP == 1 && SAVE_IMAGE_FORMAT_BZIP2 == 2 &&
              SAVE_IMAGE_FORMAT_XZ == 3 && SAVE_IMAGE_FORMAT_LZOP == 4 && SAVE_IMAGE_FORMAT_ZSTD == 5 &&
              SAVE_IMAGE_FORMAT_SPARSE == 6, "format values");
        for (int i = 0; i < _SAVE_IMAGE_FORMAT_MAX; i++) {
                CHECK_STREQ(save_image_format_to_string(i), names[i]);
                CHECK(save_image_format_from_string(names[i]) == i, "%s", names[i]);
        }
        CHECK(!save_image_format_to_string(_SAVE_IMAGE_FORMAT_MAX), "past the end");
        CHECK(!save_image_format_to_string(-1), "negative");
        CHECK(save_image_format_from_string("lzma") == -EINVAL, "lzma was never released");
        CHECK(save_image_format_from_string("RAW") == -EINVAL, "case-sensitive");
        CHECK(save_image_format_from_string(NULL) == -EINVAL, "NULL");
}

static void domain_xml(void) {
        _cleanup_free_ char *xml = NULL;
        DomainDef bad = dom;

        CHECK(domain_def_format_xml(&dom, &xml) == 0, "format");
        CHECK(xml && strncmp(xml, "<domain type=\"qemu\">", 20) == 0, "root: %s", xml);
        CHECK(xml && strstr(xml, "<name>vm1</name>"), "name");
        CHECK(xml && strstr(xml, "<memory unit=\"KiB\">1048576</memory>"), "memory");
        CHECK(xml && strstr(xml, "<vcpu>2</vcpu>"), "vcpu");
        CHECK(xml && strstr(xml, "<source file=\"/var/lib/snapshotd/images/vm1/data.raw\"/>"), "disk");
        CHECK(xml && strstr(xml, "<target dev=\"vdb\" bus=\"virtio\"/>"), "target");
        CHECK(xml && !strstr(xml, "domainsnapshot") && !strstr(xml, "<?xml"), "standalone");

        bad.name = NULL;
        CHECK(domain_def_format_xml(&bad, &xml) == -EINVAL, "no name");
        bad.name = S("a\001b");
        CHECK(domain_def_format_xml(&bad, &xml) == -EINVAL, "control character");
}

/* Parses the image with Python's struct exactly as tests/lib/snaptest.py does. */
static void python_struct_check(const char *path, uint64_t stream_offset, const char *stream) {
        _cleanup_free_ char *cmd = NULL;
        int r;

        if (access("/usr/bin/python3", X_OK) < 0) {
                printf("# skipping the Python struct check: no /usr/bin/python3\n");
                return;
        }
        if (asprintf(&cmd,
                     "/usr/bin/python3 -c '\n"
                     "import struct, sys\n"
                     "S = struct.Struct(\"=16s19I\")\n"
                     "assert S.size == 92\n"
                     "raw = open(sys.argv[1], \"rb\").read()\n"
                     "v = S.unpack(raw[:92])\n"
                     "assert v[0] == b\"LibvirtQemudSave\", v[0]\n"
                     "assert v[1:6] == (2, %d, 1, 0, 0), v[1:6]\n"
                     "assert all(x == 0 for x in v[6:])\n"
                     "xml, pad = raw[92:92 + v[2]].split(b\"\\0\", 1)\n"
                     "assert xml.startswith(b\"<domain type=\\\"qemu\\\">\"), xml[:40]\n"
                     "assert pad == bytes(%u), len(pad)\n"
                     "assert raw[92 + v[2]:].startswith(sys.argv[3].encode())\n"
                     "assert 92 + v[2] == int(sys.argv[2])\n"
                     "' '%s' %" PRIu64 " '%s'",
                     (int) (stream_offset - SAVE_IMAGE_HEADER_SIZE), SAVE_IMAGE_XML_PADDING,
                     path, stream_offset, stream) < 0)
                abort();
        r = system(cmd);
        CHECK(r == 0, "python struct check exited %d", r);
}

static void round_trip(void) {
        static const char stream[] = "QEVM\0\0\0\3 fake migration stream";
        _cleanup_free_ char *xml = NULL, *xml_back = NULL, *path = NULL, *pad = NULL;
        _cleanup_close_ int fd = -1;
        SaveImageHeader h;
        uint64_t off = 0, off2 = 0;
        char buf[sizeof(stream)];
        struct stat st;
        bool zeros = true;

        CHECK(domain_def_format_xml(&dom, &xml) == 0, "format");
        fd = open_new("vm1.mem");
        CHECK(fd >= 0, "open");

        CHECK(save_image_begin(fd, xml, true, &off) == 0, "begin");
        CHECK(off == SAVE_IMAGE_HEADER_SIZE + strlen(xml) + 1 + 64 * 1024, "offset %" PRIu64, off);
        /* QEMU writes from the fd's offset: it must be exactly the stream offset. */
        CHECK(lseek(fd, 0, SEEK_CUR) == (off_t) off, "file offset after begin");
        CHECK(fstat(fd, &st) == 0 && (uint64_t) st.st_size == off, "size after begin");

        /* Not committed yet: never taken for a whole image. */
        CHECK(read_header(fd) == -EINPROGRESS, "partial refused");
        CHECK(lseek(fd, 0, SEEK_CUR) == (off_t) off, "reader does not move the offset");

        CHECK(write(fd, stream, sizeof(stream) - 1) == (ssize_t) sizeof(stream) - 1, "stream");
        CHECK(save_image_commit(fd) == 0, "commit");
        CHECK(lseek(fd, 0, SEEK_CUR) == (off_t) (off + sizeof(stream) - 1), "commit does not move the offset");

        CHECK(save_image_read_header(fd, &h, &xml_back) == 0, "read");
        CHECK(memcmp(h.magic, "LibvirtQemudSave", 16) == 0, "magic");
        CHECK(h.version == 2, "version %u", h.version);
        CHECK(h.data_len == strlen(xml) + 1 + 65536, "data_len %u", h.data_len);
        CHECK(h.was_running == 1, "was_running");
        CHECK(h.format == SAVE_IMAGE_FORMAT_RAW, "format");
        CHECK(h.cookie_offset == 0, "cookie_offset");
        for (size_t i = 0; i < ELEMENTSOF(h.unused); i++)
                CHECK(h.unused[i] == 0, "unused[%zu]", i);
        CHECK_STREQ(xml_back, xml);
        CHECK(save_image_stream_offset(&h, &off2) == 0 && off2 == off, "stream offset %" PRIu64, off2);
        CHECK(pread(fd, buf, sizeof(stream) - 1, (off_t) off) == (ssize_t) sizeof(stream) - 1 &&
              memcmp(buf, stream, sizeof(stream) - 1) == 0, "stream at the offset");

        pad = malloc(64 * 1024);
        CHECK(pad && pread(fd, pad, 64 * 1024, (off_t) (SAVE_IMAGE_HEADER_SIZE + strlen(xml) + 1)) == 64 * 1024,
              "padding");
        for (size_t i = 0; pad && i < 64 * 1024; i++)
                if (pad[i] != 0)
                        zeros = false;
        CHECK(zeros, "padding is zeros");

        /* The XML is optional for the caller. */
        CHECK(save_image_read_header(fd, &h, NULL) == 0, "read without xml");

        if (asprintf(&path, "%s/vm1.mem", tmpdir) < 0)
                abort();
        python_struct_check(path, off, "QEVM");
}

static void reuse_and_begin_errors(void) {
        _cleanup_close_ int fd = -1, fa = -1;
        _cleanup_free_ char *big = NULL;
        int pipefd[2];
        uint64_t off = 0;
        struct stat st;
        char junk[200000];
        SaveImageHeader h;

        /* A reused file loses its old, longer contents. */
        fd = open_new("reuse.mem");
        memset(junk, 'x', sizeof(junk));
        CHECK(write(fd, junk, sizeof(junk)) == (ssize_t) sizeof(junk), "junk");
        CHECK(save_image_begin(fd, "<domain/>", false, &off) == 0, "begin over junk");
        CHECK(fstat(fd, &st) == 0 && (uint64_t) st.st_size == off, "truncated to the offset");
        CHECK(save_image_commit(fd) == 0, "commit");
        CHECK(save_image_read_header(fd, &h, NULL) == 0 && h.was_running == 0, "was_running 0");

        CHECK(save_image_begin(fd, "", false, &off) == -EINVAL, "empty xml");
        CHECK(save_image_begin(fd, NULL, false, &off) == -EINVAL, "NULL xml");
        CHECK(save_image_begin(-1, "<domain/>", false, &off) == -EINVAL, "bad fd");

        big = malloc(SAVE_IMAGE_DATA_MAX);
        if (!big)
                abort();
        memset(big, 'a', SAVE_IMAGE_DATA_MAX - 1);
        big[SAVE_IMAGE_DATA_MAX - 1] = 0;
        CHECK(save_image_begin(fd, big, false, &off) == -EFBIG, "XML too large");

        fa = open_new("append.mem");
        CHECK(fa >= 0 && fcntl(fa, F_SETFL, O_APPEND) == 0, "O_APPEND");
        CHECK(save_image_begin(fa, "<domain/>", false, &off) == -EINVAL, "O_APPEND refused");

        CHECK(pipe(pipefd) == 0, "pipe");
        CHECK(save_image_begin(pipefd[1], "<domain/>", false, &off) == -EINVAL, "pipe refused");
        (void) close(pipefd[0]);
        (void) close(pipefd[1]);
}

static void malformed(void) {
        static const char data[] = "<domain/>\0\0\0\0\0\0\0stream";
        const uint32_t dlen = 16;       /* "<domain/>" + NUL + 6 zeros */
        SaveImageHeader h;
        int fd;

        /* The baseline is valid. */
        h = good_header(dlen);
        fd = make_image("ok", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == 0, "baseline");
        /* Truncated: inside the header, inside the data; exactly header + data is fine. */
        CHECK(ftruncate(fd, 50) == 0 && read_header(fd) == -EBADMSG, "truncated header");
        CHECK(ftruncate(fd, 0) == 0 && read_header(fd) == -EBADMSG, "empty file");
        CHECK(pwrite(fd, &h, sizeof(h), 0) == sizeof(h) && pwrite(fd, data, dlen - 1, sizeof(h)) == dlen - 1 &&
              read_header(fd) == -EBADMSG, "truncated data");
        CHECK(ftruncate(fd, sizeof(h) + dlen) == 0 && read_header(fd) == 0, "no stream yet");
        (void) close(fd);

        memcpy(h.magic, "LibvirtQemudSavX", 16);
        fd = make_image("magic", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EBADMSG, "bad magic");
        (void) close(fd);

        h = good_header(dlen);
        memcpy(h.magic, SAVE_IMAGE_MAGIC_PARTIAL, 16);
        fd = make_image("partial", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EINPROGRESS, "partial");
        (void) close(fd);

        h = good_header(dlen);
        h.version = 3;
        fd = make_image("v3", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EPROTONOSUPPORT, "version 3");
        (void) close(fd);
        h.version = 1;
        fd = make_image("v1", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EPROTONOSUPPORT, "version 1");
        (void) close(fd);

        /* Written on a host of the other byte order: every u32 swapped. */
        h = good_header(dlen);
        h.version = bswap_32(h.version);
        h.data_len = bswap_32(h.data_len);
        h.was_running = bswap_32(h.was_running);
        fd = make_image("swapped", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EPROTOTYPE, "other byte order");
        (void) close(fd);

        h = good_header(dlen);
        h.format = 7;
        fd = make_image("format7", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EOPNOTSUPP, "unknown format");
        (void) close(fd);
        h.format = SAVE_IMAGE_FORMAT_ZSTD;
        fd = make_image("zstd", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == 0, "zstd is known");
        (void) close(fd);

        h = good_header(sizeof(data));  /* one byte past the end of the file */
        fd = make_image("beyond", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EBADMSG, "data_len beyond the file");
        (void) close(fd);
        h = good_header(0);
        fd = make_image("zero", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EBADMSG, "data_len 0");
        (void) close(fd);
        h = good_header(SAVE_IMAGE_DATA_MAX + 1);
        fd = make_image("huge", &h, data, sizeof(data) - 1);
        CHECK(ftruncate(fd, SAVE_IMAGE_HEADER_SIZE + SAVE_IMAGE_DATA_MAX + 2) == 0 &&
              read_header(fd) == -EBADMSG, "data_len over the limit");
        (void) close(fd);

        /* No NUL within data_len: "<domain/>" is 9 bytes. */
        h = good_header(9);
        fd = make_image("nonul", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EBADMSG, "missing NUL");
        (void) close(fd);
        h = good_header(dlen);
        fd = make_image("emptyxml", &h, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
        CHECK(read_header(fd) == -EBADMSG, "empty XML");
        (void) close(fd);

        /* libvirt's save cookie: the XML ends at cookie_offset. */
        h = good_header(dlen);
        h.cookie_offset = 10;
        fd = make_image("cookie", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == 0, "cookie after the XML");
        (void) close(fd);
        h.cookie_offset = 9;
        fd = make_image("cookie-nonul", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EBADMSG, "XML not terminated before the cookie");
        (void) close(fd);
        h.cookie_offset = dlen + 1;
        fd = make_image("cookie-beyond", &h, data, sizeof(data) - 1);
        CHECK(read_header(fd) == -EBADMSG, "cookie_offset beyond data_len");
        (void) close(fd);

        h = good_header(0);
        CHECK(save_image_stream_offset(&h, &(uint64_t) {0}) == -EINVAL, "stream offset of data_len 0");
}

static void space(void) {
        _cleanup_close_ int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        uint64_t avail = 0;

        CHECK(dfd >= 0, "open dir");
        CHECK(save_image_check_space(dfd, 0, &avail) == 0, "nothing needed");
        CHECK(save_image_check_space(dfd, UINT64_MAX, &avail) == -ENOSPC, "huge need");
        CHECK(avail < UINT64_MAX, "available reported: %" PRIu64, avail);
        CHECK(save_image_check_space(-1, 1, &avail) == -EINVAL, "bad fd");
}

int main(void) {
        _cleanup_free_ char *cmd = NULL;

        if (!mkdtemp(tmpdir))
                return 1;

        formats();
        domain_xml();
        round_trip();
        reuse_and_begin_errors();
        malformed();
        space();

        if (asprintf(&cmd, "rm -rf '%s'", tmpdir) >= 0)
                (void) system(cmd);
        return unit_done("test-save-image");
}
