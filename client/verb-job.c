/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The verbs that change a domain's snapshots after the fact, and the job itself: revert,
 * delete, abort, job. Revert and delete run as jobs and show their progress. */
#include <errno.h>
#include <stdio.h>

#include "client-bus.h"
#include "client-job.h"
#include "client-output.h"
#include "daemon/macro.h"
#include "snapshot-bus.h"
#include "snapshotctl.h"

const VerbOption revert_options[] = {
        { "running",     NULL, "Run the guest afterwards, whatever the snapshot's state", SNAPSHOT_REVERT_RUNNING },
        { "paused",      NULL, "Leave the guest paused afterwards",                       SNAPSHOT_REVERT_PAUSED  },
        { "force",       NULL, "Revert even where it is risky",                           SNAPSHOT_REVERT_FORCE   },
        { "no-progress", NULL, "Do not show the job's progress" },
        {}
};

const VerbOption delete_options[] = {
        { "children",      NULL, "Delete the snapshot and all its descendants",   SNAPSHOT_DELETE_CHILDREN      },
        { "children-only", NULL, "Delete only the descendants",                    SNAPSHOT_DELETE_CHILDREN_ONLY },
        { "metadata",      NULL, "Forget the snapshot; keep every file",           SNAPSHOT_DELETE_METADATA_ONLY },
        { "no-progress",   NULL, "Do not show the job's progress" },
        {}
};

/* Calls method on a snapshot as a job (progress on stderr); returns 0 or the error. */
static int snapshot_job(sd_bus *bus, const VerbArgs *a, const char *method, const char *done) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ char *domain_path = NULL, *path = NULL;
        const char *domain = a->args[0], *name = a->args[1];
        int r;

        r = bus_get_domain(bus, domain, &domain_path);
        if (r < 0)
                return r;
        r = bus_lookup_snapshot(bus, domain, domain_path, name, &path);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_call(bus, &m, SNAPSHOT_BUS_NAME, path, SNAPSHOT_IFACE_SNAPSHOT, method);
        if (r >= 0)
                r = sd_bus_message_append(m, "t", verb_flags(a));
        if (r < 0)
                return log_error_errno(r, "Failed to build the %s call: %m", method);

        r = bus_call_job(bus, m, domain_path, &(JobOptions) {
                                 .no_progress = verb_has(a, "no-progress"),
                                 .not_abortable = true },
                         &error, NULL);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to %s snapshot '%s' of domain '%s'",
                                     method[0] == 'R' ? "revert to" : "delete", name, domain);
        printf("Domain snapshot %s %s\n", name, done);
        return 0;
}

int verb_revert(sd_bus *bus, const VerbArgs *a) {
        return snapshot_job(bus, a, "Revert", "reverted");
}

int check_delete(const VerbArgs *a) {
        if (verb_has(a, "children") && verb_has(a, "children-only"))
                return log_usage("--children and --children-only exclude each other.");
        return 0;
}

int verb_delete(sd_bus *bus, const VerbArgs *a) {
        return snapshot_job(bus, a, "Delete", "deleted");
}

int verb_abort(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *domain_path = NULL;
        int r;

        r = bus_get_domain(bus, a->args[0], &domain_path);
        if (r < 0)
                return r;
        r = bus_call_method(bus, domain_path, SNAPSHOT_IFACE_DOMAIN, "AbortJob", CALL_TIMEOUT_DEFAULT, &error,
                            NULL, NULL);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to abort the job of domain '%s'", a->args[0]);
        /* snapshotd rolls the job back; its caller gets Aborted once that is done. */
        printf("Job of domain %s aborting\n", a->args[0]);
        return 0;
}

static int print_json_pair(const char *k1, const char *v1, const char *k2, const char *v2) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        int r;

        o = json_pack("{s:s, s:s}", k1, v1, k2, v2);
        if (!o)
                return log_error_errno(ENOMEM, "Out of memory.");
        r = json_print(o);
        if (r < 0)
                return log_error_errno(r, "Failed to format JSON: %m");
        return 0;
}

int verb_job(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *domain_path = NULL, *job = NULL;
        int r;

        r = bus_get_domain(bus, a->args[0], &domain_path);
        if (r < 0)
                return r;
        r = bus_get_string_property(bus, domain_path, SNAPSHOT_IFACE_DOMAIN, "Job", &error, &job);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to get the job of domain '%s'", a->args[0]);

        /* JSON keeps the property's own value: "" when idle. */
        if (arg_json != JSON_OFF)
                return print_json_pair("Domain", a->args[0], "Job", job);
        printf("%s\n", isempty(job) ? "none" : job);
        return 0;
}

const VerbOption stop_options[] = {
        { "force", NULL, "Stop at once, without a graceful shutdown", SNAPSHOT_STOP_FORCE },
        {}
};

static int domain_call(sd_bus *bus, const VerbArgs *a, const char *method, uint64_t flags, const char *done) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *domain_path = NULL;
        int r;

        r = bus_get_domain(bus, a->args[0], &domain_path);
        if (r < 0)
                return r;
        r = bus_call_method(bus, domain_path, SNAPSHOT_IFACE_DOMAIN, method, CALL_TIMEOUT_JOB, &error, NULL, "t", flags);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to %s domain '%s'", method[2] == 'a' ? "start" : "stop",
                                     a->args[0]);
        printf("Domain %s %s\n", a->args[0], done);
        return 0;
}

int verb_start(sd_bus *bus, const VerbArgs *a) {
        return domain_call(bus, a, "Start", 0, "started");
}

int verb_stop(sd_bus *bus, const VerbArgs *a) {
        return domain_call(bus, a, "Stop", verb_flags(a), "stopped");
}

int verb_parent(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *domain_path = NULL, *path = NULL, *parent = NULL, *name = NULL;
        int r;

        r = bus_get_domain(bus, a->args[0], &domain_path);
        if (r < 0)
                return r;
        r = bus_lookup_snapshot(bus, a->args[0], domain_path, a->args[1], &path);
        if (r < 0)
                return r;
        r = bus_get_string_property(bus, path, SNAPSHOT_IFACE_SNAPSHOT, "Parent", &error, &parent);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to get the parent of snapshot '%s'", a->args[1]);
        if (streq(parent, "/")) {
                /* No such snapshot to show, as for a name not found. */
                exit_status_note(EXIT_NO_SUCH_OBJECT);
                return log_error_errno(ENOENT, "Snapshot '%s' has no parent.", a->args[1]);
        }
        r = bus_get_string_property(bus, parent, SNAPSHOT_IFACE_SNAPSHOT, "Name", &error, &name);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to get the name of snapshot %s", parent);

        if (arg_json != JSON_OFF) {
                _cleanup_(json_decrefp) json_t *o = NULL;

                o = json_pack("{s:s, s:s, s:s}", "Domain", a->args[0], "Name", a->args[1], "Parent", name);
                if (!o)
                        return log_error_errno(ENOMEM, "Out of memory.");
                r = json_print(o);
                if (r < 0)
                        return log_error_errno(r, "Failed to format JSON: %m");
                return 0;
        }
        printf("%s\n", name);
        return 0;
}
