/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.example.Snapshot1.Snapshot */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "errors.h"
#include "job-delete.h"
#include "job-revert.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "polkit.h"
#include "snapshot-store.h"
#include "snapshot.h"

int snapshot_build_path(const char *domain_path, const char *name, char **ret) {
        _cleanup_free_ char *prefix = NULL;

        if (asprintf(&prefix, "%s/snapshot", domain_path) < 0)
                return -ENOMEM;
        return sd_bus_path_encode(prefix, name, ret);
}

int snapshot_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                         sd_bus_error *error) {
        _cleanup_free_ char *dname = NULL, *sname = NULL;
        Manager *m = userdata;
        Domain *d;
        Snapshot *s;
        int r;

        r = sd_bus_path_decode_many(path, SNAPSHOT_DOMAIN_PREFIX "/%/snapshot/%", &dname, &sname);
        if (r <= 0)
                return 0;
        d = manager_find_domain(m, dname);
        if (!d)
                return 0;
        s = domain_find_snapshot(d, sname);
        if (!s)
                return 0;
        *found = s;
        return 1;
}

#define DEFINE_STRING_PROPERTY(fname, expr)                                                              \
        static int fname(sd_bus *bus, const char *path, const char *interface, const char *property,    \
                         sd_bus_message *reply, void *userdata, sd_bus_error *error) {                  \
                Snapshot *s = userdata;                                                                  \
                return sd_bus_message_append(reply, "s", (expr) ?: "");                                  \
        }

DEFINE_STRING_PROPERTY(property_get_name, s->def->name)
DEFINE_STRING_PROPERTY(property_get_description, s->def->description)
DEFINE_STRING_PROPERTY(property_get_state, s->def->state)
DEFINE_STRING_PROPERTY(property_get_memory, snapshot_location_to_string(s->def->memory == SNAPSHOT_LOCATION_DEFAULT ?
                                                                        SNAPSHOT_LOCATION_NO : s->def->memory))
DEFINE_STRING_PROPERTY(property_get_memory_file, s->def->memory_file)

static int property_get_domain(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Snapshot *s = userdata;
        return sd_bus_message_append(reply, "o", s->domain->path);
}

static int property_get_parent(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Snapshot *s = userdata;
        return sd_bus_message_append(reply, "o", s->parent ? s->parent->path : "/");
}

static int append_paths(sd_bus_message *reply, Snapshot **l, size_t n) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "o");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                r = sd_bus_message_append(reply, "o", l[i]->path);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

int snapshot_reply_paths(sd_bus_message *m, Snapshot **l, size_t n) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = append_paths(reply, l, n);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int property_get_children(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        _cleanup_free_ Snapshot **l = NULL;
        Snapshot *s = userdata;
        size_t n;
        int r;

        r = snapshot_list_children(s->domain, s, &l, &n);
        if (r < 0)
                return r;
        return append_paths(reply, l, n);
}

static int property_get_creation_time(sd_bus *bus, const char *path, const char *interface, const char *property,
                                      sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Snapshot *s = userdata;
        return sd_bus_message_append(reply, "t", s->def->creation_usec);
}

static int property_get_disks(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Snapshot *s = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(sss)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < s->def->n_disks; i++) {
                const SnapshotDiskDef *disk = &s->def->disks[i];

                r = sd_bus_message_append(reply, "(sss)", disk->target,
                                          snapshot_location_to_string(disk->location), disk->file ?: "");
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_is_current(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", snapshot_is_current(userdata));
}

static int property_get_quiesced(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Snapshot *s = userdata;
        return sd_bus_message_append(reply, "b", s->def->quiesced);
}

static int method_get_xml_desc(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_free_ char *xml = NULL;
        Snapshot *s = userdata;
        uint64_t flags;
        int r;

        r = sd_bus_message_read(m, "t", &flags);
        if (r < 0)
                return r;
        if (flags & ~(uint64_t) SNAPSHOT_XML_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%llx",
                                         (unsigned long long) flags);
        r = bus_authorize(m, SNAPSHOT_ACTION_LIST, domain_name(s->domain), snapshot_name(s),
                          &s->domain->manager->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */

        r = snapshot_xml_format(s->def, &xml);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "s", xml);
}

static int method_list_children(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_free_ Snapshot **l = NULL;
        Snapshot *s = userdata;
        uint64_t flags;
        size_t n;
        int r;

        r = sd_bus_message_read(m, "t", &flags);
        if (r < 0)
                return r;
        if (flags & ~(uint64_t) SNAPSHOT_LIST_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown list flags 0x%llx",
                                         (unsigned long long) (flags & ~(uint64_t) SNAPSHOT_LIST_ALL));
        r = bus_authorize(m, SNAPSHOT_ACTION_LIST, domain_name(s->domain), snapshot_name(s),
                          &s->domain->manager->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */

        r = domain_list_snapshots(s->domain, s, flags, flags & SNAPSHOT_LIST_DESCENDANTS, &l, &n);
        if (r < 0)
                return r;
        return snapshot_reply_paths(m, l, n);
}

static int method_revert(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Snapshot *s = userdata;
        uint64_t flags;
        int r;

        r = sd_bus_message_read(m, "t", &flags);
        if (r < 0)
                return r;
        if (flags & ~(uint64_t) SNAPSHOT_REVERT_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown revert flags 0x%llx",
                                         (unsigned long long) flags);
        r = bus_authorize(m, SNAPSHOT_ACTION_REVERT, domain_name(s->domain), snapshot_name(s),
                          &s->domain->manager->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */
        if (domain_busy(s->domain))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_BUSY, "Domain '%s' is busy with job '%s'",
                                         domain_name(s->domain), domain_job_name(s->domain));
        return revert_job_start(s->domain, s, flags, m, error);
}

static int method_delete(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Snapshot *s = userdata;
        Domain *d = s->domain;
        uint64_t flags;
        int r;

        r = sd_bus_message_read(m, "t", &flags);
        if (r < 0)
                return r;
        if (flags & ~(uint64_t) SNAPSHOT_DELETE_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown delete flags 0x%llx",
                                         (unsigned long long) flags);
        r = bus_authorize(m, SNAPSHOT_ACTION_DELETE, domain_name(d), snapshot_name(s), &d->manager->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */
        if ((flags & SNAPSHOT_DELETE_CHILDREN) && (flags & SNAPSHOT_DELETE_CHILDREN_ONLY))
                return sd_bus_error_set(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                        "Flags 'children' and 'children-only' cannot be combined");
        if (domain_busy(d))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_BUSY,
                                         "Domain '%s' is busy with job '%s'", domain_name(d), domain_job_name(d));
        return delete_job_start(d, s, flags, m, error);
}

const sd_bus_vtable snapshot_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", property_get_name, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Description", "s", property_get_description, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Domain", "o", property_get_domain, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Parent", "o", property_get_parent, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Children", "ao", property_get_children, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CreationTime", "t", property_get_creation_time, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Memory", "s", property_get_memory, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("MemoryFile", "s", property_get_memory_file, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Disks", "a(sss)", property_get_disks, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("IsCurrent", "b", property_get_is_current, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Quiesced", "b", property_get_quiesced, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("GetXMLDesc",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_RESULT("s", xml),
                                method_get_xml_desc, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListChildren",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_RESULT("ao", children),
                                method_list_children, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Revert",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_NO_RESULT,
                                method_revert, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Delete",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_NO_RESULT,
                                method_delete, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};
