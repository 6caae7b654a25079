/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.example.Snapshot1.Domain */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "create-options.h"
#include "domain-managed.h"
#include "domain.h"
#include "errors.h"
#include "job-create.h"
#include "macro.h"
#include "manager.h"
#include "path-util.h"
#include "polkit.h"
#include "snapshot-redefine.h"
#include "snapshot-store.h"
#include "snapshot.h"

int domain_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                       sd_bus_error *error) {
        _cleanup_free_ char *name = NULL;
        Manager *m = userdata;
        Domain *d;
        int r;

        /* Only /…/domain/<D>: the same fallback prefix also covers the snapshot objects. */
        r = sd_bus_path_decode(path, SNAPSHOT_DOMAIN_PREFIX, &name);
        if (r <= 0)
                return 0;
        d = manager_find_domain(m, name);
        if (!d)
                return 0;
        *found = d;
        return 1;
}

int domain_emit_changed(Domain *d, const char *property) {
        if (!d->manager->bus)
                return 0;
        return sd_bus_emit_properties_changed(d->manager->bus, d->path, SNAPSHOT_IFACE_DOMAIN, property, NULL);
}

int domain_send_progress(Domain *d, const char *job, const char *phase, uint64_t processed, uint64_t remaining,
                         uint64_t total) {
        if (!d->manager->bus)
                return 0;
        return sd_bus_emit_signal(d->manager->bus, d->path, SNAPSHOT_IFACE_DOMAIN, "Progress", "ssttt",
                                  job, phase, processed, remaining, total);
}

static int property_get_name(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", domain_name(userdata));
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Domain *d = userdata;
        return sd_bus_message_append(reply, "s", domain_state_to_string(d->state));
}

static int property_get_current(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Domain *d = userdata;
        return sd_bus_message_append(reply, "o", d->current ? d->current->path : "/");
}

static int property_get_job(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", domain_job_name(userdata));
}

static int property_get_has_agent(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Domain *d = userdata;
        return sd_bus_message_append(reply, "b", d->has_agent);
}

static int property_get_managed(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", domain_is_managed(userdata));
}

/* Checks shared by both create methods, then hands over to the job. */
static int domain_create(Domain *d, sd_bus_message *m, CreateRequest *req, sd_bus_error *error) {
        int r;

        r = bus_authorize(m, SNAPSHOT_ACTION_CREATE, domain_name(d), req->name, &d->manager->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */

        r = snapshot_rules_check_flags(req->flags, req->memory, d->state, error);
        if (r < 0)
                return r;

        if (isempty(req->name)) {
                struct timespec ts;

                /* As virsh does: the creation time in seconds since the epoch. */
                (void) clock_gettime(CLOCK_REALTIME, &ts);
                free(req->name);
                if (asprintf(&req->name, "%lld", (long long) ts.tv_sec) < 0)
                        return -ENOMEM;
        }
        if (!snapshot_name_is_valid(req->name))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "Invalid snapshot name '%s': it must be 1-255 bytes of UTF-8 without '/', control characters or a leading '.'",
                                         req->name);
        if (!(req->flags & SNAPSHOT_CREATE_NO_METADATA) && domain_find_snapshot(d, req->name))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_SNAPSHOT_EXISTS,
                                         "Domain '%s' already has a snapshot '%s'", domain_name(d), req->name);
        if (!(req->flags & SNAPSHOT_CREATE_NO_METADATA) && d->n_snapshots >= manager_max_snapshots(d->manager))
                return domain_error_too_many_snapshots(d, error);
        if (domain_busy(d))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_BUSY,
                                         "Domain '%s' is busy with job '%s'", domain_name(d), domain_job_name(d));

        return create_job_start(d, m, req, error);
}

static int method_create_snapshot(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(create_request_clear) CreateRequest req = {};
        Domain *d = userdata;
        const char *name, *description;
        int r;

        r = sd_bus_message_read(m, "ss", &name, &description);
        if (r < 0)
                return r;
        r = create_options_read(m, &req, error);
        if (r < 0)
                return r;

        req.name = strdup(name);
        req.description = strdup(description);
        if (!req.name || !req.description)
                return -ENOMEM;

        return domain_create(d, m, &req, error);
}

static int method_create_snapshot_xml(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(create_request_clear) CreateRequest req = {};
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        Domain *d = userdata;
        const char *xml;
        uint64_t flags;
        int r;

        r = sd_bus_message_read(m, "st", &xml, &flags);
        if (r < 0)
                return r;
        if (flags & ~(uint64_t) SNAPSHOT_CREATE_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown create flags 0x%llx",
                                         (unsigned long long) (flags & ~(uint64_t) SNAPSHOT_CREATE_ALL));

        r = snapshot_xml_parse(xml, strlen(xml), &def);
        if (r == -EFBIG)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "Snapshot XML is larger than %u bytes", SNAPSHOT_XML_MAX_SIZE);
        if (r < 0)
                return sd_bus_error_set(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                        "Snapshot XML is not a well-formed <domainsnapshot> document without DTD or entities");

        if (flags & SNAPSHOT_CREATE_REDEFINE) {
                Snapshot *s = NULL;

                r = bus_authorize(m, SNAPSHOT_ACTION_CREATE, domain_name(d), def->name, &d->manager->polkit, error);
                if (r < 0)
                        return r;
                if (r == 0)
                        return 1; /* polkit is being asked; the call comes back here */
                if (domain_busy(d))
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_BUSY, "Domain '%s' is busy with job '%s'",
                                                 domain_name(d), domain_job_name(d));
                r = domain_redefine_snapshot(d, TAKE_PTR(def), flags, &s, error);
                if (r < 0)
                        return r;
                return sd_bus_reply_method_return(m, "o", s ? s->path : "/");
        }

        r = create_request_from_def(def, flags, &req, error);
        if (r < 0)
                return r;

        return domain_create(d, m, &req, error);
}

