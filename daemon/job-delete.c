/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Deleting snapshots.
 *
 * Metadata only: forget the record; children move up to its parent, the current mark too.
 *
 * With data, one snapshot at a time (children first with CHILDREN/CHILDREN_ONLY):
 *  - external disk: the snapshot's overlay O (created when it was taken) holds everything
 *    written after it, on top of its base B (the image the guest ran on then). Without the
 *    snapshot, B's content as-is is no longer needed, so O is merged down into B with
 *    block-commit (an active commit when O is what the guest writes to now), O's nodes
 *    are dropped and O is removed. Every child's point in time was B+O, which B now holds.
 *    That is only safe when B is needed by nobody else as-is (rule 10): another snapshot
 *    taken on B (a sibling branch after a revert) refuses the delete up front, naming it.
 *    O and B must be in the running domain's chain: a branch that is not running cannot
 *    be merged by this version, and says so.
 *  - internal snapshot: QEMU's snapshot-delete job removes it from the qcow2 images.
 *  - external memory image: removed.
 * Everything is checked before anything changes; the merges themselves are QEMU jobs.
 *
 * Crash safety: the job keeps a journal (journal.h) — the snapshots it deletes, and before
 * the first merge of one, the merges planned. A delete only ever goes forward: a snapshotd
 * that died mid-delete finishes it when it comes back (delete_job_resume). It first waits
 * out the commits QEMU still runs for it (cancelled: a commit is simply started again), then
 * runs the job again over what is left; a merge that had completed (the overlay out of the
 * chain, its base in its place) is recognised from the journal and only tidied up. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "domain-managed.h"
#include "domain.h"
#include "failpoint.h"
#include "job-delete.h"
#include "job-settle.h"
#include "journal.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "snapshot-bus.h"
#include "snapshot-forget.h"
#include "snapshot-store.h"
#include "snapshot.h"
#include "worker.h"

#define JOB_NAME "snapshot-delete"
#define BLOCK_JOB_TIMEOUT_USEC (30 * 60 * USEC_PER_SEC)

typedef struct Merge {
        char *target;
        char *overlay;          /* O */
        char *base;             /* B */
        char *overlay_node;
        char *overlay_file_node;
        char *base_node;
        char *root_node;        /* the device's top node now */
        bool active;            /* O is the top: active commit */
        bool offline;           /* O is on a branch not running: QEMU has nothing of it */
        bool keep;              /* offline, and a child still stands on O */
        bool merged;            /* resumed: a dead snapshotd's commit had already completed */
} Merge;

typedef enum DeleteStep {
        DELETE_SETTLE,          /* resumed: wait out the commits a dead snapshotd left */
        DELETE_INSPECT,         /* query-block + query-named-block-nodes for the next snapshot */
        DELETE_NODES,
        DELETE_MERGE,           /* per disk: block-commit, wait, complete */
        DELETE_DROP_NODES,
        DELETE_INTERNAL,
        DELETE_FORGET,
} DeleteStep;

struct DeleteJob {
        Domain *domain;
        uint64_t started_usec;
        uint64_t started_qemu_usec;
        char *named;            /* the snapshot the call named */
        sd_bus_message *request;
        uint64_t flags;
        char tag[16];

        Snapshot **queue;       /* still to delete, in order */
        size_t n_queue, cursor;

        DeleteStep step;
        json_t *blocks;         /* query-block of this round */
        Merge *merges;
        size_t n_merges, merge_cursor;
        bool waiting_ready, waiting_done;
        bool ev_ready, ev_done;         /* block job events seen, not acted on yet */
        char *ev_error;
        char *block_job_id;
        int drop_sub;
        sd_event_source *timer;

        uint64_t call;
        void (*cont)(DeleteJob *j, json_t *reply, const QmpError *err);
        sd_bus_error error;

        Journal *journal;
        json_t *resume_merges;  /* resumed: the merges the dead job had planned */
        char *resume_snapshot;  /* ...for this snapshot */
        JobSettle *settle;
        int failpoint_key;      /* the step (and merge) whose failpoint was checked last */
        Worker *store_worker;   /* the forgotten records' files (store-batch.h) */
        /* forget_records(): a slice of snapshots a loop iteration */
        StoreBatch *forget_batch;
        Snapshot **forget_list;
        size_t forget_n, forget_cursor;
        worker_done_fn forget_done;
        sd_event_source *forget_source;
};

static void delete_next(DeleteJob *j);
static bool job_failpoint(DeleteJob *j, const char *name, int key);

static void merge_clear(Merge *m) {
        free(m->target);
        free(m->overlay);
        free(m->base);
        free(m->overlay_node);
        free(m->overlay_file_node);
        free(m->base_node);
        free(m->root_node);
}

static void merges_clear(DeleteJob *j) {
        for (size_t i = 0; i < j->n_merges; i++)
                merge_clear(&j->merges[i]);
        free(j->merges);
        j->merges = NULL;
        j->n_merges = j->merge_cursor = 0;
}

DeleteJob *delete_job_free(DeleteJob *j) {
        if (!j)
                return NULL;
        if (j->call)
                qmp_cancel(j->domain->qmp, j->call);
        merges_clear(j);
        json_decref(j->blocks);
        free(j->queue);
        free(j->block_job_id);
        free(j->ev_error);
        journal_free(j->journal);
        free(j->named);
        json_decref(j->resume_merges);
        free(j->resume_snapshot);
        job_settle_free(j->settle);
        worker_detach(j->store_worker);
        store_batch_free(j->forget_batch);
        sd_event_source_disable_unref(j->forget_source);
        sd_event_source_disable_unref(j->timer);
        sd_bus_message_unref(j->request);
        sd_bus_error_free(&j->error);
        free(j);
        return NULL;
}

