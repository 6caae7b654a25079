/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reverting to a snapshot.
 *
 *  - internal (memory and disks inside the qcow2 images): QEMU's snapshot-load job, in
 *    place, on attached and managed domains alike;
 *  - external (disk-only, or with a memory image): the guest must restart on fresh overlays
 *    over the snapshot's images — which are never written — and, with memory, load the
 *    image's migration stream with -incoming. Only a managed domain can be restarted.
 * Afterwards the guest runs or stays paused as the snapshot was (was_running for a memory
 * image), unless RUNNING or PAUSED says otherwise. The current snapshot moves to it, and
 * nothing the revert replaced is deleted.
 *
 * Crash safety (internal): the job keeps a journal (journal.h) naming the snapshot and QEMU's
 * load job, and marks when the load succeeded. A revert cannot go back — the state it
 * replaced is gone once the load started — so a snapshotd that died mid-revert finishes it
 * when it comes back (revert_job_resume): it waits for QEMU's load job, and when that
 * succeeded, sets the guest running or paused and the current snapshot as the revert would
 * have. A load that never started changed nothing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "domain.h"
#include "failpoint.h"
#include "job-revert.h"
#include "job-settle.h"
#include "journal.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "snapshot-bus.h"
#include "snapshot.h"
#include "store-batch.h"
#include "worker.h"

#define JOB_NAME "snapshot-revert"

struct RevertJob {
        Domain *domain;
        uint64_t started_usec;
        uint64_t started_qemu_usec;
        Snapshot *snapshot;
        sd_bus_message *request;
        uint64_t flags;
        char tag[16];
        char *job_id;

        int step;
        bool waiting_job, ev_concluded;
        char *job_error;

        uint64_t call;
        void (*cont)(RevertJob *j, json_t *reply, const QmpError *err);
        sd_bus_error error;

        Journal *journal;       /* internal reverts */
        JobSettle *settle;      /* resumed: waiting for the dead snapshotd's load job */
        bool resumed_loaded;    /* resumed: the journal said the load had succeeded */

        RevertExternal ext;     /* the restart path (job-revert-external.c) */
        Worker *store_worker;   /* the current mark's two records (store-batch.h) */
        bool current_written;
};

static void revert_next(RevertJob *j);

RevertJob *revert_job_free(RevertJob *j) {
        if (!j)
                return NULL;
        if (j->call)
                qmp_cancel(j->domain->qmp, j->call);
        revert_external_clear(&j->ext);
        worker_detach(j->store_worker);
        journal_free(j->journal);
        job_settle_free(j->settle);
        free(j->job_id);
        free(j->job_error);
        sd_bus_message_unref(j->request);
        sd_bus_error_free(&j->error);
        free(j);
        return NULL;
}

static void on_current_written(int r, void *userdata) {
        RevertJob *j = userdata;

        j->store_worker = NULL;
        j->current_written = true;
        if (r < 0)
                log_warning_errno(r, "Domain '%s': cannot record '%s' as current: %m", domain_name(j->domain),
                                  snapshot_name(j->snapshot));
        revert_job_finish(j);
}

/* The mark moves in memory now; its two records are written on a worker, and the job
 * finishes when they are (on_current_written). */
static bool move_current(RevertJob *j) {
        Domain *d = j->domain;
        StoreBatch *b;
        int r;

        if (j->current_written || d->current == j->snapshot)
                return false;
        b = store_batch_new(d->manager->state_dir, domain_name(d));
        r = b ? domain_move_current(d, j->snapshot, b) : -ENOMEM;
        if (r >= 0)
                r = store_batch_seal(b);
        if (r < 0) {
                store_batch_free(b);
                j->current_written = true;
                log_warning_errno(r, "Domain '%s': cannot record '%s' as current: %m", domain_name(d),
                                  snapshot_name(j->snapshot));
                return false;
        }
        worker_start_or_run(&j->store_worker, d->manager->event, store_batch_run_worker, b, store_batch_free_worker,
                            on_current_written, j);
        return true;
}

