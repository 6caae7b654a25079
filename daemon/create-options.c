/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "create-options.h"
#include "macro.h"
#include "snapshot-bus.h"

void create_request_clear(CreateRequest *req) {
        if (!req)
                return;
        free(req->name);
        free(req->description);
        free(req->memory_file);
        for (size_t i = 0; i < req->n_disks; i++) {
                free(req->disks[i].target);
                free(req->disks[i].file);
        }
        free(req->disks);
        *req = (CreateRequest) {};
}

static const struct {
        const char *key;
        uint64_t flag;
} bool_options[] = {
        { "live",           SNAPSHOT_CREATE_LIVE },
        { "disk-only",      SNAPSHOT_CREATE_DISK_ONLY },
        { "quiesce",        SNAPSHOT_CREATE_QUIESCE },
        { "atomic",         SNAPSHOT_CREATE_ATOMIC },
        { "halt",           SNAPSHOT_CREATE_HALT },
        { "reuse-external", SNAPSHOT_CREATE_REUSE_EXT },
        { "no-metadata",    SNAPSHOT_CREATE_NO_METADATA },
        { "validate-only",  SNAPSHOT_CREATE_VALIDATE },
};

static int add_disk(CreateRequest *req, const char *target, SnapshotLocation loc, const char *file,
                    sd_bus_error *error) {
        DiskSpec *d;

        if (isempty(target))
                return sd_bus_error_set(error, SNAPSHOT_ERROR_INVALID_ARGUMENT, "Disk target must not be empty");
        for (size_t i = 0; i < req->n_disks; i++)
                if (streq(req->disks[i].target, target))
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Disk '%s' is named twice", target);
        if (loc == SNAPSHOT_LOCATION_DEFAULT)
                loc = SNAPSHOT_LOCATION_EXTERNAL;
        if (!isempty(file) && loc != SNAPSHOT_LOCATION_EXTERNAL)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "Disk '%s': a file is only meaningful for an external snapshot", target);

        d = reallocarray(req->disks, req->n_disks + 1, sizeof(DiskSpec));
        if (!d)
                return -ENOMEM;
        req->disks = d;
        d = &req->disks[req->n_disks];
        *d = (DiskSpec) { .location = loc };
        d->target = strdup(target);
        d->file = file ? strdup(file) : NULL;
        req->n_disks++;
        if (!d->target || (file && !d->file))
                return -ENOMEM;
        return 0;
}

static int read_disks(sd_bus_message *m, CreateRequest *req, sd_bus_error *error) {
        const char *target, *kind, *file;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(sss)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(m, "(sss)", &target, &kind, &file)) > 0) {
                SnapshotLocation loc = snapshot_location_from_string(kind);

                if (loc < 0 || loc == SNAPSHOT_LOCATION_DEFAULT)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Disk '%s': unknown snapshot kind '%s' (expected no, internal or external)",
                                                 target, kind);
                r = add_disk(req, target, loc, file, error);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int wrong_type(sd_bus_error *error, const char *key, const char *want, const char *got) {
        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                 "Option '%s' must be of type '%s', not '%s'", key, want, got);
}

int create_options_read(sd_bus_message *m, CreateRequest *req, sd_bus_error *error) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;

        for (;;) {
                const char *key, *contents;
                bool handled = false;

                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, NULL, &contents);
                if (r < 0)
                        return r;

                for (size_t i = 0; i < ELEMENTSOF(bool_options); i++) {
                        int b;

                        if (!streq(key, bool_options[i].key))
                                continue;
                        if (!streq(contents, "b"))
                                return wrong_type(error, key, "b", contents);
                        r = sd_bus_message_read(m, "v", "b", &b);
                        if (r < 0)
                                return r;
                        if (b)
                                req->flags |= bool_options[i].flag;
                        else
                                req->flags &= ~bool_options[i].flag;
                        handled = true;
                        break;
                }

                if (handled)
                        ;
                else if (streq(key, "quiesce-best-effort")) {
                        int b;

                        if (!streq(contents, "b"))
                                return wrong_type(error, key, "b", contents);
                        r = sd_bus_message_read(m, "v", "b", &b);
                        if (r < 0)
                                return r;
                        req->quiesce_best_effort = b;
                } else if (streq(key, "memory")) {
                        const char *s;
                        SnapshotLocation loc;

                        if (!streq(contents, "s"))
                                return wrong_type(error, key, "s", contents);
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r < 0)
                                return r;
                        loc = snapshot_location_from_string(s);
                        if (loc < 0 || loc == SNAPSHOT_LOCATION_DEFAULT)
                                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                         "Unknown memory kind '%s' (expected no, internal or external)", s);
                        req->memory = loc;
                } else if (streq(key, "memory-file")) {
                        const char *s;

                        if (!streq(contents, "s"))
                                return wrong_type(error, key, "s", contents);
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r < 0)
                                return r;
                        free(req->memory_file);
                        req->memory_file = strdup(s);
                        if (!req->memory_file)
                                return -ENOMEM;
                } else if (streq(key, "live-timeout")) {
                        if (!streq(contents, "u"))
                                return wrong_type(error, key, "u", contents);
                        r = sd_bus_message_read(m, "v", "u", &req->live_timeout);
                        if (r < 0)
                                return r;
                } else if (streq(key, "disks")) {
                        if (!streq(contents, "a(sss)"))
                                return wrong_type(error, key, "a(sss)", contents);
                        r = sd_bus_message_enter_container(m, 'v', "a(sss)");
                        if (r < 0)
                                return r;
                        r = read_disks(m, req, error);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_exit_container(m);
                        if (r < 0)
                                return r;
                } else
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown option '%s'", key);

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }

        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        /* A memory file implies an external memory image, as virsh's --memspec does. */
        if (!isempty(req->memory_file)) {
                if (req->memory == SNAPSHOT_LOCATION_DEFAULT)
                        req->memory = SNAPSHOT_LOCATION_EXTERNAL;
                else if (req->memory != SNAPSHOT_LOCATION_EXTERNAL)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Option 'memory-file' needs memory 'external', not '%s'",
                                                 snapshot_location_to_string(req->memory));
        }
        return 0;
}

int create_request_from_def(const SnapshotDef *def, uint64_t flags, CreateRequest *req, sd_bus_error *error) {
        int r;

        req->flags = flags;
        if (def->name) {
                req->name = strdup(def->name);
                if (!req->name)
                        return -ENOMEM;
        }
        if (def->description) {
                req->description = strdup(def->description);
                if (!req->description)
                        return -ENOMEM;
        }
        req->memory = def->memory;
        if (def->memory_file) {
                req->memory_file = strdup(def->memory_file);
                if (!req->memory_file)
                        return -ENOMEM;
                if (req->memory == SNAPSHOT_LOCATION_DEFAULT)
                        req->memory = SNAPSHOT_LOCATION_EXTERNAL;
        }
        for (size_t i = 0; i < def->n_disks; i++) {
                r = add_disk(req, def->disks[i].target, def->disks[i].location, def->disks[i].file, error);
                if (r < 0)
                        return r;
        }
        return 0;
}