/* ---- plumbing ---- */

static void job_finish(DeleteJob *j) {
        Domain *d = j->domain;
        int r;

        /* Done or refused, the job is over: nothing is left for a recovery to go on with. A
         * failed merge leaves the snapshot whole (its record names every file still). */
        if (j->journal) {
                /* Durable on a worker: a journal back after a crash has recovery finish a
                 * delete that is done, which finds nothing left to do. */
                r = journal_unlink(j->journal);
                if (r < 0)
                        log_warning_errno(r, "Domain '%s': cannot remove the delete journal: %m", domain_name(d));
                journal_unlink_sync_later(d->manager->event, j->journal);
        }
        log_job_outcome(domain_name(d), JOB_NAME, j->named, j->error.name, j->error.message,
                        now_usec() - j->started_usec, qmp_busy_usec(d->qmp) - j->started_qemu_usec);
        if (!j->request)
                log_info("Domain '%s': recovery %s the interrupted delete%s%s.", domain_name(d),
                         sd_bus_error_is_set(&j->error) ? "could not finish" : "finished",
                         sd_bus_error_is_set(&j->error) ? ": " : "", strempty(j->error.message));
        if (j->request) {
                if (sd_bus_error_is_set(&j->error))
                        r = sd_bus_reply_method_error(j->request, &j->error);
                else
                        r = sd_bus_reply_method_return(j->request, NULL);
                if (r < 0)
                        log_warning_errno(r, "Domain '%s': failed to reply to Delete: %m", domain_name(d));
        }
        (void) domain_send_progress(d, JOB_NAME, "done", 0, 0, 0);
        d->delete_job = NULL;
        (void) domain_emit_changed(d, "Job");
        delete_job_free(j);
        manager_job_ended(d->manager);
}

static void job_fail(DeleteJob *j, const char *name, const char *fmt, ...) _printf_(3, 4);
static void job_fail(DeleteJob *j, const char *name, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        (void) sd_bus_error_set(&j->error, name, msg ?: "Out of memory");
        log_warning("Domain '%s': delete failed: %s", domain_name(j->domain), j->error.message);
        job_finish(j);
}

static void on_reply(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        DeleteJob *j = userdata;
        void (*fn)(DeleteJob *, json_t *, const QmpError *) = j->cont;

        j->call = 0;
        j->cont = NULL;
        fn(j, reply, err);
}

static void job_qmp(DeleteJob *j, const char *command, json_t *args,
                    void (*fn)(DeleteJob *j, json_t *reply, const QmpError *err)) {
        int r;

        j->cont = fn;
        r = qmp_call(j->domain->qmp, command, args, -1, 0, on_reply, j, &j->call);
        if (r < 0) {
                QmpError e = { .error = r, .desc = "QEMU is not connected" };

                j->cont = NULL;
                fn(j, NULL, &e);
        }
}

static Snapshot *current_target(DeleteJob *j) {
        return j->cursor < j->n_queue ? j->queue[j->cursor] : NULL;
}

/* ---- checks ---- */

/* Is file the point in time (a disk's base) of any snapshot that stays? */
static Snapshot *needed_by_other(DeleteJob *j, const char *target, const char *file) {
        Domain *d = j->domain;

        for (size_t i = 0; i < d->n_snapshots; i++) {
                Snapshot *t = d->snapshots[i];
                bool leaving = false;

                for (size_t q = j->cursor; q < j->n_queue; q++)
                        leaving = leaving || j->queue[q] == t;
                if (leaving)
                        continue;
                /* An internal snapshot keeps its point in time inside the image: writes to
                 * the image's current state (a commit into it) do not change it. */
                if (t->def->memory == SNAPSHOT_LOCATION_INTERNAL)
                        continue;
                for (size_t k = 0; k < t->def->domain.n_disks; k++)
                        if (streq_ptr(t->def->domain.disks[k].target, target) &&
                            streq_ptr(t->def->domain.disks[k].file, file) &&
                            t->parent != current_target(j))
                                return t;
        }
        return NULL;
}

/* A snapshot that stays and is stored inside file (an internal snapshot of the image), or
 * NULL. Merging file away (commit, then remove it) would take it along. */
static Snapshot *stored_inside(DeleteJob *j, const char *file) {
        Domain *d = j->domain;

        for (size_t i = 0; i < d->n_snapshots; i++) {
                Snapshot *t = d->snapshots[i];
                bool leaving = false;

                for (size_t q = j->cursor; q < j->n_queue; q++)
                        leaving = leaving || j->queue[q] == t;
                if (leaving)
                        continue;
                for (size_t k = 0; k < t->def->domain.n_disks; k++) {
                        const DomainDiskDef *dd = &t->def->domain.disks[k];
                        bool internal = t->def->memory == SNAPSHOT_LOCATION_INTERNAL;

                        for (size_t n = 0; n < t->def->n_disks; n++)
                                if (streq_ptr(t->def->disks[n].target, dd->target) &&
                                    t->def->disks[n].location == SNAPSHOT_LOCATION_INTERNAL)
                                        internal = true;
                        if (internal && streq_ptr(dd->file, file))
                                return t;
                }
        }
        return NULL;
}

static const char *file_of(json_t *image) {
        return json_string_value(json_object_get(image, "filename"));
}

