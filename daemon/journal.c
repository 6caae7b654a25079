/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"
#include "macro.h"
#include "path-util.h"
#include "worker.h"
#include "xml-util.h"

#define JOURNAL_MAX_SIZE (1024U * 1024U)

struct Journal {
        char *dir;
        char *filename;
        json_t *root;
};

static int journal_paths(const char *state_dir, const char *domain, char **ret_dir, char **ret_file) {
        if (asprintf(ret_dir, "%s/journal", state_dir) < 0)
                return -ENOMEM;
        if (asprintf(ret_file, "%s.json", domain) < 0) {
                free(*ret_dir);
                return -ENOMEM;
        }
        return 0;
}

int journal_new(Journal **ret, const char *state_dir, const char *domain, const char *job) {
        Journal *jn;
        int r;

        jn = calloc(1, sizeof(Journal));
        if (!jn)
                return -ENOMEM;
        r = journal_paths(state_dir, domain, &jn->dir, &jn->filename);
        if (r < 0) {
                free(jn);
                return r;
        }
        jn->root = json_pack("{s:s}", "job", job);
        if (!jn->root) {
                journal_free(jn);
                return -ENOMEM;
        }
        *ret = jn;
        return 0;
}

Journal *journal_free(Journal *jn) {
        if (!jn)
                return NULL;
        json_decref(jn->root);
        free(jn->dir);
        free(jn->filename);
        free(jn);
        return NULL;
}

struct JournalWrite {
        char *dir;
        char *filename;
        char *data;
};

void journal_write_free(void *p) {
        JournalWrite *jw = p;

        if (!jw)
                return;
        free(jw->dir);
        free(jw->filename);
        free(jw->data);
        free(jw);
}

int journal_snapshot(Journal *jn, JournalWrite **ret) {
        JournalWrite *jw = calloc(1, sizeof(JournalWrite));

        if (!jw)
                return -ENOMEM;
        jw->dir = strdup(jn->dir);
        jw->filename = strdup(jn->filename);
        jw->data = json_dumps(jn->root, JSON_COMPACT | JSON_SORT_KEYS);
        if (!jw->dir || !jw->filename || !jw->data) {
                journal_write_free(jw);
                return -ENOMEM;
        }
        *ret = jw;
        return 0;
}

int journal_write_run(void *p) {
        JournalWrite *jw = p;
        int r;

        r = mkdir_p(jw->dir, 0700);
        if (r < 0)
                return r;
        return xml_file_write_atomic(jw->dir, jw->filename, jw->data, strlen(jw->data));
}

static int journal_write(Journal *jn) {
        JournalWrite *jw = NULL;
        int r;

        r = journal_snapshot(jn, &jw);
        if (r < 0)
                return r;
        r = journal_write_run(jw);
        journal_write_free(jw);
        return r;
}

int journal_put(Journal *jn, const char *key, json_t *value) {
        if (!value || json_object_set_new(jn->root, key, value) < 0)
                return -ENOMEM;
        return 0;
}

int journal_sync(Journal *jn) {
        return journal_write(jn);
}

int journal_set(Journal *jn, const char *key, json_t *value) {
        int r = journal_put(jn, key, value);

        return r < 0 ? r : journal_write(jn);
}

int journal_remove(Journal *jn) {
        int r = xml_file_remove(jn->dir, jn->filename);

        return r == -ENOENT ? 0 : r;
}

int journal_unlink(Journal *jn) {
        _cleanup_free_ char *path = NULL;

        if (asprintf(&path, "%s/%s", jn->dir, jn->filename) < 0)
                return -ENOMEM;
        return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int journal_unlink_sync(Journal *jn) {
        return fsync_dir(jn->dir);
}

static int fsync_dir_run(void *dir) {
        return fsync_dir(dir);
}

void journal_unlink_sync_later(sd_event *event, Journal *jn) {
        char *dir = strdup(jn->dir);
        Worker *w;

        if (!dir) {
                (void) journal_unlink_sync(jn);
                return;
        }
        worker_start_or_run(&w, event, fsync_dir_run, dir, free, NULL, NULL);
        worker_detach(w);
}

int journal_load(const char *state_dir, const char *domain, json_t **ret) {
        _cleanup_free_ char *dir = NULL, *file = NULL, *data = NULL;
        _cleanup_close_ int dirfd = -1;
        size_t size = 0;
        json_t *root;
        int r;

        r = journal_paths(state_dir, domain, &dir, &file);
        if (r < 0)
                return r;
        dirfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;
        r = xml_file_read(dirfd, file, JOURNAL_MAX_SIZE, &data, &size);
        if (r < 0)
                return r;
        root = json_loadb(data, size, 0, NULL);
        if (!json_is_object(root)) {
                json_decref(root);
                return -EBADMSG;
        }
        *ret = root;
        return 0;
}

int journal_delete(const char *state_dir, const char *domain) {
        _cleanup_free_ char *dir = NULL, *file = NULL;
        int r;

        r = journal_paths(state_dir, domain, &dir, &file);
        if (r < 0)
                return r;
        r = xml_file_remove(dir, file);
        return r == -ENOENT ? 0 : r;
}
