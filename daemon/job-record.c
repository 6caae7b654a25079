/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The create job's record: the definition it writes (also journalled before anything
 * changes), and the write itself.
 *
 * A disk-only record is final once QEMU has been told to switch the disks, so it is written
 * then, under a temporary name and synced, together with the old current snapshot's record
 * without its mark, while QEMU works. (A checkpoint's is written after its image's sync:
 * see job-sync.c.) What is left for job_metadata(), between QEMU's answer and the
 * reply, is two renames and one directory fsync. If anything the records depend on moved
 * meanwhile (the current snapshot), or staging failed, job_metadata() writes them the slow
 * way; a job that fails drops them (job_finish). Every write, fsync and rename runs on a
 * worker thread, never on the event loop (see "the record's file work" below). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "errors.h"
#include "failpoint.h"
#include "job-create-private.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "snapshot-store.h"
#include "snapshot.h"
#include "worker.h"

int job_build_def(CreateJob *j, SnapshotDef **ret) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        Domain *d = j->domain;

        def = calloc(1, sizeof(SnapshotDef));
        if (!def)
                return -ENOMEM;
        def->name = strdup(j->req.name);
        def->description = strdup(j->req.description ?: "");
        def->parent = d->current ? strdup(snapshot_name(d->current)) : NULL;
        def->creation_usec = j->creation_usec;
        /* The domain's state when taken; a disk-only snapshot is its own kind. */
        def->state = strdup(j->plan.memory == SNAPSHOT_LOCATION_NO ? "disk-snapshot" :
                            j->was_running ? "running" : "paused");
        def->memory = j->plan.memory;
        if (j->memory_file) {
                def->memory_file = strdup(j->memory_file);
                if (!def->memory_file)
                        return -ENOMEM;
        }
        def->quiesced = j->quiesced;
        def->disks = calloc(j->n_disks + 1, sizeof(SnapshotDiskDef));
        def->domain.name = strdup(domain_name(d));
        def->domain.memory_kib = j->memory_kib;
        def->domain.vcpus = j->vcpus;
        def->domain.disks = calloc(j->n_disks + 1, sizeof(DomainDiskDef));
        if (!def->name || !def->description || (d->current && !def->parent) || !def->state || !def->disks ||
            !def->domain.name || !def->domain.disks)
                return -ENOMEM;

        for (size_t i = 0; i < j->n_disks; i++) {
                DiskPlan *p = &j->disks[i];
                SnapshotDiskDef *sd = &def->disks[def->n_disks++];
                DomainDiskDef *dd = &def->domain.disks[def->domain.n_disks++];

                sd->target = strdup(p->target);
                sd->location = p->location;
                if (p->location == SNAPSHOT_LOCATION_EXTERNAL) {
                        sd->file = strdup(p->overlay);
                        sd->format = strdup("qcow2");
                        if (!sd->file || !sd->format)
                                return -ENOMEM;
                }
                dd->target = strdup(p->target);
                dd->file = strdup(p->base_file);
                dd->format = strdup(p->base_format);
                dd->node_name = strdup(p->top_node);
                if (!sd->target || !dd->target || !dd->file || !dd->format || !dd->node_name)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(def);
        return 0;
}

/* ---- the record's file work, on a worker ----
 * An fsync on the loop waits for the file system's journal, which waits for whatever else is
 * being written: another domain's memory image held it 40-130 ms, and with it every caller of
 * every domain. So the record is written (and committed) on a worker, owned by it: freeing it
 * removes what was not committed. */

typedef struct RecordIo {
        StagedRecord *rec[2];   /* this snapshot's record; the old current one's without its mark */
        bool commit;            /* rename them in and sync the directory, not only write them */
        bool old_committed;
} RecordIo;

static void record_io_free(void *p) {
        RecordIo *io = p;

        if (!io)
                return;
        staged_record_free(io->rec[0]);
        staged_record_free(io->rec[1]);
        free(io);
}

static int record_io_run(void *p) {
        RecordIo *io = p;
        int r;

        r = failpoint_io("create-record-write");
        if (r < 0)
                return r;

        for (size_t i = 0; i < 2; i++) {
                if (!io->rec[i] || staged_record_written(io->rec[i]))
                        continue;
                r = staged_record_write(io->rec[i]);
                if (r < 0 && (i == 0 || !io->commit))
                        return r;
                if (r < 0)      /* the old mark: domain_set_current() writes it again */
                        io->rec[1] = staged_record_free(io->rec[1]);
        }
        if (!io->commit)
                return 0;
        r = staged_record_commit(io->rec[0]);
        if (r < 0)
                return r;
        io->old_committed = io->rec[1] && staged_record_commit(io->rec[1]) >= 0;
        return staged_record_sync(io->rec[0]);
}

/* Runs io on a worker; done(r, j) comes back on the loop (right away when no thread starts).
 * The caller returns after this. */
static void record_io_start(CreateJob *j, RecordIo *io, worker_done_fn done) {
        j->record_io = io;
        worker_start_or_run(&j->record_worker, j->domain->manager->event, record_io_run, io, record_io_free,
                            done, j);
}

void job_record_detach(CreateJob *j) {
        worker_detach(j->record_worker);
        j->record_worker = NULL;
        j->record_io = NULL;
        j->record_def = snapshot_def_free(j->record_def);
}

bool job_files_busy(CreateJob *j) {
        return j->record_worker || j->journal_worker;
}

/* The new record, and the old current one's without its mark; formatted here, written by
 * the worker. */
static int record_prepare(CreateJob *j, const SnapshotDef *def, RecordIo *io) {
        Domain *d = j->domain;
        const char *state_dir = d->manager->state_dir;
        int r;

        r = snapshot_store_prepare(state_dir, domain_name(d), def, &io->rec[0]);
        if (r >= 0 && d->current) {
                d->current->def->current = false;
                r = snapshot_store_prepare(state_dir, domain_name(d), d->current->def, &io->rec[1]);
                d->current->def->current = true;
        }
        return r;
}