/* A snapshot on a branch the domain does not run: nothing of it is open in QEMU, and its
 * base B may be what the running branch stands on, so B is never touched. Its overlay O
 * holds what came after it on that branch: O goes unless a child was taken on top of it —
 * then the child's point in time is B+O, O is the only place that holds it, and O stays
 * (the child's record keeps naming it). */
static int plan_offline(DeleteJob *j, Snapshot *s, const SnapshotDiskDef *disk, const char *base, Merge *m) {
        Domain *d = j->domain;

        m->offline = true;
        m->target = strdup(disk->target);
        m->overlay = strdup(disk->file);
        m->base = strdup(base);
        if (!m->target || !m->overlay || !m->base)
                return -ENOMEM;
        for (size_t i = 0; i < d->n_snapshots; i++) {
                Snapshot *c = d->snapshots[i];

                if (c == s)
                        continue;
                for (size_t t = 0; t < c->def->domain.n_disks; t++)
                        if (streq_ptr(c->def->domain.disks[t].target, disk->target) &&
                            streq_ptr(c->def->domain.disks[t].file, disk->file)) {
                                log_info("Domain '%s': keeping '%s': snapshot '%s' was taken on it.",
                                         domain_name(d), disk->file, snapshot_name(c));
                                m->keep = true;
                        }
        }
        return 0;
}

/* Resumed after a crash: was O's merge into B one the dead job had planned, and did it
 * complete (O out of the chain, B in it)? Then only its nodes, its file and the children's
 * records are left to do. Returns 1 when so, 0 when O is simply not in the chain. */
static int plan_resumed(DeleteJob *j, Snapshot *s, const SnapshotDiskDef *disk, const char *base, json_t *inserted,
                        json_t *nodes, Merge *m) {
        json_t *e, *img, *node;
        bool planned = false;
        size_t i;

        if (!j->resume_merges || !streq_ptr(j->resume_snapshot, snapshot_name(s)))
                return 0;
        json_array_foreach(j->resume_merges, i, e)
                if (streq_ptr(json_string_value(json_object_get(e, "target")), disk->target) &&
                    streq_ptr(json_string_value(json_object_get(e, "overlay")), disk->file) &&
                    streq_ptr(json_string_value(json_object_get(e, "base")), base))
                        planned = true;
        if (!planned)
                return 0;
        for (img = json_object_get(inserted, "image"); img; img = json_object_get(img, "backing-image"))
                if (streq_ptr(file_of(img), base))
                        break;
        if (!img)
                return 0;

        m->merged = true;
        m->target = strdup(disk->target);
        m->overlay = strdup(disk->file);
        m->base = strdup(base);
        m->active = streq_ptr(file_of(json_object_get(inserted, "image")), base);
        if (!m->target || !m->overlay || !m->base)
                return -ENOMEM;
        /* Our blockdev-add'ed nodes of O outlive the commit until blockdev-del. */
        json_array_foreach(nodes, i, node) {
                const char *f = json_string_value(json_object_get(node, "file"));
                const char *name = json_string_value(json_object_get(node, "node-name"));
                bool is_file = streq_ptr(json_string_value(json_object_get(node, "drv")), "file");

                if (!streq_ptr(f, disk->file) || !name)
                        continue;
                if (!is_file && !m->overlay_node)
                        m->overlay_node = strdup(name);
                else if (is_file && !m->overlay_file_node)
                        m->overlay_file_node = strdup(name);
        }
        log_info("Domain '%s': recovery finds '%s' already merged into '%s'.", domain_name(j->domain), disk->file, base);
        return 1;
}

/* Before the first commit: what a resumed job needs to recognise a merge that completed. */
static int journal_merges(DeleteJob *j, Snapshot *s) {
        json_t *a = json_array();

        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < j->n_merges; i++) {
                Merge *m = &j->merges[i];

                if (m->offline)
                        continue;
                if (json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "target", m->target, "overlay", m->overlay,
                                                       "base", m->base)) < 0) {
                        json_decref(a);
                        return -ENOMEM;
                }
        }
        if (journal_put(j->journal, "merging", json_string(snapshot_name(s))) < 0) {
                json_decref(a);
                return -ENOMEM;
        }
        return journal_set(j->journal, "merges", a);
}

