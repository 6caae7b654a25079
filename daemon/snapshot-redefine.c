/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* REDEFINE (and CURRENT): import or edit a snapshot's metadata without touching the domain,
 * as libvirt does to carry snapshots across hosts or after a restore. The record must be
 * believable: its files exist, its parent is known, the tree stays a tree. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "domain.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "path-util.h"
#include "snapshot-bus.h"
#include "snapshot-redefine.h"
#include "snapshot-store.h"
#include "snapshot.h"

static const struct {
        uint64_t flag;
        const char *name;
} flag_names[] = {
        { SNAPSHOT_CREATE_NO_METADATA, "no-metadata" },
        { SNAPSHOT_CREATE_HALT,        "halt" },
        { SNAPSHOT_CREATE_REUSE_EXT,   "reuse-external" },
        { SNAPSHOT_CREATE_QUIESCE,     "quiesce" },
        { SNAPSHOT_CREATE_ATOMIC,      "atomic" },
};

static int check_file(const char *what, const char *path, sd_bus_error *error) {
        struct stat st;

        if (isempty(path) || path[0] != '/')
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "%s must be an absolute path, not '%s'", what, strempty(path));
        if (stat(path, &st) < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "%s '%s' does not exist: %s", what, path, strerror(errno));
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "%s '%s' is not a regular file or block device", what, path);
        return 0;
}

static int check_def(Domain *d, SnapshotDef *def, uint64_t flags, Snapshot *existing, sd_bus_error *error) {
        Snapshot *parent = NULL;
        int r;

        if (flags & SNAPSHOT_CREATE_LIVE)
                return sd_bus_error_set(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                        "Options 'live' and 'redefine' cannot be combined");
        for (size_t i = 0; i < ELEMENTSOF(flag_names); i++)
                if (flags & flag_names[i].flag)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                 "Options 'redefine' and '%s' cannot be combined", flag_names[i].name);

        if (!snapshot_name_is_valid(def->name))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "Redefining needs a valid <name>, not '%s'", strempty(def->name));

        if (!def->state)
                def->state = strdup(def->memory == SNAPSHOT_LOCATION_EXTERNAL ||
                                    def->memory == SNAPSHOT_LOCATION_INTERNAL ? "running" : "disk-snapshot");
        if (!def->state)
                return -ENOMEM;
        if ((flags & SNAPSHOT_CREATE_DISK_ONLY) && !streq(def->state, "disk-snapshot"))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                         "Option 'disk-only' needs a snapshot in state 'disk-snapshot', not '%s'", def->state);
        if (streq(def->state, "disk-snapshot") &&
            (def->memory == SNAPSHOT_LOCATION_EXTERNAL || def->memory == SNAPSHOT_LOCATION_INTERNAL))
                return sd_bus_error_set(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                        "A snapshot in state 'disk-snapshot' cannot have a memory image");

        if (def->memory == SNAPSHOT_LOCATION_EXTERNAL || def->memory_file) {
                r = check_file("Memory file", def->memory_file, error);
                if (r < 0)
                        return r;
                def->memory = SNAPSHOT_LOCATION_EXTERNAL;
        }
        for (size_t i = 0; i < def->n_disks; i++) {
                SnapshotDiskDef *disk = &def->disks[i];

                if (disk->location == SNAPSHOT_LOCATION_DEFAULT)
                        disk->location = disk->file ? SNAPSHOT_LOCATION_EXTERNAL : SNAPSHOT_LOCATION_NO;
                if (disk->location != SNAPSHOT_LOCATION_EXTERNAL)
                        continue;
                r = check_file("Disk overlay", disk->file, error);
                if (r < 0)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT, "Disk '%s': %s",
                                                 disk->target, error->message);
        }

        if (def->parent) {
                parent = domain_find_snapshot(d, def->parent);
                if (!parent)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Parent snapshot '%s' does not exist", def->parent);
                /* The new parent must not be the snapshot itself or below it. */
                for (Snapshot *p = parent; p; p = p->parent)
                        if (p == existing || streq(snapshot_name(p), def->name))
                                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                         "Parent '%s' would make snapshot '%s' its own ancestor",
                                                         def->parent, def->name);
        }

        if (def->creation_usec == 0) {
                struct timespec ts;

                (void) clock_gettime(CLOCK_REALTIME, &ts);
                def->creation_usec = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        }
        return 0;
}

int domain_redefine_snapshot(Domain *d, SnapshotDef *def_in, uint64_t flags, Snapshot **ret, sd_bus_error *error) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = def_in;
        Manager *m = d->manager;
        Snapshot *existing, *s = NULL;
        bool make_current;
        int r;

        existing = def->name ? domain_find_snapshot(d, def->name) : NULL;
        r = check_def(d, def, flags, existing, error);
        if (r < 0)
                return r;
        if (!existing && d->n_snapshots >= manager_max_snapshots(m))
                return domain_error_too_many_snapshots(d, error);
        if (flags & SNAPSHOT_CREATE_VALIDATE) {
                *ret = NULL;
                return 0;
        }

        /* Keep the current mark where it is unless CURRENT moves it here. */
        make_current = (flags & SNAPSHOT_CREATE_CURRENT) || (existing && snapshot_is_current(existing));
        def->current = make_current;

        r = snapshot_store_save(m->state_dir, domain_name(d), def);
        if (r < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot write the snapshot record: %s",
                                         strerror(-r));

        if (existing) {
                /* Everything but the tree links may change: replace the record. */
                snapshot_def_free(existing->def);
                existing->def = TAKE_PTR(def);
                existing->parent = existing->def->parent ? domain_find_snapshot(d, existing->def->parent) : NULL;
                s = existing;
                (void) sd_bus_emit_object_removed(m->bus, s->path);
                (void) sd_bus_emit_object_added(m->bus, s->path);
        } else {
                r = snapshot_new(&s, d, TAKE_PTR(def));
                if (r < 0)
                        return r;
                r = domain_add_snapshot(d, s);
                if (r < 0) {
                        snapshot_free(s);
                        return r;
                }
                s->parent = s->def->parent ? domain_find_snapshot(d, s->def->parent) : NULL;
                (void) sd_bus_emit_object_added(m->bus, s->path);
                (void) manager_send_snapshot_created(m, d->path, s->path);
        }
        if (s->parent)
                (void) sd_bus_emit_properties_changed(m->bus, s->parent->path, SNAPSHOT_IFACE_SNAPSHOT, "Children", NULL);

        if (make_current && d->current != s) {
                /* s's record already carries the mark. */
                r = domain_set_current(d, s);
                if (r < 0)
                        log_warning_errno(r, "Domain '%s': cannot move the current mark to '%s': %m",
                                          domain_name(d), snapshot_name(s));
        }

        log_info("Domain '%s': snapshot '%s' %s.", domain_name(d), snapshot_name(s), existing ? "redefined" : "imported");
        *ret = s;
        return 0;
}
