/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The qcow2 overlay writer, judged by QEMU's own tools: qemu-img check finds no error or
 * leak, qemu-img info reads back the size, backing file and format, and through qemu-io
 * the overlay reads its backing file's data where it has none and keeps what is written
 * to it (allocation works on our refcounts). Bad arguments are refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "macro.h"
#include "qcow2-overlay.h"
#include "unit-test.h"

static char tmpdir[] = "/tmp/test-qcow2-overlay-XXXXXX";

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
        _cleanup_free_ char *cmd = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&cmd, fmt, ap);
        va_end(ap);
        if (r < 0)
                abort();
        r = system(cmd);
        return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

/* `qemu-img info --output=json` of path, parsed. */
static json_t *info(const char *path) {
        _cleanup_free_ char *out = NULL;
        json_error_t e;
        json_t *j;

        if (asprintf(&out, "%s/info.json", tmpdir) < 0)
                abort();
        if (run("qemu-img info --output=json '%s' > '%s'", path, out) != 0)
                return NULL;
        j = json_load_file(out, 0, &e);
        unlink(out);
        return j;
}

static char *path_of(const char *name) {
        char *p;

        if (asprintf(&p, "%s/%s", tmpdir, name) < 0)
                abort();
        return p;
}

static int write_overlay(const char *name, uint64_t size, const char *backing, const char *fmt) {
        _cleanup_free_ char *p = path_of(name);
        _cleanup_close_ int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        if (fd < 0)
                abort();
        return qcow2_overlay_write(fd, size, backing, fmt);
}

static void check_image(const char *name, uint64_t size, const char *backing, const char *fmt) {
        _cleanup_free_ char *p = path_of(name);
        json_t *j;

        CHECK(run("qemu-img check -q '%s'", p) == 0, "qemu-img check of %s", name);
        j = info(p);
        CHECK(j != NULL, "qemu-img info of %s", name);
        if (!j)
                return;
        CHECK_STREQ(json_string_value(json_object_get(j, "format")), "qcow2");
        CHECK((uint64_t) json_integer_value(json_object_get(j, "virtual-size")) == size, "%s: virtual size %lld",
              name, (long long) json_integer_value(json_object_get(j, "virtual-size")));
        CHECK(json_integer_value(json_object_get(j, "cluster-size")) == 65536, "%s: cluster size", name);
        CHECK_STREQ(json_string_value(json_object_get(j, "backing-filename")), backing);
        CHECK_STREQ(json_string_value(json_object_get(j, "backing-filename-format")), fmt);
        CHECK_STREQ(json_string_value(json_object_get(json_object_get(json_object_get(j, "format-specific"), "data"),
                                                      "compat")), "1.1");
        json_decref(j);
}

int main(void) {
        _cleanup_free_ char *base_raw = NULL, *base_qcow2 = NULL, *top = NULL, *long_name = NULL;
        int fd;

        if (!mkdtemp(tmpdir))
                return 1;
        base_raw = path_of("base.raw");
        base_qcow2 = path_of("base.qcow2");
        top = path_of("top.qcow2");

        /* backing files with a pattern at 2 MiB */
        CHECK(run("qemu-img create -q -f raw '%s' 1G && qemu-io -f raw -c 'write -P 0x11 2M 64k' '%s' >/dev/null",
                  base_raw, base_raw) == 0, "raw base");
        CHECK(run("qemu-img create -q -f qcow2 '%s' 3G && qemu-io -f qcow2 -c 'write -P 0x22 2M 64k' '%s' >/dev/null",
                  base_qcow2, base_qcow2) == 0, "qcow2 base");

        /* sizes around the L1 table's boundaries: one entry maps 512 MiB */
        CHECK(write_overlay("a.qcow2", 1ULL << 30, base_raw, "raw") == 0, "1 GiB over raw");
        check_image("a.qcow2", 1ULL << 30, base_raw, "raw");
        CHECK(write_overlay("b.qcow2", 3ULL << 30, base_qcow2, "qcow2") == 0, "3 GiB over qcow2");
        check_image("b.qcow2", 3ULL << 30, base_qcow2, "qcow2");
        CHECK(write_overlay("c.qcow2", (512ULL << 20) + 512, base_raw, "raw") == 0, "512 MiB + 512");
        check_image("c.qcow2", (512ULL << 20) + 512, base_raw, "raw");
        CHECK(write_overlay("d.qcow2", 512, base_raw, "raw") == 0, "512 bytes");
        check_image("d.qcow2", 512, base_raw, "raw");
        /* 64 TiB: an L1 table of 16 clusters, all still under the one refcount block */
        CHECK(write_overlay("e.qcow2", 64ULL << 40, base_raw, "raw") == 0, "64 TiB");
        check_image("e.qcow2", 64ULL << 40, base_raw, "raw");

        /* reads fall through to the backing file; writes allocate and stay */
        CHECK(write_overlay("top.qcow2", 3ULL << 30, base_qcow2, "qcow2") == 0, "top");
        CHECK(run("qemu-io -f qcow2 -c 'read -P 0x22 2M 64k' -c 'read -P 0 0 64k' "
                  "-c 'write -P 0x5a 1M 3M' -c 'write -P 0x6b 2G 128k' '%s' >/dev/null", top) == 0, "qemu-io");
        CHECK(run("qemu-io -f qcow2 -c 'read -P 0x5a 1M 3M' -c 'read -P 0x6b 2G 128k' -c 'read -P 0 4M 64k' "
                  "'%s' >/dev/null", top) == 0, "read back");
        check_image("top.qcow2", 3ULL << 30, base_qcow2, "qcow2");
        CHECK(run("qemu-io -f qcow2 -r -c 'read -P 0 1M 1M' -c 'read -P 0x22 2M 64k' '%s' >/dev/null",
                  base_qcow2) == 0, "the backing file is untouched");

        /* refused */
        CHECK(write_overlay("bad1", (1ULL << 30) + 1, base_raw, "raw") == -EINVAL, "size not a multiple of 512");
        CHECK(write_overlay("bad2", 1ULL << 30, "", "raw") == -EINVAL, "empty backing name");
        CHECK(write_overlay("bad3", 1ULL << 30, base_raw, "") == -EINVAL, "empty backing format");
        long_name = malloc(QCOW2_BACKING_NAME_MAX + 2);
        memset(long_name, 'x', QCOW2_BACKING_NAME_MAX + 1);
        long_name[QCOW2_BACKING_NAME_MAX + 1] = 0;
        CHECK(write_overlay("bad4", 1ULL << 30, long_name, "raw") == -EINVAL, "backing name of 1024 bytes");
        CHECK(write_overlay("bad5", 1ULL << 62, base_raw, "raw") == -EFBIG, "too large for an L1 table");
        fd = open(base_raw, O_RDONLY | O_CLOEXEC);
        CHECK(qcow2_overlay_write(fd, 1ULL << 30, base_raw, "raw") == -EBADF, "read-only fd");
        close(fd);

        run("rm -rf '%s'", tmpdir);
        return unit_done("qcow2-overlay");
}