/* Plans the merges of one external snapshot against the running chain. */
static int plan_merges(DeleteJob *j, Snapshot *s, json_t *nodes) {
        size_t n = 0;
        int r;

        j->merges = calloc(s->def->n_disks + 1, sizeof(Merge));
        if (!j->merges)
                return -ENOMEM;

        for (size_t i = 0; i < s->def->n_disks; i++) {
                const SnapshotDiskDef *disk = &s->def->disks[i];
                const char *base = NULL;
                json_t *dev, *inserted = NULL, *img;
                size_t di, ni;
                json_t *node;
                Merge *m;
                Snapshot *other;

                if (disk->location != SNAPSHOT_LOCATION_EXTERNAL)
                        continue;
                other = stored_inside(j, disk->file);
                if (other)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                 "Snapshot '%s' is stored inside '%s', which deleting '%s' would merge away; "
                                                 "delete '%s' first",
                                                 snapshot_name(other), disk->file, snapshot_name(s), snapshot_name(other));
                for (size_t k = 0; k < s->def->domain.n_disks; k++)
                        if (streq_ptr(s->def->domain.disks[k].target, disk->target))
                                base = s->def->domain.disks[k].file;
                if (!base)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                 "Snapshot '%s' does not record the base image of disk '%s'",
                                                 snapshot_name(s), disk->target);

                json_array_foreach(j->blocks, di, dev) {
                        const char *qdev = json_string_value(json_object_get(dev, "qdev"));
                        const char *p = "/machine/peripheral/";

                        if (!qdev)
                                continue;
                        if (strncmp(qdev, p, strlen(p)) == 0)
                                qdev += strlen(p);
                        if (strncmp(qdev, disk->target, strlen(disk->target)) == 0 &&
                            IN_SET2(qdev[strlen(disk->target)], '\0', '/'))
                                inserted = json_object_get(dev, "inserted");
                }
                if (!inserted)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                 "Disk '%s' of snapshot '%s' is not attached to the running domain",
                                                 disk->target, snapshot_name(s));

                /* Find O in the chain, and check B lies right below it. */
                img = json_object_get(inserted, "image");
                while (img && !streq_ptr(file_of(img), disk->file))
                        img = json_object_get(img, "backing-image");
                if (!img) {
                        r = plan_resumed(j, s, disk, base, inserted, nodes, &j->merges[n]);
                        if (r < 0)
                                return r;
                        if (r > 0) {
                                n++;
                                continue;
                        }
                        /* Another branch than the one the domain runs: QEMU does not have O
                         * open, and B stays as it is (the running branch may need it). */
                        r = plan_offline(j, s, disk, base, &j->merges[n]);
                        if (r < 0)
                                return r;
                        n++;
                        continue;
                }
                if (!streq_ptr(file_of(json_object_get(img, "backing-image")), base))
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                 "Disk '%s' of snapshot '%s': '%s' is not right above '%s' any more",
                                                 disk->target, snapshot_name(s), disk->file, base);

                other = needed_by_other(j, disk->target, base);
                if (other)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                 "Snapshot '%s' still needs '%s' as it is; deleting '%s' would rewrite it",
                                                 snapshot_name(other), base, snapshot_name(s));

                m = &j->merges[n++];
                m->target = strdup(disk->target);
                m->overlay = strdup(disk->file);
                m->base = strdup(base);
                m->root_node = strdup(json_string_value(json_object_get(inserted, "node-name")) ?: "");
                m->active = streq_ptr(file_of(json_object_get(inserted, "image")), disk->file);
                if (!m->target || !m->overlay || !m->base || !m->root_node)
                        return -ENOMEM;

                json_array_foreach(nodes, ni, node) {
                        const char *f = json_string_value(json_object_get(node, "file"));
                        const char *drv = json_string_value(json_object_get(node, "drv"));
                        const char *name = json_string_value(json_object_get(node, "node-name"));

                        if (!f || !name)
                                continue;
                        if (streq(f, disk->file) && !streq_ptr(drv, "file") && !m->overlay_node)
                                m->overlay_node = strdup(name);
                        else if (streq(f, disk->file) && streq_ptr(drv, "file") && !m->overlay_file_node)
                                m->overlay_file_node = strdup(name);
                        else if (streq(f, base) && !streq_ptr(drv, "file") && !m->base_node)
                                m->base_node = strdup(name);
                }
                if (!m->overlay_node || !m->base_node)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_FAILED,
                                                 "Cannot find QEMU's nodes for '%s' and '%s'", disk->file, base);
        }
        j->n_merges = n;
        return 0;
}

/* ---- the steps ---- */

static void on_nodes(DeleteJob *j, json_t *reply, const QmpError *err) {
        Snapshot *s = current_target(j);
        int r;

        if (err)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot read QEMU's block nodes: %s", err->desc);

        merges_clear(j);
        r = plan_merges(j, s, reply);
        if (r < 0) {
                if (!sd_bus_error_is_set(&j->error))
                        (void) sd_bus_error_set_errno(&j->error, r);
                log_info("Domain '%s': refused to delete '%s': %s", domain_name(j->domain), snapshot_name(s),
                         j->error.message);
                return job_finish(j);
        }
        r = journal_merges(j, s);
        if (r < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot write the job journal: %s", strerror(-r));
        j->step = DELETE_MERGE;
        delete_next(j);
}

static void on_blocks(DeleteJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot read the domain's disks: %s", err->desc);
        json_decref(j->blocks);
        j->blocks = json_incref(reply);
        job_qmp(j, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), on_nodes);
}

static int on_block_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        DeleteJob *j = userdata;

        if (!j->waiting_ready && !j->waiting_done)
                return 0;
        j->waiting_ready = j->waiting_done = false;
        /* A commit left running is QEMU's to finish; nothing is forgotten meanwhile. */
        job_fail(j, SNAPSHOT_ERROR_FAILED, "Merging '%s' did not finish in time",
                 j->merges[j->merge_cursor].overlay);
        return 0;
}

static void merge_done(DeleteJob *j);

static void on_commit_started(DeleteJob *j, json_t *reply, const QmpError *err) {
        Merge *m = &j->merges[j->merge_cursor];

        if (err)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU refused to merge '%s' into '%s' (block-commit): %s",
                                m->overlay, m->base, err->desc ?: strerror(-err->error));
        if (m->active)
                j->waiting_ready = true;
        else
                j->waiting_done = true;
        if (job_failpoint(j, "delete-commit", -1 - (int) j->merge_cursor))
                return;
        merge_done(j);
}

static void on_complete(DeleteJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU could not pivot to the merged image: %s",
                                err->desc ?: strerror(-err->error));
        j->waiting_done = true;
        merge_done(j);
}

/* QEMU's block job events may come before the reply to the command that caused them; they
 * are recorded and acted on here once no call is in flight. */
