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
 * way; a job that fails drops them (create_job_free). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "errors.h"
#include "job-create-private.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "snapshot-store.h"
#include "snapshot.h"

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

void job_record_stage(CreateJob *j) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        Domain *d = j->domain;
        const char *state_dir = d->manager->state_dir;
        int r;

        if (j->staged_new || (j->req.flags & SNAPSHOT_CREATE_NO_METADATA))
                return;

        r = job_build_def(j, &def);
        if (r >= 0) {
                def->current = true;
                r = snapshot_store_stage(state_dir, domain_name(d), def, &j->staged_new);
        }
        if (r >= 0 && d->current) {
                /* The old mark goes in the same directory fsync as the new record. */
                d->current->def->current = false;
                r = snapshot_store_stage(state_dir, domain_name(d), d->current->def, &j->staged_old);
                d->current->def->current = true;
        }
        if (r < 0) {
                log_debug_errno(r, "Domain '%s': cannot stage the record of '%s', writing it at the end: %m",
                                domain_name(d), j->req.name);
                j->staged_new = staged_record_free(j->staged_new);
                j->staged_old = staged_record_free(j->staged_old);
                return;
        }
        j->staged_parent = d->current;
}

/* Staged and still what job_metadata() would write: the current snapshot is the same. */
static bool staged_still_right(CreateJob *j) {
        return j->staged_new && j->staged_parent == j->domain->current;
}

static int commit_staged(CreateJob *j) {
        int r;

        r = staged_record_commit(j->staged_new);
        if (r < 0)
                return r;
        /* A failed rename of the old one: domain_set_current() writes it again. */
        j->old_committed = !j->staged_old || staged_record_commit(j->staged_old) >= 0;
        return staged_record_sync(j->staged_new);
}

void job_metadata(CreateJob *j) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        Domain *d = j->domain;
        Manager *m = d->manager;
        Snapshot *s = NULL;
        int r;

        job_progress(j, "metadata", 0, 0);

        if (j->req.flags & SNAPSHOT_CREATE_NO_METADATA) {
                log_info("Domain '%s': took snapshot '%s' without metadata.", domain_name(d), j->req.name);
                job_progress(j, "done", 0, 0);
                return job_finish(j, "/");
        }

        r = job_build_def(j, &def);
        if (r >= 0) {
                def->current = true;
                r = staged_still_right(j) ? commit_staged(j) :
                                            snapshot_store_save(m->state_dir, domain_name(d), def);
        }
        if (r >= 0)
                /* Saved with the current mark already: domain_set_current() below only has
                 * to clear the old one (if the staged write did not). */
                r = snapshot_new(&s, d, TAKE_PTR(def));
        if (r >= 0) {
                r = domain_add_snapshot(d, s);
                if (r < 0)
                        snapshot_free(s);
        }
        if (r < 0) {
                /* The guest already writes to the overlays, so they stay; say exactly that. */
                (void) snapshot_store_remove(m->state_dir, domain_name(d), j->req.name);
                if (j->old_committed && j->staged_old && d->current)
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