void revert_job_finish(RevertJob *j) {
        Domain *d = j->domain;
        Manager *m = d->manager;
        Snapshot *s = j->snapshot;
        int r;

        if (!sd_bus_error_is_set(&j->error)) {
                if (move_current(j))
                        return;
                (void) sd_bus_emit_signal(m->bus, SNAPSHOT_ROOT_PATH, SNAPSHOT_IFACE_MANAGER, "SnapshotReverted",
                                          "oo", d->path, s->path);
                log_info("Domain '%s': reverted to snapshot '%s'.", domain_name(d), snapshot_name(s));
        } else
                log_warning("Domain '%s': revert to '%s' failed: %s", domain_name(d), snapshot_name(s),
                            j->error.message);

        if (j->request) {
                if (sd_bus_error_is_set(&j->error))
                        r = sd_bus_reply_method_error(j->request, &j->error);
                else
                        r = sd_bus_reply_method_return(j->request, NULL);
                if (r < 0)
                        log_warning_errno(r, "Domain '%s': failed to reply to Revert: %m", domain_name(d));
        } else
                log_info("Domain '%s': recovery %s the interrupted revert to '%s'.", domain_name(d),
                         sd_bus_error_is_set(&j->error) ? "could not finish" : "finished", snapshot_name(s));
        if (j->journal) {
                /* Durable on a worker, as a create's: see journal.h. */
                r = journal_unlink(j->journal);
                if (r < 0)
                        log_warning_errno(r, "Domain '%s': cannot remove the revert journal: %m", domain_name(d));
                journal_unlink_sync_later(d->manager->event, j->journal);
        }
        log_job_outcome(domain_name(d), JOB_NAME, snapshot_name(s), j->error.name, j->error.message,
                        now_usec() - j->started_usec, qmp_busy_usec(d->qmp) - j->started_qemu_usec);
        (void) domain_send_progress(d, JOB_NAME, "done", 0, 0, 0);
        d->revert_job = NULL;
        (void) domain_emit_changed(d, "Job");
        revert_job_free(j);
        manager_job_ended(m);
}

void revert_job_fail(RevertJob *j, const char *name, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!sd_bus_error_is_set(&j->error))
                (void) sd_bus_error_set(&j->error, name, msg ?: "Out of memory");
        revert_job_finish(j);
}

static void on_reply(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        RevertJob *j = userdata;
        void (*fn)(RevertJob *, json_t *, const QmpError *) = j->cont;

        j->call = 0;
        j->cont = NULL;
        fn(j, reply, err);
}

void revert_job_qmp(RevertJob *j, const char *command, json_t *args, int fd,
                    void (*fn)(RevertJob *j, json_t *reply, const QmpError *err)) {
        int r;

        j->cont = fn;
        r = qmp_call(j->domain->qmp, command, args, fd, 0, on_reply, j, &j->call);
        if (r < 0) {
                QmpError e = { .error = r, .desc = "QEMU is not connected" };

                j->cont = NULL;
                fn(j, NULL, &e);
        }
}

Domain *revert_job_domain(RevertJob *j) {
        return j->domain;
}

Snapshot *revert_job_snapshot(RevertJob *j) {
        return j->snapshot;
}

RevertExternal *revert_job_external(RevertJob *j) {
        return &j->ext;
}

Journal *revert_job_journal(RevertJob *j) {
        return j->journal;
}

/* Run or stay paused, as the snapshot was or as the caller asked. */
bool revert_job_want_running(RevertJob *j, bool was_running) {
        if (j->flags & SNAPSHOT_REVERT_RUNNING)
                return true;
        if (j->flags & SNAPSHOT_REVERT_PAUSED)
                return false;
        return was_running;
}

/* ---- internal: snapshot-load ---- */

/* True when the step is not to go on (the job failed, or hangs). */
static bool revert_failpoint(RevertJob *j, const char *name) {
        FailpointAction a = failpoint(name);

        if (a == FAILPOINT_ERROR)
                revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "Failpoint '%s'", name);
        return a != FAILPOINT_NONE;
}

enum {
        INTERNAL_NODES,
        INTERNAL_LOAD,
        INTERNAL_QUERY,
        INTERNAL_STATE,
        INTERNAL_DONE,
};

/* Does QEMU's node n hold an internal snapshot of that name? */
static bool node_has_snapshot(json_t *n, const char *name) {
        json_t *list = json_object_get(json_object_get(n, "image"), "snapshots"), *sn;
        size_t i;

        json_array_foreach(list, i, sn)
                if (streq_ptr(json_string_value(json_object_get(sn, "name")), name))
                        return true;
        return false;
}

/* The nodes to load the snapshot from, one per disk of it; NULL with *ret_missing set to the
 * first file QEMU does not have open, or (*ret_absent) that does not hold the snapshot. */