static void merge_done(DeleteJob *j) {
        Merge *m = &j->merges[j->merge_cursor];

        if (j->cont)
                return;
        if (j->ev_ready && j->waiting_ready) {
                if (job_failpoint(j, "delete-complete", -1000 - (int) j->merge_cursor))
                        return;
                j->ev_ready = false;
                j->waiting_ready = false;
                return job_qmp(j, "block-job-complete", json_pack("{s:s}", "device", j->block_job_id), on_complete);
        }
        if (!j->ev_done || !(j->waiting_done || j->waiting_ready))
                return;

        j->ev_done = false;
        j->waiting_done = j->waiting_ready = false;
        (void) sd_event_source_set_enabled(j->timer, SD_EVENT_OFF);
        if (j->ev_error)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Merging '%s' into '%s' failed: %s",
                                m->overlay, m->base, j->ev_error);
        log_info("Domain '%s': merged '%s' into '%s'.", domain_name(j->domain), m->overlay, m->base);
        if (m->active)
                (void) domain_set_active_disk(j->domain, m->target, m->base, "qcow2");
        j->merge_cursor++;
        (void) domain_send_progress(j->domain, JOB_NAME, "disks", j->merge_cursor,
                                    j->n_merges - j->merge_cursor, j->n_merges);
        delete_next(j);
}

void delete_job_on_event(DeleteJob *j, const char *event, json_t *data) {
        const char *dev = json_string_value(json_object_get(data, "device"));

        if (!j->block_job_id || !streq_ptr(dev, j->block_job_id) || j->merge_cursor >= j->n_merges)
                return;

        if (streq(event, "BLOCK_JOB_READY"))
                j->ev_ready = true;
        else if (streq(event, "BLOCK_JOB_COMPLETED") || streq(event, "BLOCK_JOB_CANCELLED")) {
                const char *e = json_string_value(json_object_get(data, "error"));

                j->ev_done = true;
                free(j->ev_error);
                j->ev_error = e ? strdup(e) : streq(event, "BLOCK_JOB_CANCELLED") ? strdup("cancelled") : NULL;
        } else
                return;
        merge_done(j);
}

static void on_drop(DeleteJob *j, json_t *reply, const QmpError *err) {
        /* A node QEMU already dropped with the commit is fine. */
        delete_next(j);
}

static void on_internal_jobs(DeleteJob *j, json_t *reply, const QmpError *err) {
        Snapshot *s = current_target(j);
        const char *e = NULL;
        size_t i;
        json_t *job;

        json_array_foreach(reply, i, job)
                if (streq_ptr(json_string_value(json_object_get(job, "id")), j->block_job_id))
                        e = json_string_value(json_object_get(job, "error"));
        if (e) {
                _cleanup_free_ char *msg = strdup(e);

                (void) qmp_call(j->domain->qmp, "job-dismiss", json_pack("{s:s}", "id", j->block_job_id), -1, 0,
                                NULL, NULL, NULL);
                /* The record stays: the snapshot is still in the images. */
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU could not delete internal snapshot '%s': %s",
                                snapshot_name(s), msg ?: "error");
        }
        (void) qmp_call(j->domain->qmp, "job-dismiss", json_pack("{s:s}", "id", j->block_job_id), -1, 0, NULL, NULL,
                        NULL);
        j->step = DELETE_FORGET;
        delete_next(j);
}

static void internal_done(DeleteJob *j) {
        if (j->cont || !j->waiting_done || !j->ev_done)
                return;
        j->waiting_done = j->ev_done = false;
        (void) sd_event_source_set_enabled(j->timer, SD_EVENT_OFF);
        /* Concluded is not succeeded: ask QEMU how it went before forgetting anything. */
        job_qmp(j, "query-jobs", NULL, on_internal_jobs);
}

static void on_internal_done(DeleteJob *j, json_t *reply, const QmpError *err) {
        Snapshot *s = current_target(j);

        if (err)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU could not delete internal snapshot '%s': %s",
                                snapshot_name(s), err->desc ?: strerror(-err->error));
        j->waiting_done = true;
        internal_done(j);
}

void delete_job_on_job_event(DeleteJob *j, const char *event, json_t *data) {
        if (j->step != DELETE_INTERNAL || !streq(event, "JOB_STATUS_CHANGE"))
                return;
        if (!streq_ptr(json_string_value(json_object_get(data, "id")), j->block_job_id) ||
            !streq_ptr(json_string_value(json_object_get(data, "status")), "concluded"))
                return;
        j->ev_done = true;
        internal_done(j);
}

static int arm_timer(DeleteJob *j) {
        if (j->timer) {
                (void) sd_event_source_set_time_relative(j->timer, BLOCK_JOB_TIMEOUT_USEC);
                return sd_event_source_set_enabled(j->timer, SD_EVENT_ONESHOT);
        }
        return sd_event_add_time_relative(j->domain->manager->event, &j->timer, CLOCK_MONOTONIC,
                                          BLOCK_JOB_TIMEOUT_USEC, 0, on_block_timeout, j);
}

static bool snapshot_has_internal(const Snapshot *s) {
        if (s->def->memory == SNAPSHOT_LOCATION_INTERNAL)
                return true;
        for (size_t i = 0; i < s->def->n_disks; i++)
                if (s->def->disks[i].location == SNAPSHOT_LOCATION_INTERNAL)
                        return true;
        return false;
}

