/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Names and the files callers name (DESIGN.md rule 9). Pure functions plus the one place
 * that creates or opens an image file under a domain's image directory. */
#pragma once

#include <stdbool.h>

#define SNAPSHOT_NAME_MAX 255

/* Snapshot and domain names: non-empty, at most 255 bytes, valid UTF-8, no '/', no leading
 * '.', no control characters. */
bool snapshot_name_is_valid(const char *name);

/* Resolves what a caller named (absolute, relative to images_dir, or "" for default_name)
 * to an absolute path that lies strictly under images_dir. Refuses (-EINVAL) ".." or "."
 * components, empty components, control characters and paths outside. */
int image_path_resolve(const char *images_dir, const char *spec, const char *default_name, char **ret);

/* Creates path (already resolved under images_dir) with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600,
 * without following a symlink in any component below images_dir. Returns the fd. */
int image_file_create(const char *images_dir, const char *path);

/* Whether a new file may be created at path (resolved under images_dir): 0 when its
 * directory is reached without symlinks and the name is free; -EEXIST when anything is
 * there (a symlink included), -ELOOP when a directory on the way is a symlink, -ENOENT when
 * the directory is missing. Used to refuse up front what image_file_create would refuse. */
int image_path_check_new(const char *images_dir, const char *path);

/* For REUSE_EXT: opens an existing file under images_dir without following any symlink and
 * checks it is a regular file owned by us. Returns the fd. */
int image_file_open_existing(const char *images_dir, const char *path);

/* mkdir -p; missing components are created with mode; -ENOTDIR when one is not a directory. */
int mkdir_p(const char *path, unsigned mode);
