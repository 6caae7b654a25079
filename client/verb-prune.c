/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* prune: delete a domain's oldest snapshots (by CreationTime), with their data, until
 * --keep=N remain; what a nightly timer runs after taking the night's snapshot.
 *
 * Oldest first, one Delete job at a time: snapshotd merges a deleted snapshot's overlay
 * into its base and its children stand on the result, so each later snapshot is still
 * whole when its turn comes. snapshotd checks everything before it changes anything, so a
 * delete it refuses (a branch it cannot merge, a busy domain) leaves that snapshot as it
 * was; prune stops there rather than skip ahead and leave a gap in the history. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-bus.h"
#include "client-job.h"
#include "client-objects.h"
#include "client-output.h"
#include "client-snapshot-list.h"
#include "snapshot-bus.h"
#include "snapshotctl.h"

const VerbOption prune_options[] = {
        { "keep",        "N",  "How many snapshots to keep: the newest N by creation time (required)" },
        { "dry-run",     NULL, "Only show which snapshots would be deleted" },
        { "no-progress", NULL, "Do not show the delete jobs' progress" },
        {}
};

static size_t arg_keep = 0;

int check_prune(const VerbArgs *a) {
        const char *keep = verb_value(a, "keep");
        unsigned long long v;
        char *end;

        if (!keep)
                return log_usage("'prune' needs --keep=N, the number of snapshots to keep.");
        if (verb_values(a, "keep")[1])
                return log_usage("--keep= given more than once.");

        errno = 0;
        v = strtoull(keep, &end, 10);
        if (keep[0] < '0' || keep[0] > '9' || *end != '\0' || errno != 0 || v > SIZE_MAX)
                return log_usage("--keep= needs a number of snapshots (0 or more), not '%s'.", keep);

        arg_keep = (size_t) v;
        return 0;
}

static int compare_oldest_first(const void *a, const void *b) {
        const SnapshotInfo *x = a, *y = b;

        if (x->creation_time != y->creation_time)
                return x->creation_time < y->creation_time ? -1 : 1;
        return strcmp(x->name ?: "", y->name ?: "");
}

/* Delete(0) as a job. Returns 1 when deleted, 0 when it was gone already, or the error
 * (logged, and left in *error for the JSON report). */
static int prune_one(sd_bus *bus, const char *domain, const char *domain_path, const SnapshotInfo *s,
                     bool no_progress, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SNAPSHOT_BUS_NAME, s->path, SNAPSHOT_IFACE_SNAPSHOT, "Delete");
        if (r >= 0)
                r = sd_bus_message_append(m, "t", (uint64_t) 0);
        if (r < 0)
                return log_error_errno(r, "Failed to build the Delete call: %m");

        r = bus_call_job(bus, m, domain_path, &(JobOptions) {
                                 .no_progress = no_progress,
                                 .not_abortable = true },
                         error, NULL);
        if (r < 0 && bus_error_is_gone(error))
                return 0;       /* someone else deleted it meanwhile: what prune wanted */
        if (r < 0)
                return log_bus_error(error, r, "Failed to delete snapshot '%s' of domain '%s'", s->name, domain);
        return 1;
}

static json_t *snapshot_summary_json(const SnapshotInfo *s) {
        return json_pack("{s:s, s:s, s:I}", "Name", s->name ?: "", "Path", s->path ?: "",
                         "CreationTime", (json_int_t) (s->creation_time > INT64_MAX ? INT64_MAX : s->creation_time));
}

static int print_report(const char *domain, bool dry_run, const SnapshotList *l, size_t first_kept,
                        json_t *deleted, const SnapshotInfo *failed, const sd_bus_error *error) {
        _cleanup_(json_decrefp) json_t *o = NULL, *kept = NULL, *failure = NULL;
        int r;

        kept = json_array();
        if (!kept)
                return -ENOMEM;
        for (size_t i = first_kept; i < l->n; i++)
                if (json_array_append_new(kept, snapshot_summary_json(l->items + i)) < 0)
                        return -ENOMEM;

        if (failed) {
                failure = snapshot_summary_json(failed);
                if (!failure ||
                    json_object_set_new(failure, "Error", json_string(sd_bus_error_is_set(error) ? error->name : "")) < 0 ||
                    json_object_set_new(failure, "Message", json_string(strempty(error->message))) < 0)
                        return -ENOMEM;
        }

        o = json_pack("{s:s, s:I, s:b, s:O, s:O, s:O?}",
                      "Domain", domain,
                      "Keep", (json_int_t) arg_keep,
                      "DryRun", dry_run,
                      "Deleted", deleted,
                      "Kept", kept,
                      "Failed", failure);
        if (!o)
                return -ENOMEM;
        r = json_print(o);
        return r;
}

int verb_prune(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(snapshot_list_done) SnapshotList l = {};
        _cleanup_(json_decrefp) json_t *deleted = NULL;
        _cleanup_free_ char *domain_path = NULL;
        const char *domain = a->args[0];
        bool dry_run = verb_has(a, "dry-run"), json = arg_json != JSON_OFF;
        const SnapshotInfo *failed = NULL;
        size_t n_delete, n_done = 0;
        int r;

        r = bus_get_domain(bus, domain, &domain_path);
        if (r < 0)
                return r;

        r = snapshot_list_load(bus, domain, domain_path, 0, /* want_json= */ false, &l);
        if (r < 0)
                return r;
        qsort(l.items, l.n, sizeof(SnapshotInfo), compare_oldest_first);

        deleted = json_array();
        if (!deleted)
                return log_error_errno(ENOMEM, "Out of memory.");

        n_delete = l.n > arg_keep ? l.n - arg_keep : 0;
        for (size_t i = 0; i < n_delete; i++) {
                const SnapshotInfo *s = l.items + i;
                char created[64];

                if (!dry_run) {
                        r = prune_one(bus, domain, domain_path, s, verb_has(a, "no-progress"), &error);
                        if (r < 0) {
                                failed = s;
                                break;
                        }
                        n_done++;
                        if (r == 0)
                                continue;
                }

                if (json_array_append_new(deleted, snapshot_summary_json(s)) < 0)
                        return log_error_errno(ENOMEM, "Out of memory.");

                if (json)
                        continue;
                if (format_timestamp(s->creation_time, created, sizeof(created)) < 0)
                        strcpy(created, "-");
                printf("%s snapshot %s (created %s)\n", dry_run ? "Would delete" : "Deleted", s->name, created);
        }

        if (json) {
                int k = print_report(domain, dry_run, &l, failed ? (size_t) (failed - l.items) : n_delete,
                                     deleted, failed, &error);
                if (k < 0)
                        return log_error_errno(k, "Failed to format JSON: %m");
        } else if (n_delete == 0)
                printf("Domain %s has %zu snapshot%s, --keep=%zu: nothing to delete\n",
                       domain, l.n, l.n == 1 ? "" : "s", arg_keep);

        if (failed)
                /* log_bus_error() said why; this says where the pruning stands. */
                return log_error_errno(r, "Pruning of domain '%s' stopped at snapshot '%s': %zu of %zu deleted, "
                                       "%zu snapshots remain.", domain, failed->name, n_done, n_delete,
                                       l.n - n_done);
        return 0;
}