/* Children's point in time was B+O; after the merge B holds it: say so in their records. */
static int rebase_children(DeleteJob *j, Snapshot *s) {
        Domain *d = j->domain;
        int r;

        for (size_t i = 0; i < d->n_snapshots; i++) {
                Snapshot *c = d->snapshots[i];
                bool changed = false;

                if (c->parent != s)
                        continue;
                for (size_t k = 0; k < c->def->domain.n_disks; k++)
                        for (size_t mi = 0; mi < j->n_merges; mi++) {
                                DomainDiskDef *dd = &c->def->domain.disks[k];

                                if (j->merges[mi].offline || !streq_ptr(dd->target, j->merges[mi].target) ||
                                    !streq_ptr(dd->file, j->merges[mi].overlay))
                                        continue;
                                r = snapshot_def_set_string(c->def, &dd->file, j->merges[mi].base);
                                if (r < 0)
                                        return r;
                                changed = true;
                        }
                if (changed) {
                        r = snapshot_store_save(d->manager->state_dir, domain_name(d), c->def);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Failpoints (failpoint.h), one per step and per merge, each checked once: true when the
 * step is not to go on (the job failed or hangs). */
static const char *const step_failpoints[] = {
        [DELETE_INSPECT] = "delete-inspect",
        [DELETE_MERGE] = "delete-merge",
        [DELETE_DROP_NODES] = "delete-drop",
        [DELETE_INTERNAL] = "delete-internal",
        [DELETE_FORGET] = "delete-forget",
};

static bool job_failpoint(DeleteJob *j, const char *name, int key) {
        FailpointAction a;

        if (!name || j->failpoint_key == key)
                return false;
        j->failpoint_key = key;
        a = failpoint(name);
        if (a == FAILPOINT_ERROR)
                job_fail(j, SNAPSHOT_ERROR_FAILED, "Failpoint '%s'", name);
        return a != FAILPOINT_NONE;
}

static bool step_failpoint(DeleteJob *j) {
        int key = 1 + (int) j->step + 16 * (int) (j->merge_cursor + 64 * j->cursor);

        if ((size_t) j->step >= ELEMENTSOF(step_failpoints) || (j->step == DELETE_MERGE && j->merge_cursor >= j->n_merges))
                return false;
        return job_failpoint(j, step_failpoints[j->step], key);
}

/* Snapshots forgotten a loop iteration: each costs ~40 us and its signals, which the
 * dbus-daemon routes before anyone else's call; 300 at once held other domains' callers
 * ~19 ms. The domain is busy meanwhile, so nothing else changes its snapshots. */
#define FORGET_SLICE 32

static void forget_end(DeleteJob *j, int r) {
        StoreBatch *b = TAKE_PTR(j->forget_batch);
        Domain *d = j->domain;
        int q;

        /* A failed one returned before freeing anything: it and the rest stay. */
        for (size_t k = j->forget_cursor; k < j->forget_n; k++)
                j->forget_list[k]->doomed = false;
        /* The records that stay are formatted now, while their snapshots surely exist. */
        q = store_batch_seal(b);
        if (r >= 0)
                r = q;
        if (r < 0)
                /* What was forgotten so far is gone from memory: write that much anyway. */
                sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_FAILED, "Cannot delete snapshot records: %s", strerror(-r));
        worker_start_or_run(&j->store_worker, d->manager->event, store_batch_run_worker, b, store_batch_free_worker,
                            j->forget_done, j);
}

static void forget_slice(DeleteJob *j);

static int on_forget_slice(sd_event_source *s, void *userdata) {
        forget_slice(userdata);
        return 0;
}

/* The next slice after whatever else the loop has to do (a lower priority than the bus). */
static int forget_later(DeleteJob *j) {
        int r;

        if (j->forget_source)
                return sd_event_source_set_enabled(j->forget_source, SD_EVENT_ONESHOT);
        r = sd_event_add_defer(j->domain->manager->event, &j->forget_source, on_forget_slice, j);
        if (r < 0)
                return r;
        (void) sd_event_source_set_priority(j->forget_source, SD_EVENT_PRIORITY_IDLE);
        return sd_event_source_set_enabled(j->forget_source, SD_EVENT_ONESHOT);
}

static void forget_slice(DeleteJob *j) {
        size_t end = j->forget_cursor + FORGET_SLICE;
        int r;

        for (; j->forget_cursor < j->forget_n; j->forget_cursor++) {
                if (j->forget_cursor == end && forget_later(j) >= 0)
                        return;
                r = snapshot_forget(j->forget_list[j->forget_cursor], j->forget_batch);
                if (r < 0)
                        return forget_end(j, r);
        }
        forget_end(j, 0);
}

/* Forgets the snapshots in memory (and on the bus), a slice at a time; their files change
 * on a worker, and done() follows. */
static void forget_records(DeleteJob *j, Snapshot **l, size_t n, worker_done_fn done) {
        Domain *d = j->domain;

        j->forget_batch = store_batch_new(d->manager->state_dir, domain_name(d));
        if (!j->forget_batch)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        j->forget_list = l;
        j->forget_n = n;
        j->forget_cursor = 0;
        j->forget_done = done;
        for (size_t k = 0; k < n; k++)
                l[k]->doomed = true;
        forget_slice(j);
}

static void records_written(DeleteJob *j, int r) {
        j->store_worker = NULL;
        if (r < 0 && !sd_bus_error_is_set(&j->error)) {
                sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_FAILED, "Cannot delete snapshot records: %s", strerror(-r));
                log_error("Domain '%s': the snapshot records could not all be written or removed (%s); the "
                          "records on disk may bring deleted snapshots back at the next start.",
                          domain_name(j->domain), strerror(-r));
        }
}

static void on_forgotten(int r, void *userdata) {
        DeleteJob *j = userdata;

        records_written(j, r);
        if (sd_bus_error_is_set(&j->error))
                return job_finish(j);
        merges_clear(j);
        j->cursor++;
        j->step = DELETE_INSPECT;
        delete_next(j);
}

/* A metadata-only delete: every record at once. */
static void on_records_forgotten(int r, void *userdata) {
        DeleteJob *j = userdata;

        records_written(j, r);
        job_finish(j);
}

static void delete_next(DeleteJob *j) {
        Snapshot *s = current_target(j);
        int r;

        if (s && step_failpoint(j))
                return;

        log_debug("Domain '%s': delete step %d, snapshot '%s', merge %zu/%zu.", domain_name(j->domain), (int) j->step,
                  s ? snapshot_name(s) : "-", j->merge_cursor, j->n_merges);

        if (!s)
                return job_finish(j);

        switch (j->step) {
        case DELETE_SETTLE:
                return; /* job_settle's callback moves on */

        case DELETE_INSPECT:
                (void) domain_send_progress(j->domain, JOB_NAME, "validate", j->cursor, j->n_queue - j->cursor, j->n_queue);
                if (snapshot_has_internal(s)) {
                        j->step = DELETE_INTERNAL;
                        return delete_next(j);
                }
                if (!snapshot_is_external(s) || s->def->n_disks == 0) {
                        j->step = DELETE_FORGET;
                        return delete_next(j);
                }
                j->step = DELETE_NODES;
                return job_qmp(j, "query-block", NULL, on_blocks);

        case DELETE_NODES:
                return; /* replies move on */

        case DELETE_MERGE: {
                Merge *m;
                json_t *args;

                if (j->merge_cursor >= j->n_merges) {
                        j->step = DELETE_DROP_NODES;
                        j->merge_cursor = 0;
                        return delete_next(j);
                }
                m = &j->merges[j->merge_cursor];
                if (m->merged && m->active)
                        (void) domain_set_active_disk(j->domain, m->target, m->base, "qcow2");
                if (m->offline || m->merged) {
                        j->merge_cursor++;
                        return delete_next(j);
                }
                free(j->block_job_id);
                if (asprintf(&j->block_job_id, "sd%s-commit-%zu-%zu", j->tag, j->cursor, j->merge_cursor) < 0) {
                        j->block_job_id = NULL;
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
                }
                j->ev_ready = j->ev_done = false;
                (void) domain_send_progress(j->domain, JOB_NAME, "disks", j->merge_cursor,
                                            j->n_merges - j->merge_cursor, j->n_merges);
                if (arm_timer(j) < 0)
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot set up a timer");
                args = json_pack("{s:s, s:s, s:s, s:s}", "job-id", j->block_job_id, "device", m->root_node,
                                 "top-node", m->overlay_node, "base-node", m->base_node);
                return job_qmp(j, "block-commit", args, on_commit_started);
        }

        case DELETE_DROP_NODES:
                /* Our overlays were added with blockdev-add: the monitor still holds their
                 * nodes after the commit dropped them from the chain. */
                while (j->merge_cursor < j->n_merges) {
                        Merge *m = &j->merges[j->merge_cursor];

                        if (m->offline) {
                                if (!m->keep && unlink(m->overlay) < 0 && errno != ENOENT)
                                        log_warning("Domain '%s': cannot remove overlay '%s': %m",
                                                    domain_name(j->domain), m->overlay);
                                j->merge_cursor++;
                                continue;
                        }
                        if (j->drop_sub == 0 && m->overlay_node) {
                                j->drop_sub = 1;
                                return job_qmp(j, "blockdev-del", json_pack("{s:s}", "node-name", m->overlay_node), on_drop);
                        }
                        if (j->drop_sub <= 1 && m->overlay_file_node) {
                                j->drop_sub = 2;
                                return job_qmp(j, "blockdev-del", json_pack("{s:s}", "node-name", m->overlay_file_node),
                                               on_drop);
                        }
                        if (unlink(m->overlay) < 0 && errno != ENOENT)
                                log_warning("Domain '%s': cannot remove merged overlay '%s': %m",
                                            domain_name(j->domain), m->overlay);
                        j->drop_sub = 0;
                        j->merge_cursor++;
                }
                r = rebase_children(j, s);
                if (r < 0)
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot update the children of '%s': %s",
                                        snapshot_name(s), strerror(-r));
                j->step = DELETE_FORGET;
                return delete_next(j);

        case DELETE_INTERNAL: {
                json_t *devices = json_array(), *args;

                if (!devices)
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
                for (size_t i = 0; i < s->def->domain.n_disks; i++)
                        if (s->def->domain.disks[i].node_name)
                                json_array_append_new(devices, json_string(s->def->domain.disks[i].node_name));
                free(j->block_job_id);
                j->ev_done = false;
                if (asprintf(&j->block_job_id, "sd%s-sdel-%zu", j->tag, j->cursor) < 0) {
                        j->block_job_id = NULL;
                        json_decref(devices);
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
                }
                if (arm_timer(j) < 0) {
                        json_decref(devices);
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot set up a timer");
                }
                args = json_pack("{s:s, s:s, s:o}", "job-id", j->block_job_id, "tag", snapshot_name(s),
                                 "devices", devices);
                return job_qmp(j, "snapshot-delete", args, on_internal_done);
        }

        case DELETE_FORGET:
                if (s->def->memory == SNAPSHOT_LOCATION_EXTERNAL && s->def->memory_file &&
                    unlink(s->def->memory_file) < 0 && errno != ENOENT)
                        log_warning("Domain '%s': cannot remove memory image '%s': %m", domain_name(j->domain),
                                    s->def->memory_file);
                return forget_records(j, &j->queue[j->cursor], 1, on_forgotten);
        }
}