static json_t *internal_devices(RevertJob *j, json_t *nodes, const char **ret_vmstate, const char **ret_missing,
                                bool *ret_absent) {
        Snapshot *s = j->snapshot;
        json_t *devices = json_array();

        *ret_vmstate = NULL;
        *ret_missing = NULL;
        *ret_absent = false;
        for (size_t k = 0; devices && k < s->def->domain.n_disks; k++) {
                const char *file = s->def->domain.disks[k].file, *found = NULL;
                bool has = false;
                size_t i;
                json_t *n;

                json_array_foreach(nodes, i, n)
                        if (streq_ptr(json_string_value(json_object_get(n, "file")), file) &&
                            !streq_ptr(json_string_value(json_object_get(n, "drv")), "file")) {
                                found = json_string_value(json_object_get(n, "node-name"));
                                has = node_has_snapshot(n, snapshot_name(s));
                        }
                if (!found || !has) {
                        *ret_missing = file;
                        *ret_absent = found;
                        json_decref(devices);
                        return NULL;
                }
                json_array_append_new(devices, json_string(found));
                *ret_vmstate = *ret_vmstate ?: found;
        }
        return devices;
}

/* A file of the snapshot that another node has as its backing file, or NULL. */
static const char *backing_image(RevertJob *j, json_t *nodes) {
        Snapshot *s = j->snapshot;

        for (size_t k = 0; k < s->def->domain.n_disks; k++) {
                const char *file = s->def->domain.disks[k].file;
                size_t i;
                json_t *n;

                json_array_foreach(nodes, i, n)
                        if (file && streq_ptr(json_string_value(json_object_get(n, "backing_file")), file))
                                return file;
        }
        return NULL;
}

static void on_nodes(RevertJob *j, json_t *reply, const QmpError *err) {
        const char *vmstate, *missing;
        json_t *devices, *args;
        bool absent;

        if (err)
                return revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot read QEMU's block nodes: %s", err->desc);

        devices = internal_devices(j, reply, &vmstate, &missing, &absent);
        /* QEMU's load stops the guest before it finds a snapshot missing, and leaves it
         * stopped: check first. */
        if (absent)
                return revert_job_fail(j, SNAPSHOT_ERROR_FAILED,
                                       "Snapshot '%s' is not inside '%s' any more: QEMU lists no internal snapshot of that name there",
                                       snapshot_name(j->snapshot), missing);
        if (!devices || !vmstate)
                return revert_job_fail(j, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                       "Snapshot '%s' lives in '%s', which the domain does not have open any more",
                                       snapshot_name(j->snapshot), strempty(missing));
        /* QEMU's load stops the guest, then fails on an image it has read-only under an
         * overlay — and leaves the guest stopped: refuse before. */
        missing = backing_image(j, reply);
        if (missing) {
                json_decref(devices);
                return revert_job_fail(j, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                       "Snapshot '%s' lives in '%s', which an external snapshot's overlay now stands on; "
                                       "delete the external snapshots taken after it first",
                                       snapshot_name(j->snapshot), missing);
        }
        if (revert_failpoint(j, "revert-load")) {
                json_decref(devices);
                return;
        }
        (void) domain_send_progress(j->domain, JOB_NAME, "memory", 0, 0, 0);
        args = json_pack("{s:s, s:s, s:s, s:o}", "job-id", j->job_id, "tag", snapshot_name(j->snapshot),
                         "vmstate", vmstate, "devices", devices);
        j->step = INTERNAL_LOAD;
        revert_job_qmp(j, "snapshot-load", args, -1, revert_job_on_reply_next);
}

static void on_jobs(RevertJob *j, json_t *reply, const QmpError *err) {
        size_t i;
        json_t *job;

        if (!err)
                json_array_foreach(reply, i, job)
                        if (streq_ptr(json_string_value(json_object_get(job, "id")), j->job_id)) {
                                const char *e = json_string_value(json_object_get(job, "error"));
                                free(j->job_error);
                                j->job_error = e ? strdup(e) : NULL;
                        }
        /* Said before the job is dismissed: a recovery that finds no job then knows it ran. */
        if (!j->job_error && j->journal && journal_set(j->journal, "loaded", json_true()) < 0)
                log_warning("Domain '%s': cannot write the revert journal.", domain_name(j->domain));
        (void) qmp_call(j->domain->qmp, "job-dismiss", json_pack("{s:s}", "id", j->job_id), -1, 0, NULL, NULL, NULL);
        if (j->job_error)
                return revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU could not load snapshot '%s': %s",
                                       snapshot_name(j->snapshot), j->job_error);
        j->step = INTERNAL_STATE;
        revert_next(j);
}