static int method_list_snapshots(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_free_ Snapshot **l = NULL;
        Domain *d = userdata;
        uint64_t flags;
        size_t n = 0;
        int r;

        r = sd_bus_message_read(m, "t", &flags);
        if (r < 0)
                return r;
        if (flags & ~(uint64_t) SNAPSHOT_LIST_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown list flags 0x%llx",
                                         (unsigned long long) (flags & ~(uint64_t) SNAPSHOT_LIST_ALL));
        r = bus_authorize(m, SNAPSHOT_ACTION_LIST, domain_name(d), NULL, &d->manager->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */

        /* Roots only, or the whole forest parents-first (a topological order in any case). */
        r = domain_list_snapshots(d, NULL, flags, !(flags & SNAPSHOT_LIST_ROOTS), &l, &n);
        if (r < 0)
                return r;
        return snapshot_reply_paths(m, l, n);
}

static int method_lookup_snapshot(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Domain *d = userdata;
        const char *name;
        Snapshot *s;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        r = bus_authorize(m, SNAPSHOT_ACTION_LIST, domain_name(d), name, &d->manager->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */
        s = domain_find_snapshot(d, name);
        if (!s)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_NO_SUCH_SNAPSHOT,
                                         "Domain '%s' has no snapshot '%s'", domain_name(d), name);
        return sd_bus_reply_method_return(m, "o", s->path);
}

static int method_abort_job(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Domain *d = userdata;
        int r;

        r = bus_authorize(m, SNAPSHOT_ACTION_CREATE, domain_name(d), NULL, &d->manager->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */
        if (!d->job)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID, "No job runs on domain '%s'",
                                         domain_name(d));
        /* Only a running memory save can be stopped; the rest finishes in moments. */
        r = create_job_abort(d->job, error);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_start_stop(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Domain *d = userdata;
        uint64_t flags;
        bool start = streq(sd_bus_message_get_member(m), "Start");
        int r;

        r = sd_bus_message_read(m, "t", &flags);
        if (r < 0)
                return r;
        if (flags & ~(uint64_t) (start ? 0 : SNAPSHOT_STOP_ALL))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%llx",
                                         (unsigned long long) flags);
        r = bus_authorize(m, SNAPSHOT_ACTION_MANAGE, domain_name(d), NULL, &d->manager->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */
        if (!domain_is_managed(d))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                         "Domain '%s' is attached (its QEMU was started elsewhere): snapshotd cannot %s it",
                                         domain_name(d), start ? "start" : "stop");
        if (domain_busy(d) || d->pending_start || d->pending_stop)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_BUSY, "Domain '%s' is busy", domain_name(d));

        if (start) {
                if (domain_managed_active(d))
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID,
                                                 "Domain '%s' is already %s", domain_name(d),
                                                 domain_state_to_string(d->state));
                r = domain_managed_spawn(d, false, false);
                if (r < 0)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot start QEMU for domain '%s': %s",
                                                 domain_name(d), strerror(-r));
                d->pending_start = sd_bus_message_ref(m);
                domain_connect_soon(d);
                return 1;
        }

        if (!domain_managed_active(d))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID, "Domain '%s' is not running",
                                         domain_name(d));
        r = domain_managed_stop(d, flags & SNAPSHOT_STOP_FORCE);
        if (r < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot stop domain '%s': %s",
                                         domain_name(d), strerror(-r));
        d->pending_stop = sd_bus_message_ref(m);
        return 1;
}

const sd_bus_vtable domain_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", property_get_name, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CurrentSnapshot", "o", property_get_current, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Job", "s", property_get_job, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("HasAgent", "b", property_get_has_agent, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Managed", "b", property_get_managed, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("CreateSnapshot",
                                SD_BUS_ARGS("s", name, "s", description, "a{sv}", options),
                                SD_BUS_RESULT("o", snapshot),
                                method_create_snapshot, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CreateSnapshotXML",
                                SD_BUS_ARGS("s", xml, "t", flags),
                                SD_BUS_RESULT("o", snapshot),
                                method_create_snapshot_xml, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListSnapshots",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_RESULT("ao", snapshots),
                                method_list_snapshots, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("LookupSnapshot",
                                SD_BUS_ARGS("s", name),
                                SD_BUS_RESULT("o", snapshot),
                                method_lookup_snapshot, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AbortJob",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                method_abort_job, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Start",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_NO_RESULT,
                                method_start_stop, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Stop",
                                SD_BUS_ARGS("t", flags),
                                SD_BUS_NO_RESULT,
                                method_start_stop, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Progress",
                                SD_BUS_ARGS("s", job, "s", phase, "t", processed, "t", remaining, "t", total),
                                0),
        SD_BUS_VTABLE_END
};