static DeleteJob *delete_job_new(Domain *d) {
        DeleteJob *j = calloc(1, sizeof(DeleteJob));
        uint32_t tag;

        if (!j)
                return NULL;
        j->domain = d;
        j->started_usec = now_usec();
        j->started_qemu_usec = qmp_busy_usec(d->qmp);
        j->step = DELETE_INSPECT;
        if (getrandom(&tag, sizeof(tag), GRND_NONBLOCK) != sizeof(tag))
                tag = (uint32_t) rand();
        snprintf(j->tag, sizeof(j->tag), "%08x", tag);
        return j;
}

static void delete_job_run(DeleteJob *j) {
        Domain *d = j->domain;
        bool records_only = j->flags & SNAPSHOT_DELETE_METADATA_ONLY;

        if (!records_only)
                disk_cache_clear(&d->disk_cache); /* this job reshapes the block graph */
        d->delete_job = j;
        (void) domain_emit_changed(d, "Job");
        if (records_only)
                return forget_records(j, j->queue, j->n_queue, on_records_forgotten);
        delete_next(j);
}

/* Before anything changes: what is to be deleted, by name, in order. */
static int journal_begin(DeleteJob *j, const char *named) {
        json_t *queue = json_array();
        int r;

        if (!queue)
                return -ENOMEM;
        for (size_t i = 0; i < j->n_queue; i++)
                if (json_array_append_new(queue, json_string(snapshot_name(j->queue[i]))) < 0) {
                        json_decref(queue);
                        return -ENOMEM;
                }
        r = journal_new(&j->journal, j->domain->manager->state_dir, domain_name(j->domain), "snapshot-delete");
        if (r < 0) {
                json_decref(queue);
                return r;
        }
        if (journal_put(j->journal, "snapshot", json_string(named)) < 0 || journal_put(j->journal, "queue", queue) < 0)
                return -ENOMEM;
        return journal_sync(j->journal);
}