void revert_job_on_reply_next(RevertJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "%s", err->desc ?: strerror(-err->error));
        if (j->step == INTERNAL_LOAD) {
                if (revert_failpoint(j, "revert-loading"))
                        return;
                j->waiting_job = true;
                if (j->ev_concluded)
                        revert_next(j);
                return;
        }
        revert_next(j);
}

static void internal_on_event(RevertJob *j, const char *event, json_t *data) {
        if (!streq(event, "JOB_STATUS_CHANGE") || !j->job_id ||
            !streq_ptr(json_string_value(json_object_get(data, "id")), j->job_id) ||
            !streq_ptr(json_string_value(json_object_get(data, "status")), "concluded"))
                return;
        j->ev_concluded = true;
        if (j->waiting_job && !j->cont)
                revert_next(j);
}

static void revert_next(RevertJob *j) {
        bool run;

        switch (j->step) {
        case INTERNAL_NODES:
                (void) domain_send_progress(j->domain, JOB_NAME, "validate", 0, 0, 0);
                return revert_job_qmp(j, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), -1, on_nodes);
        case INTERNAL_LOAD:
                if (!j->waiting_job || !j->ev_concluded)
                        return;
                j->waiting_job = false;
                j->step = INTERNAL_QUERY;
                return revert_job_qmp(j, "query-jobs", NULL, -1, on_jobs);
        case INTERNAL_QUERY:
                return;
        case INTERNAL_STATE:
                if (revert_failpoint(j, "revert-state"))
                        return;
                run = revert_job_want_running(j, !streq_ptr(j->snapshot->def->state, "paused"));
                j->step = INTERNAL_DONE;
                (void) domain_send_progress(j->domain, JOB_NAME, "resume", 0, 0, 0);
                return revert_job_qmp(j, run ? "cont" : "stop", NULL, -1, revert_job_on_reply_next);
        case INTERNAL_DONE:
                if (revert_failpoint(j, "revert-done"))
                        return;
                return revert_job_finish(j);
        }
}

void revert_job_on_event(RevertJob *j, const char *event, json_t *data) {
        if (j->ext.active)
                revert_external_on_event(j, event, data);
        else
                internal_on_event(j, event, data);
}

void revert_job_on_disconnect(RevertJob *j) {
        if (j->ext.active)
                return revert_external_on_disconnect(j);
        if (!j->cont)
                revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU went away during the revert");
}

static bool snapshot_is_internal_full(const Snapshot *s) {
        return s->def->memory == SNAPSHOT_LOCATION_INTERNAL;
}

static RevertJob *revert_job_new(Domain *d, Snapshot *s, uint64_t flags) {
        RevertJob *j = calloc(1, sizeof(RevertJob));

        if (!j)
                return NULL;
        j->domain = d;
        j->snapshot = s;
        j->flags = flags;
        j->started_usec = now_usec();
        j->started_qemu_usec = qmp_busy_usec(d->qmp);
        return j;
}

/* The domain's job from here: busy, and its block graph no longer what the cache says. */
static void revert_job_attach(RevertJob *j) {
        disk_cache_clear(&j->domain->disk_cache);
        j->domain->revert_job = j;
        (void) domain_emit_changed(j->domain, "Job");
}

int revert_job_start(Domain *d, Snapshot *s, uint64_t flags, sd_bus_message *m, sd_bus_error *error) {
        RevertJob *j;
        uint32_t tag;
        int r;

        if ((flags & SNAPSHOT_REVERT_RUNNING) && (flags & SNAPSHOT_REVERT_PAUSED))
                return sd_bus_error_set(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                        "Flags 'running' and 'paused' cannot be combined");

        if (!snapshot_is_internal_full(s)) {
                r = revert_external_check(d, s, flags, error);
                if (r < 0)
                        return r;
        } else if (!qmp_is_connected(d->qmp))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID,
                                         "Domain '%s' is %s: loading internal snapshot '%s' needs its QEMU running",
                                         domain_name(d), domain_state_to_string(d->state), snapshot_name(s));

        j = revert_job_new(d, s, flags);
        if (!j)
                return -ENOMEM;
        j->request = sd_bus_message_ref(m);
        if (getrandom(&tag, sizeof(tag), GRND_NONBLOCK) != sizeof(tag))
                tag = (uint32_t) rand();
        snprintf(j->tag, sizeof(j->tag), "%08x", tag);
        if (asprintf(&j->job_id, "sd%s-load", j->tag) < 0) {
                revert_job_free(j);
                return -ENOMEM;
        }

        /* Internal: the load job to wait for. External: the journal's first write comes with
         * each disk's image before the revert (revert_external_start). */
        r = journal_new(&j->journal, d->manager->state_dir, domain_name(d), "snapshot-revert");
        if (r >= 0 && (journal_put(j->journal, "snapshot", json_string(snapshot_name(s))) < 0 ||
                       journal_put(j->journal, "flags", json_integer((json_int_t) flags)) < 0 ||
                       (snapshot_is_internal_full(s) && journal_put(j->journal, "load_job", json_string(j->job_id)) < 0)))
                r = -ENOMEM;
        if (r >= 0 && snapshot_is_internal_full(s))
                r = journal_sync(j->journal);
        if (r < 0) {
                revert_job_free(j);
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot write the job journal: %s",
                                         strerror(-r));
        }

        revert_job_attach(j);

        if (snapshot_is_internal_full(s))
                revert_next(j);
        else
                revert_external_start(j);
        return 1;
}

