/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "macro.h"
#include "path-util.h"
#include "snapshot-bus.h"
#include "unit-test.h"

static void names(void) {
        char long_name[300];

        CHECK(snapshot_name_is_valid("s1"), "plain");
        CHECK(snapshot_name_is_valid("before upgrade"), "space");
        CHECK(snapshot_name_is_valid("vor-\xc3\xbc" "berall"), "utf-8");
        CHECK(!snapshot_name_is_valid(""), "empty");
        CHECK(!snapshot_name_is_valid(NULL), "null");
        CHECK(!snapshot_name_is_valid("a/b"), "slash");
        CHECK(!snapshot_name_is_valid("../x"), "dotdot");
        CHECK(!snapshot_name_is_valid(".hidden"), "leading dot");
        CHECK(!snapshot_name_is_valid("a\nb"), "newline");
        CHECK(!snapshot_name_is_valid("a\x7f"), "DEL");
        CHECK(!snapshot_name_is_valid("\xc3"), "truncated utf-8");
        CHECK(!snapshot_name_is_valid("\xc0\xaf"), "overlong utf-8");
        memset(long_name, 'a', 255);
        long_name[255] = 0;
        CHECK(snapshot_name_is_valid(long_name), "255 bytes");
        long_name[255] = 'a';
        long_name[256] = 0;
        CHECK(!snapshot_name_is_valid(long_name), "256 bytes");
}

static void resolve_ok(const char *dir, const char *spec, const char *def, const char *want) {
        _cleanup_free_ char *p = NULL;
        int r = image_path_resolve(dir, spec, def, &p);

        CHECK(r == 0, "resolve '%s': %d", spec ?: "(null)", r);
        if (r == 0)
                CHECK_STREQ(p, want);
}

static void resolve_bad(const char *dir, const char *spec) {
        _cleanup_free_ char *p = NULL;

        CHECK(image_path_resolve(dir, spec, "d.qcow2", &p) == -EINVAL, "'%s' must be refused", spec);
}

static void resolving(void) {
        resolve_ok("/img", "a.qcow2", "x", "/img/a.qcow2");
        resolve_ok("/img/", "a.qcow2", "x", "/img/a.qcow2");
        resolve_ok("/img", "", "s1.vda.qcow2", "/img/s1.vda.qcow2");
        resolve_ok("/img", NULL, "s1.vda.qcow2", "/img/s1.vda.qcow2");
        resolve_ok("/img", "/img/sub/a.qcow2", "x", "/img/sub/a.qcow2");
        resolve_bad("/img", "../x");
        resolve_bad("/img", "/img/../etc/passwd");
        resolve_bad("/img", "/etc/passwd");
        resolve_bad("/img", "/imgx/a");
        resolve_bad("/img", "/img");
        resolve_bad("/img", "/img/");
        resolve_bad("/img", "a//b");
        resolve_bad("/img", "./a");
        resolve_bad("/img", "a/");
        resolve_bad("/img", "a\nb");
}

static void files(void) {
        char dir[] = "/tmp/test-path-util-XXXXXX";
        _cleanup_free_ char *f = NULL, *link = NULL, *sub = NULL, *fifo = NULL;
        int fd;

        CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        CHECK(asprintf(&f, "%s/a.qcow2", dir) > 0 && asprintf(&link, "%s/l.qcow2", dir) > 0 &&
              asprintf(&sub, "%s/sub/x.qcow2", dir) > 0 && asprintf(&fifo, "%s/fifo", dir) > 0, "asprintf");

        fd = image_file_create(dir, f);
        CHECK(fd >= 0, "create: %d", fd);
        if (fd >= 0) {
                struct stat st;
                CHECK(fstat(fd, &st) == 0 && (st.st_mode & 0777) == 0600, "mode 0600");
                close(fd);
        }
        CHECK(image_file_create(dir, f) == -EEXIST, "O_EXCL");

        fd = image_file_open_existing(dir, f);
        CHECK(fd >= 0, "open existing: %d", fd);
        if (fd >= 0)
                close(fd);

        CHECK(symlink("/etc/passwd", link) == 0, "symlink");
        CHECK(image_file_open_existing(dir, link) == -EPERM, "existing through a symlink refused");
        CHECK(image_file_create(dir, link) < 0, "create over a symlink refused");

        CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
        CHECK(image_file_open_existing(dir, fifo) == -EPERM, "a FIFO is refused");

        CHECK(image_file_create(dir, "/etc/x") == -EINVAL, "outside");
        CHECK(image_file_create(dir, sub) == -ENOENT, "missing subdir");

        unlink(f);
        unlink(link);
        unlink(fifo);
        rmdir(dir);
}

static void directories(void) {
        char dir[] = "/tmp/test-path-util-XXXXXX";
        _cleanup_free_ char *deep = NULL, *file = NULL, *under_file = NULL;
        struct stat st;
        int fd;

        CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        CHECK(asprintf(&deep, "%s/a/b/c", dir) > 0 && asprintf(&file, "%s/f", dir) > 0 &&
              asprintf(&under_file, "%s/f/g", dir) > 0, "asprintf");
        CHECK(mkdir_p(deep, 0700) == 0, "mkdir_p of a new chain");
        CHECK(stat(deep, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700, "made, 0700");
        CHECK(mkdir_p(deep, 0700) == 0, "mkdir_p of an existing one");
        fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        CHECK(fd >= 0, "a file");
        if (fd >= 0)
                close(fd);
        CHECK(mkdir_p(file, 0700) == -ENOTDIR, "a file where the directory would be");
        CHECK(mkdir_p(under_file, 0700) == -ENOTDIR, "a file on the way");
        CHECK(mkdir_p("", 0700) == -EINVAL, "empty");
        unlink(file);
        rmdir(deep);
        *strrchr(deep, '/') = 0;
        rmdir(deep);
        *strrchr(deep, '/') = 0;
        rmdir(deep);
        rmdir(dir);
}

int main(void) {
        names();
        resolving();
        files();
        directories();
        return unit_done("test-path-util");
}