int delete_job_start(Domain *d, Snapshot *s, uint64_t flags, sd_bus_message *m, sd_bus_error *error) {
        bool records_only = flags & SNAPSHOT_DELETE_METADATA_ONLY;
        DeleteJob *j;
        int r;

        if (!records_only && !qmp_is_connected(d->qmp))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID,
                                         "Domain '%s' is %s: deleting snapshot images needs its QEMU running "
                                         "(flag 'metadata-only' forgets the snapshot and keeps its files)",
                                         domain_name(d), domain_state_to_string(d->state));

        j = delete_job_new(d);
        if (!j)
                return -ENOMEM;
        j->flags = flags;
        j->named = strdup(snapshot_name(s));
        r = j->named ? snapshot_delete_order(d, s, flags, &j->queue, &j->n_queue) : -ENOMEM;
        if (r < 0) {
                delete_job_free(j);
                return r;
        }
        /* Metadata only needs no journal (the batch of files is the whole change) and no
         * QEMU. */
        r = records_only ? 0 : journal_begin(j, snapshot_name(s));
        if (r < 0) {
                delete_job_free(j);
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot write the job journal: %s", strerror(-r));
        }
        j->request = sd_bus_message_ref(m);
        delete_job_run(j);
        return 1;
}

static void on_settled(void *userdata, json_t *jobs, int err) {
        DeleteJob *j = userdata;

        j->settle = job_settle_free(j->settle);
        if (err < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "The commits of the interrupted delete did not end: %s",
                                strerror(-err));
        j->step = DELETE_INSPECT;
        delete_next(j);
}

int delete_job_resume(Domain *d, json_t *journal) {
        json_t *queue = json_object_get(journal, "queue"), *name;
        DeleteJob *j;
        size_t i;
        int r;

        j = delete_job_new(d);
        if (!j)
                return log_oom();
        j->queue = calloc(json_array_size(queue) + 1, sizeof(Snapshot *));
        r = journal_new(&j->journal, d->manager->state_dir, domain_name(d), "snapshot-delete");
        if (!j->queue || r < 0) {
                delete_job_free(j);
                return log_oom();
        }
        /* What the dead job already forgot is done with. */
        json_array_foreach(queue, i, name) {
                Snapshot *s = domain_find_snapshot(d, json_string_value(name) ?: "");

                if (s)
                        j->queue[j->n_queue++] = s;
        }
        j->named = strdup(json_string_value(json_object_get(journal, "snapshot")) ?: "");
        j->resume_merges = json_incref(json_object_get(journal, "merges"));
        if (json_string_value(json_object_get(journal, "merging")))
                j->resume_snapshot = strdup(json_string_value(json_object_get(journal, "merging")));
        /* Keep the journal's content: dying again, the next recovery knows as much. */
        (void) journal_put(j->journal, "snapshot", json_incref(json_object_get(journal, "snapshot")));
        (void) journal_put(j->journal, "queue", json_incref(queue));
        if (j->resume_merges) {
                (void) journal_put(j->journal, "merges", json_incref(j->resume_merges));
                (void) journal_put(j->journal, "merging", json_incref(json_object_get(journal, "merging")));
        }

        log_info("Domain '%s': recovering an interrupted delete of '%s': %zu snapshot(s) left to delete.",
                 domain_name(d), strempty(json_string_value(json_object_get(journal, "snapshot"))), j->n_queue);
        /* The domain is busy from here; nothing moves before QEMU's jobs have ended. */
        j->step = DELETE_SETTLE;
        disk_cache_clear(&d->disk_cache);
        d->delete_job = j;
        (void) domain_emit_changed(d, "Job");
        r = job_settle(d, "sd", true, on_settled, j, &j->settle);
        if (r < 0)
                job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        return 1;
}