/* Staging did not happen: job_metadata() writes the record the slow way. */
static void staging_failed(CreateJob *j, int r) {
        log_debug_errno(r, "Domain '%s': cannot stage the record of '%s', writing it at the end: %m",
                        domain_name(j->domain), j->req.name);
        j->staged_parent = NULL;
}

static void on_record_staged(int r, void *userdata) {
        CreateJob *j = userdata;
        RecordIo *io = j->record_io;

        j->record_worker = NULL;
        j->record_io = NULL;
        if (r >= 0) {
                j->staged_new = TAKE_PTR(io->rec[0]);
                j->staged_old = TAKE_PTR(io->rec[1]);
        } else
                staging_failed(j, r);
        if (j->finish_waiting)
                return job_finish(j, NULL);
        if (j->metadata_waiting)
                return job_metadata(j);
}

void job_record_stage(CreateJob *j) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        RecordIo *io;
        int r;

        if (j->staged_new || j->record_worker || (j->req.flags & SNAPSHOT_CREATE_NO_METADATA))
                return;

        io = calloc(1, sizeof(RecordIo));
        r = io ? job_build_def(j, &def) : -ENOMEM;
        if (r >= 0) {
                def->current = true;
                r = record_prepare(j, def, io);
        }
        if (r < 0) {
                staging_failed(j, r);
                record_io_free(io);
                return;
        }
        j->staged_parent = j->domain->current;
        record_io_start(j, io, on_record_staged);
}

/* Staged and still what job_metadata() would write: the current snapshot is the same. */
static bool staged_still_right(CreateJob *j) {
        return j->staged_new && j->staged_parent == j->domain->current;
}

/* The record is in place (r >= 0) or not: the snapshot joins the domain, the reply goes. */
static void record_committed(CreateJob *j, int r, bool old_committed) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = TAKE_PTR(j->record_def);
        Domain *d = j->domain;
        Manager *m = d->manager;
        Snapshot *s = NULL;

        j->old_committed = r >= 0 && old_committed;

        if (r >= 0)
                /* Saved with the current mark already: domain_set_current() below only has
                 * to clear the old one (if the worker did not). */
                r = snapshot_new(&s, d, TAKE_PTR(def));
        if (r >= 0) {
                r = domain_add_snapshot(d, s);
                if (r < 0)
                        snapshot_free(s);
        }
        if (r < 0) {
                /* The guest already writes to the overlays, so they stay; say exactly that. */
                (void) snapshot_store_remove(m->state_dir, domain_name(d), j->req.name);
                if (j->old_committed && d->current)
                        /* Its mark went with ours: it stays the current one. */
                        (void) snapshot_store_save(m->state_dir, domain_name(d), d->current->def);
                (void) sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_FAILED,
                                         "The disks were snapshotted but the snapshot record could not be written to '%s': %s",
                                         m->state_dir, strerror(-r));
                log_error("Domain '%s': %s", domain_name(d), j->error.message);
                return job_finish(j, NULL);
        }

        s->parent = d->current;
        (void) sd_bus_emit_object_added(m->bus, s->path);
        if (s->parent)
                (void) sd_bus_emit_properties_changed(m->bus, s->parent->path, SNAPSHOT_IFACE_SNAPSHOT, "Children", NULL);
        if (j->old_committed)
                domain_current_moved(d, s);
        else
                r = domain_set_current(d, s);
        if (r < 0)
                log_warning_errno(r, "Domain '%s': cannot record '%s' as the current snapshot: %m", domain_name(d), snapshot_name(s));
        (void) manager_send_snapshot_created(m, d->path, s->path);

        log_info("Domain '%s': snapshot '%s' created (%zu disk(s)%s).", domain_name(d), snapshot_name(s),
                 j->n_disks, j->quiesced ? ", quiesced" : "");
        job_progress(j, "done", 0, 0);
        job_finish(j, s->path);
}

static void on_record_committed(int r, void *userdata) {
        CreateJob *j = userdata;
        bool old_committed = j->record_io->old_committed;

        j->record_worker = NULL;
        j->record_io = NULL;
        record_committed(j, r, old_committed);
}

void job_metadata(CreateJob *j) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        Domain *d = j->domain;
        RecordIo *io;
        int r;

        /* Still staging (QEMU answered first): on_record_staged() comes back here. */
        if (j->record_worker) {
                j->metadata_waiting = true;
                return;
        }
        j->metadata_waiting = false;
        job_progress(j, "metadata", 0, 0);

        if (j->req.flags & SNAPSHOT_CREATE_NO_METADATA) {
                log_info("Domain '%s': took snapshot '%s' without metadata.", domain_name(d), j->req.name);
                job_progress(j, "done", 0, 0);
                return job_finish(j, "/");
        }

        io = calloc(1, sizeof(RecordIo));
        r = io ? job_build_def(j, &def) : -ENOMEM;
        if (r >= 0) {
                def->current = true;
                io->commit = true;
                if (staged_still_right(j)) {
                        io->rec[0] = TAKE_PTR(j->staged_new);
                        io->rec[1] = TAKE_PTR(j->staged_old);
                } else {
                        /* Nothing staged, or the current snapshot moved since. */
                        j->staged_new = staged_record_free(j->staged_new);
                        j->staged_old = staged_record_free(j->staged_old);
                        r = record_prepare(j, def, io);
                }
        }
        if (r < 0) {
                record_io_free(io);
                return record_committed(j, r, false);
        }
        j->record_def = TAKE_PTR(def);
        record_io_start(j, io, on_record_committed);
}
