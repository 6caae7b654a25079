/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"
#include "path-util.h"
#include "xml-util.h"

bool snapshot_name_is_valid(const char *name) {
        size_t len;

        if (isempty(name))
                return false;
        len = strlen(name);
        if (len > SNAPSHOT_NAME_MAX)
                return false;
        if (name[0] == '.')
                return false;
        for (const char *p = name; *p; p++)
                if (*p == '/' || (unsigned char) *p < 0x20 || *p == 0x7F)
                        return false;
        /* Names are stored in XML: they must be text XML can hold (which includes valid UTF-8). */
        return xml_string_is_valid(name);
}

int image_path_resolve(const char *images_dir, const char *spec, const char *default_name, char **ret) {
        _cleanup_free_ char *joined = NULL;
        const char *rel;
        size_t dlen;

        if (isempty(images_dir) || images_dir[0] != '/')
                return -EINVAL;
        if (isempty(spec))
                spec = default_name;
        if (isempty(spec))
                return -EINVAL;

        for (const char *p = spec; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7F)
                        return -EINVAL;

        dlen = strlen(images_dir);
        while (dlen > 1 && images_dir[dlen - 1] == '/')
                dlen--;

        if (spec[0] == '/') {
                if (strncmp(spec, images_dir, dlen) != 0 || spec[dlen] != '/')
                        return -EINVAL;
                rel = spec + dlen + 1;
        } else
                rel = spec;

        /* Every component below the image dir must be a plain name. */
        if (isempty(rel))
                return -EINVAL;
        for (const char *c = rel; *c; ) {
                size_t n = strcspn(c, "/");

                if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return -EINVAL;
                c += n;
                if (*c == '/') {
                        c++;
                        if (!*c)
                                return -EINVAL; /* trailing slash: a directory */
                }
        }

        if (asprintf(&joined, "%.*s/%s", (int) dlen, images_dir, rel) < 0)
                return -ENOMEM;
        if (strlen(joined) >= PATH_MAX)
                return -ENAMETOOLONG;

        *ret = TAKE_PTR(joined);
        return 0;
}

static const char *path_below(const char *images_dir, const char *path) {
        size_t dlen = strlen(images_dir);

        while (dlen > 1 && images_dir[dlen - 1] == '/')
                dlen--;
        if (strncmp(path, images_dir, dlen) != 0 || path[dlen] != '/')
                return NULL;
        return path + dlen + 1;
}

static int openat_beneath(int dirfd, const char *rel, int flags, mode_t mode) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_NOFOLLOW | O_CLOEXEC),
                .mode = (flags & O_CREAT) ? mode : 0,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int fd;

        fd = (int) syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        if (fd >= 0)
                return fd;
        if (errno != ENOSYS)
                return -errno;

        /* No openat2 (old kernel, or valgrind): walk the components ourselves, refusing a
         * symlink at each step. rel never holds "." or ".." (image_path_resolve refuses them),
         * so staying beneath dirfd needs nothing more. */
        _cleanup_close_ int cur = -1;
        _cleanup_free_ char *copy = strdup(rel);
        char *comp, *slash;
        int at = dirfd;

        if (!copy)
                return -ENOMEM;
        comp = copy;
        while ((slash = strchr(comp, '/'))) {
                int next;

                *slash = 0;
                next = openat(at, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return errno == ENOTDIR ? -ELOOP : -errno;
                closep(&cur);
                cur = next;
                at = cur;
                comp = slash + 1;
        }
        fd = openat(at, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        return fd < 0 ? -errno : fd;
}

int image_file_create(const char *images_dir, const char *path) {
        _cleanup_close_ int dirfd = -1;
        const char *rel;
        int fd;

        rel = path_below(images_dir, path);
        if (!rel)
                return -EINVAL;

        dirfd = open(images_dir, O_DIRECTORY | O_PATH | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;

        fd = openat_beneath(dirfd, rel, O_CREAT | O_EXCL | O_RDWR, 0600);
        if (fd == -ELOOP || fd == -EXDEV)
                return -EPERM;
        return fd;
}

int image_path_check_new(const char *images_dir, const char *path) {
        _cleanup_close_ int dirfd = -1, parent = -1;
        _cleanup_free_ char *dir = NULL;
        const char *rel, *name;
        struct stat st;

        rel = path_below(images_dir, path);
        if (!rel)
                return -EINVAL;

        dirfd = open(images_dir, O_DIRECTORY | O_PATH | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;

        name = strrchr(rel, '/');
        if (name) {
                dir = strndup(rel, name - rel);
                if (!dir)
                        return -ENOMEM;
                name++;
                parent = openat_beneath(dirfd, dir, O_PATH | O_DIRECTORY, 0);
                if (parent == -ENOTDIR || parent == -EXDEV)
                        return -ELOOP;
                if (parent < 0)
                        return parent;
        } else
                name = rel;

        /* lstat semantics: a symlink (dangling or not) counts as taken. */
        if (fstatat(parent >= 0 ? parent : dirfd, name, &st, AT_SYMLINK_NOFOLLOW) >= 0)
                return -EEXIST;
        return errno == ENOENT ? 0 : -errno;
}

int image_file_open_existing(const char *images_dir, const char *path) {
        _cleanup_close_ int dirfd = -1, fd = -1;
        struct stat st;
        const char *rel;

        rel = path_below(images_dir, path);
        if (!rel)
                return -EINVAL;

        dirfd = open(images_dir, O_DIRECTORY | O_PATH | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;

        /* O_NONBLOCK so that a FIFO planted there cannot hang us before the type check. */
        fd = openat_beneath(dirfd, rel, O_RDWR | O_NONBLOCK, 0);
        if (fd == -ELOOP || fd == -EXDEV)
                return -EPERM;
        if (fd < 0)
                return fd;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EPERM;
        if (st.st_uid != geteuid())
                return -EPERM;

        return TAKE_FD(fd);
}

int mkdir_p(const char *path, unsigned mode) {
        _cleanup_free_ char *p = NULL;
        struct stat st;

        if (isempty(path))
                return -EINVAL;
        /* Mostly it is there already (every journal and record write asks): one stat()
         * instead of a mkdir() and a stat() per component. */
        if (stat(path, &st) == 0)
                return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
        p = strdup(path);
        if (!p)
                return -ENOMEM;

        for (char *s = p + 1;; s++) {
                bool end = *s == 0;

                if (!end && *s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0) {
                        if (errno != EEXIST)
                                return -errno;
                        if (stat(p, &st) < 0)
                                return -errno;
                        if (!S_ISDIR(st.st_mode))
                                return -ENOTDIR;
                }
                if (end)
                        break;
                *s = '/';
        }
        return 0;
}