/* Resumed: QEMU's load job (if it is still there) has ended. */
static void on_settled(void *userdata, json_t *jobs, int err) {
        RevertJob *j = userdata;
        json_t *job = json_array_get(jobs, 0);

        j->settle = job_settle_free(j->settle);
        if (err < 0)
                return revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU's load job did not end: %s", strerror(-err));
        if (job && json_string_value(json_object_get(job, "error")))
                return revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU could not load snapshot '%s': %s",
                                       snapshot_name(j->snapshot),
                                       json_string_value(json_object_get(job, "error")));
        /* No job and not marked loaded: the dead snapshotd never started it. */
        if (!job && !j->resumed_loaded)
                return revert_job_fail(j, SNAPSHOT_ERROR_ABORTED, "The load had not started; nothing changed");
        j->step = INTERNAL_STATE;
        revert_next(j);
}

int revert_job_resume(Domain *d, json_t *journal) {
        const char *name = json_string_value(json_object_get(journal, "snapshot"));
        const char *load_job = json_string_value(json_object_get(journal, "load_job"));
        Snapshot *s = name ? domain_find_snapshot(d, name) : NULL;
        RevertJob *j;
        int r;

        if (json_is_true(json_object_get(journal, "external"))) {
                /* Undone, then run again: QEMU may be stopped already, and the caller asked. */
                revert_external_undo_journal(d, journal);
                if (!s) {
                        (void) journal_delete(d->manager->state_dir, domain_name(d));
                        return 0;
                }
                j = revert_job_new(d, s, (uint64_t) json_integer_value(json_object_get(journal, "flags")));
                if (!j)
                        return log_oom();
                r = journal_new(&j->journal, d->manager->state_dir, domain_name(d), "snapshot-revert");
                if (r >= 0 && (journal_put(j->journal, "snapshot", json_string(snapshot_name(s))) < 0 ||
                               journal_put(j->journal, "flags", json_integer((json_int_t) j->flags)) < 0))
                        r = -ENOMEM;
                if (r < 0) {
                        revert_job_free(j);
                        return log_oom();
                }
                log_info("Domain '%s': recovering an interrupted revert to '%s': running it again.", domain_name(d),
                         name);
                revert_job_attach(j);
                revert_external_start(j);
                return 1;
        }
        if (!s || !load_job) {
                log_warning("Domain '%s': the interrupted revert's snapshot '%s' is gone; dropping its journal.",
                            domain_name(d), strempty(name));
                (void) journal_delete(d->manager->state_dir, domain_name(d));
                return 0;
        }
        j = revert_job_new(d, s, (uint64_t) json_integer_value(json_object_get(journal, "flags")));
        if (!j)
                return log_oom();
        j->resumed_loaded = json_is_true(json_object_get(journal, "loaded"));
        j->job_id = strdup(load_job);
        r = journal_new(&j->journal, d->manager->state_dir, domain_name(d), "snapshot-revert");
        if (!j->job_id || r < 0) {
                revert_job_free(j);
                return log_oom();
        }
        log_info("Domain '%s': recovering an interrupted revert to '%s'.", domain_name(d), name);
        j->step = INTERNAL_QUERY; /* nothing moves until on_settled */
        revert_job_attach(j);
        r = job_settle(d, load_job, false, on_settled, j, &j->settle);
        if (r < 0)
                revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        return 1;
}
