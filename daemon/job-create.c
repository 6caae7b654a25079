/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The snapshot-create job.
 *
 * Forward path, one asynchronous step at a time:
 *   inspect (query-block, memory, cpus) → rules → agent check → [validate-only ends here]
 *   → prepare overlays (create and format the file ourselves, qcow2-overlay.c; blockdev-add
 *     file, blockdev-add qcow2) → freeze → pause → transaction → thaw → resume/halt → sync
 *     (the new files reach the disk) → metadata → reply.
 * Overlays are prepared before the freeze and the pause so that the guest is frozen or paused
 * only for the transaction itself. A live memory save writes them there too but has QEMU open
 * them (blockdev-add) only once migrate runs, while RAM is copied: they are needed at
 * pre-switchover, and the call is shorter by QEMU's time to open them (job-memory.c).
 *
 * Any failure before the transaction committed switches to the undo path, which runs every
 * undo step whether or not the previous one worked: thaw, resume, blockdev-del the nodes we
 * added, unlink the files we created, reply with the first error. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "create-options.h"
#include "domain-managed.h"
#include "domain.h"
#include "errors.h"
#include "failpoint.h"
#include "job-create-private.h"
#include "journal.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "path-util.h"
#include "qcow2-overlay.h"
#include "snapshot-rules.h"
#include "snapshot-store.h"
#include "snapshot.h"


static void batch_clear(CreateJob *j);

static void disk_plan_clear(DiskPlan *p) {
        free(p->target);
        free(p->top_node);
        free(p->base_file);
        free(p->base_format);
        free(p->qom_path);
        free(p->overlay);
        free(p->file_node);
        free(p->fmt_node);
}

CreateJob *create_job_free(CreateJob *j) {
        if (!j)
                return NULL;
        if (j->qmp_call)
                qmp_cancel(j->domain->qmp, j->qmp_call);
        batch_clear(j);
        free(j->batch_error);
        if (j->agent_call && j->domain->agent)
                agent_cancel(j->domain->agent, j->agent_call);
        sd_event_source_disable_unref(j->retry_timer);
        job_record_detach(j);
        worker_detach(j->journal_worker);
        journal_free(j->journal);
        staged_record_free(j->staged_new);
        staged_record_free(j->staged_old);
        job_memory_clear(j);
        sd_bus_message_unref(j->request);
        create_request_clear(&j->req);
        for (size_t i = 0; i < j->n_disks; i++)
                disk_plan_clear(&j->disks[i]);
        free(j->disks);
        sd_bus_error_free(&j->error);
        free(j);
        return NULL;
}

void job_progress(CreateJob *j, const char *phase, uint64_t processed, uint64_t total) {
        (void) domain_send_progress(j->domain, JOB_NAME, phase, processed, total - processed, total);
}

/* Ends the job: replies (error or object path), detaches it from the domain and frees it. */
void job_finish(CreateJob *j, const char *path) {
        Domain *d = j->domain;
        int r;

        /* A failed job whose record is still being staged: its files go before the reply
         * (below), so wait for the worker (on_record_staged() comes back here). */
        if (j->record_worker) {
                j->finish_waiting = true;
                return;
        }

        /* Done or rolled back: nothing is left to recover. Gone before the reply, so a
         * caller that looks right after sees the state dir as the job left it; made durable
         * after it (one directory fsync less before the caller hears). */
        if (j->journal) {
                r = journal_unlink(j->journal);
                if (r < 0)
                        log_warning_errno(r, "Domain '%s': cannot remove the job journal: %m", domain_name(d));
        }
        /* A record staged for a job that failed goes before the reply too (job-record.c). */
        j->staged_new = staged_record_free(j->staged_new);
        j->staged_old = staged_record_free(j->staged_old);

        if (!j->plan.validate_only)
                log_job_outcome(domain_name(d), JOB_NAME, j->req.name, j->error.name, j->error.message,
                                now_usec() - j->started_usec, qmp_busy_usec(d->qmp) - j->started_qemu_usec);

        /* Idle before the reply too: a caller's next call must not find the domain busy. */
        d->job = NULL;
        if (j->request) {
                if (sd_bus_error_is_set(&j->error))
                        r = sd_bus_reply_method_error(j->request, &j->error);
                else
                        r = sd_bus_reply_method_return(j->request, "o", path ?: "/");
                if (r < 0)
                        log_warning_errno(r, "Domain '%s': failed to send the reply of %s: %m", domain_name(d), JOB_NAME);
        }
        if (j->journal)
                journal_unlink_sync_later(d->manager->event, j->journal);
        (void) domain_emit_changed(d, "Job");
        create_job_free(j);
        manager_job_ended(d->manager);
}

/* Records the first error and switches to the undo path. */
void job_fail(CreateJob *j, const char *name, const char *fmt, ...) {
        if (!sd_bus_error_is_set(&j->error)) {
                _cleanup_free_ char *msg = NULL;
                va_list ap;

                va_start(ap, fmt);
                if (vasprintf(&msg, fmt, ap) < 0)
                        msg = NULL;
                va_end(ap);
                (void) sd_bus_error_set(&j->error, name, msg ?: "Out of memory");
                log_warning("Domain '%s': snapshot '%s' failed: %s", domain_name(j->domain),
                            j->req.name, j->error.message);
        }
        if (j->undoing)
                return;
        j->undoing = true;
        /* The undo puts QEMU back as it was, but a half-done step may not have: ask again. */
        disk_cache_clear(&j->domain->disk_cache);
        j->undo_step = 0;
        job_undo_next(j);
}

void job_fail_qmp(CreateJob *j, const char *what, const QmpError *err) {
        job_fail(j, err->error == -ECANCELED ? SNAPSHOT_ERROR_ABORTED : SNAPSHOT_ERROR_FAILED,
                 "%s: %s", what, err->desc ?: strerror(-err->error));
}

/* ---- QMP and agent plumbing: one call in flight, its continuation kept in the job ---- */

static void on_job_reply(CreateJob *j, json_t *reply, const QmpError *err) {
        job_reply_fn fn = j->cont;

        j->cont = NULL;
        fn(j, reply, err);
}

static void on_job_qmp_reply(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        CreateJob *j = userdata;

        j->qmp_call = 0;
        on_job_reply(j, reply, err);
}

static void on_job_agent_reply(Agent *a, json_t *reply, const QmpError *err, void *userdata) {
        CreateJob *j = userdata;

        j->agent_call = 0;
        domain_set_has_agent(j->domain, !err || err->error == -EIO);
        on_job_reply(j, reply, err);
}

/* Sends a QMP command; a failure to even send is delivered to fn like any other error. */
void job_qmp(CreateJob *j, const char *command, json_t *args, job_reply_fn fn) {
        job_qmp_fd(j, command, args, -1, fn);
}

void job_qmp_fd(CreateJob *j, const char *command, json_t *args, int fd, job_reply_fn fn) {
        int r;

        j->cont = fn;
        r = qmp_call(j->domain->qmp, command, args, fd, 0, on_job_qmp_reply, j, &j->qmp_call);
        if (r < 0) {
                QmpError err = { .error = r, .desc = "QEMU is not connected" };

                j->qmp_call = 0;
                on_job_reply(j, NULL, &err);
        }
}

/* ---- pipelined calls ----
 *
 * QEMU answers one monitor's commands in the order they were sent, so commands that do not
 * wait on each other's replies go out together and cost one round trip instead of one each
 * (the overlays' blockdev-adds, the disk cache's qom-gets). */

/* The undo path's steps (job_undo_next). */
enum {
        UNDO_MEMORY,
        UNDO_THAW,
        UNDO_RESUME,
        UNDO_NODES,
        UNDO_FILES,
        UNDO_REPLY,
};

static void batch_clear(CreateJob *j) {
        for (size_t i = 0; i < j->batch.sent; i++)
                if (j->batch.ids[i])
                        qmp_cancel(j->domain->qmp, j->batch.ids[i]);
        free(j->batch.ids);
        free(j->batch.tags);
        free(j->batch.calls);
        j->batch = (Batch) {};
}

static void on_batch_reply(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        BatchCall *c = userdata;
        CreateJob *j = c->job;
        size_t i = c->index;

        j->batch.done++;
        j->batch.ids[i] = 0;
        j->batch.fn(j, j->batch.tags[i], reply, err);
        if (j->batch.done < j->batch.sent)
                return;
        if (j->undoing) {
                /* The undo waited for these answers (UNDO_NODES). */
                if (j->undo_step == UNDO_NODES)
                        job_undo_next(j);
                return;
        }
        j->batch.end(j);
}

int job_batch_begin(CreateJob *j, size_t n, batch_reply_fn fn, batch_end_fn end) {
        batch_clear(j);
        j->batch.ids = calloc(n + 1, sizeof(uint64_t));
        j->batch.tags = calloc(n + 1, sizeof(size_t));
        j->batch.calls = calloc(n + 1, sizeof(BatchCall));
        if (!j->batch.ids || !j->batch.tags || !j->batch.calls)
                return -ENOMEM;
        j->batch.n = n;
        j->batch.fn = fn;
        j->batch.end = end;
        return 0;
}

void job_batch_call(CreateJob *j, const char *command, json_t *args, size_t tag) {
        size_t i = j->batch.sent;
        int r;

        assert(i < j->batch.n);
        if (j->batch.send_error < 0) {
                json_decref(args);
                return;
        }
        j->batch.tags[i] = tag;
        j->batch.calls[i] = (BatchCall) { .job = j, .index = i };
        r = qmp_call(j->domain->qmp, command, args, -1, 0, on_batch_reply, &j->batch.calls[i], &j->batch.ids[i]);
        if (r < 0)
                j->batch.send_error = r;
        else
                j->batch.sent++;
}

/* After the last job_batch_call: with nothing in flight, end runs now. */
void job_batch_send(CreateJob *j) {
        if (j->batch.sent == 0)
                j->batch.end(j);
}

/* The first failure of a batch, to say in the job's error. */
void job_batch_note_error(CreateJob *j, const char *what, const QmpError *err) {
        if (j->batch_error)
                return;
        if (asprintf(&j->batch_error, "%s: %s", what, err->desc ?: strerror(-err->error)) < 0)
                j->batch_error = NULL;
}

static void job_agent(CreateJob *j, const char *command, uint64_t timeout, job_reply_fn fn) {
        int r = -ENOTCONN;

        j->cont = fn;
        if (j->domain->agent)
                r = agent_call(j->domain->agent, command, NULL, timeout, on_job_agent_reply, j, &j->agent_call);
        if (r < 0) {
                QmpError err = { .error = r, .desc = "no guest agent is configured" };

                j->agent_call = 0;
                on_job_reply(j, NULL, &err);
        }
}

/* ---- inspect ---- */

/* query-block names a device by qdev id ("vda"), a QOM path ending in it, or only by node. */
static char *disk_target_from_block(json_t *dev) {
        const char *qdev = json_string_value(json_object_get(dev, "qdev"));
        const char *device = json_string_value(json_object_get(dev, "device"));
        const char *node = json_string_value(json_object_get(json_object_get(dev, "inserted"), "node-name"));
        const char *peripheral = "/machine/peripheral/";

        if (qdev && strncmp(qdev, peripheral, strlen(peripheral)) == 0) {
                const char *id = qdev + strlen(peripheral);
                return strndup(id, strcspn(id, "/"));
        }
        if (!isempty(qdev) && !strchr(qdev, '/'))
                return strdup(qdev);
        if (!isempty(device))
                return strdup(device);
        return node ? strdup(node) : NULL;
}

static const DiskSpec *find_spec(CreateJob *j, const char *target) {
        for (size_t i = 0; i < j->req.n_disks; i++)
                if (streq(j->req.disks[i].target, target))
                        return &j->req.disks[i];
        return NULL;
}

static int plan_disk(CreateJob *j, json_t *dev, DiskPlan *p) {
        json_t *inserted = json_object_get(dev, "inserted");
        json_t *image = json_object_get(inserted, "image");
        const char *s;

        p->target = disk_target_from_block(dev);
        if (!p->target)
                return -ENOMEM;
        s = json_string_value(json_object_get(dev, "qdev"));
        if (s && s[0] == '/') {
                p->qom_path = strdup(s);
                if (!p->qom_path)
                        return -ENOMEM;
        }
        p->read_only = json_is_true(json_object_get(inserted, "ro"));
        p->location = p->read_only ? SNAPSHOT_LOCATION_NO : SNAPSHOT_LOCATION_EXTERNAL;

        s = json_string_value(json_object_get(inserted, "node-name"));
        p->top_node = s ? strdup(s) : NULL;
        s = json_string_value(json_object_get(image, "filename")) ?: json_string_value(json_object_get(inserted, "file"));
        p->base_file = s ? strdup(s) : NULL;
        s = json_string_value(json_object_get(image, "format")) ?: json_string_value(json_object_get(inserted, "drv"));
        p->base_format = s ? strdup(s) : NULL;
        p->virtual_size = (uint64_t) json_integer_value(json_object_get(image, "virtual-size"));
        if (!p->top_node || !p->base_file || !p->base_format)
                return -EBADMSG;
        return 0;
}

static void on_inspect_block(CreateJob *j, json_t *reply, const QmpError *err) {
        size_t i;
        json_t *dev;

        if (err)
                return job_fail_qmp(j, "Cannot list the domain's disks (query-block)", err);

        j->disks = calloc(json_array_size(reply) + 1, sizeof(DiskPlan));
        if (!j->disks)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");

        json_array_foreach(reply, i, dev) {
                DiskPlan *p = &j->disks[j->n_disks];
                int r;

                if (!json_is_object(json_object_get(dev, "inserted")))
                        continue; /* an empty drive: nothing to snapshot */
                j->n_disks++;
                r = plan_disk(j, dev, p);
                if (r < 0)
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot understand QEMU's description of a disk (query-block)");
        }

        j->step = STEP_INSPECT_MEMORY;
        job_next(j);
}

static void on_inspect_memory(CreateJob *j, json_t *reply, const QmpError *err) {
        /* Only for the <domain> section; a QEMU without the command still gets its snapshot. */
        if (!err)
                j->memory_kib = (uint64_t) json_integer_value(json_object_get(reply, "base-memory")) / 1024;
        j->step = STEP_INSPECT_CPUS;
        job_next(j);
}

/* Applies the request to the inspected disks and checks every rule; fills j->plan. */
static int check_rules(CreateJob *j, unsigned n_disks) {
        Domain *d = j->domain;
        CreateCheck check = {
                .flags = j->req.flags,
                .memory = j->req.memory,
                .state = d->state,
                .agent_configured = d->agent != NULL,
                .quiesce_best_effort = j->req.quiesce_best_effort,
                .can_transaction = qmp_has_transaction_action(d->qmp, "blockdev-snapshot"),
                .n_disks = n_disks,
        };

        return snapshot_rules_check_create(&check, &j->plan, &j->error);
}

/* An external disk: where its overlay goes, and our node names for it. */
static int plan_overlay(CreateJob *j, DiskPlan *p, size_t k, const DiskSpec *spec) {
        Domain *d = j->domain;
        _cleanup_free_ char *def_name = NULL;
        int r;

        if (p->read_only)
                return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "Disk '%s' is read-only and cannot get an external snapshot", p->target);

        if (asprintf(&def_name, "%s.%s.qcow2", j->req.name, p->target) < 0)
                return -ENOMEM;
        r = image_path_resolve(d->config->images_dir, spec ? spec->file : NULL, def_name, &p->overlay);
        if (r < 0)
                return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "Disk '%s': overlay file '%s' must lie under the domain's image directory '%s'",
                                         p->target, spec && !isempty(spec->file) ? spec->file : def_name,
                                         d->config->images_dir);
        for (size_t o = 0; o < k; o++)
                if (streq_ptr(j->disks[o].overlay, p->overlay))
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Disks '%s' and '%s' would share the overlay file '%s'",
                                                 j->disks[o].target, p->target, p->overlay);
        if (!(j->req.flags & SNAPSHOT_CREATE_REUSE_EXT)) {
                r = image_path_check_new(d->config->images_dir, p->overlay);
                if (r == -EEXIST)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Disk '%s': overlay file '%s' already exists (option 'reuse-external' uses an existing one)",
                                                 p->target, p->overlay);
                if (r < 0)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Disk '%s': overlay file '%s' cannot be created there (no symlinks, existing directories only): %s",
                                                 p->target, p->overlay, strerror(-r));
        }
        if (j->req.flags & SNAPSHOT_CREATE_REUSE_EXT) {
                int fd = image_file_open_existing(d->config->images_dir, p->overlay);

                if (fd < 0)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Disk '%s': with 'reuse-external' the overlay '%s' must be an existing regular file owned by root, reached without symlinks: %s",
                                                 p->target, p->overlay, strerror(-fd));
                close(fd);
        }

        if (asprintf(&p->fmt_node, "sd%s-%zu", j->tag, k) < 0 ||
            asprintf(&p->file_node, "sd%s-%zu-f", j->tag, k) < 0)
                return -ENOMEM;
        return 0;
}

/* Applies the request to the inspected disks and checks every rule; fills j->plan. */
static int job_validate(CreateJob *j) {
        Domain *d = j->domain;
        SnapshotLocation default_location;
        unsigned n_writable = 0, n_external = 0;
        int r;

        for (size_t i = 0; i < j->req.n_disks; i++) {
                bool found = false;

                for (size_t k = 0; k < j->n_disks; k++)
                        found = found || streq(j->disks[k].target, j->req.disks[i].target);
                if (!found)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Domain '%s' has no disk '%s'", domain_name(d), j->req.disks[i].target);
        }

        /* A first pass of the rules decides the memory kind, and so the disks' default. */
        for (size_t k = 0; k < j->n_disks; k++)
                n_writable += !j->disks[k].read_only;
        r = check_rules(j, n_writable);
        if (r < 0)
                return r;
        default_location = j->plan.memory == SNAPSHOT_LOCATION_INTERNAL ? SNAPSHOT_LOCATION_INTERNAL
                                                                         : SNAPSHOT_LOCATION_EXTERNAL;

        for (size_t k = 0; k < j->n_disks; k++) {
                DiskPlan *p = &j->disks[k];
                const DiskSpec *spec = find_spec(j, p->target);

                p->location = spec ? spec->location : p->read_only ? SNAPSHOT_LOCATION_NO : default_location;
                if (p->location == SNAPSHOT_LOCATION_INTERNAL && j->plan.memory != SNAPSHOT_LOCATION_INTERNAL)
                        return sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                 "Disk '%s': an internal disk snapshot needs memory 'internal' (a whole-system internal snapshot)",
                                                 p->target);
                if (p->location != SNAPSHOT_LOCATION_EXTERNAL)
                        continue;
                n_external++;
                r = plan_overlay(j, p, k, spec);
                if (r < 0)
                        return r;
        }

        /* Again with the disks that will really be snapshotted: rule 5 counts them. */
        r = check_rules(j, j->plan.memory == SNAPSHOT_LOCATION_INTERNAL ? n_writable : n_external);
        if (r < 0)
                return r;

        if (n_external > 0 && !qmp_has_command(d->qmp, "blockdev-add"))
                return sd_bus_error_set(&j->error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                        "This QEMU lacks blockdev-add, which external snapshots need");

        r = job_memory_validate(j, &j->error);
        if (r < 0)
                return r;

        j->was_running = d->state == DOMAIN_STATE_RUNNING;
        return 0;
}

static void inspect_done(CreateJob *j);

/* Remembers what query-block said, for the next create (disk-cache.h). */
static void cache_fill(CreateJob *j) {
        DiskCache *c = &j->domain->disk_cache;

        disk_cache_clear(c);
        c->disks = calloc(j->n_disks + 1, sizeof(DiskInfo));
        if (!c->disks)
                return;
        for (size_t i = 0; i < j->n_disks; i++) {
                const DiskPlan *p = &j->disks[i];
                DiskInfo info = {
                        .target = p->target, .qom_path = p->qom_path, .top_node = p->top_node,
                        .file = p->base_file, .format = p->base_format,
                        .virtual_size = p->virtual_size, .read_only = p->read_only,
                };

                /* Only devices with a QOM path can be checked cheaply later. */
                if (!p->qom_path || disk_info_copy(&c->disks[c->n_disks++], &info) < 0)
                        return disk_cache_clear(c);
        }
        c->memory_kib = j->memory_kib;
        c->vcpus = j->vcpus;
        c->valid = true;
}

static void on_inspect_cpus(CreateJob *j, json_t *reply, const QmpError *err) {
        if (!err)
                j->vcpus = (unsigned) json_array_size(reply);
        cache_fill(j);
        inspect_done(j);
}

/* Tags of the cache check's batch: its disks, then (a memory save) the migration settings. */
#define VERIFY_SETTINGS_TAG ((size_t) 1 << 16)

/* An external memory save: its migration settings ride in the cache check's batch. */
static bool settings_with_verify(const CreateJob *j) {
        return j->req.memory == SNAPSHOT_LOCATION_EXTERNAL && !(j->req.flags & SNAPSHOT_CREATE_DISK_ONLY);
}

static void on_verify_reply(CreateJob *j, size_t i, json_t *reply, const QmpError *err) {
        DiskCache *c = &j->domain->disk_cache;

        if (i >= VERIFY_SETTINGS_TAG)
                return job_memory_setting_reply(j, i - VERIFY_SETTINGS_TAG, reply, err);
        if (err || !c->valid || i >= c->n_disks || !streq_ptr(json_string_value(reply), c->disks[i].top_node))
                j->cache_stale = true;
}

static void on_verify_end(CreateJob *j) {
        if (settings_with_verify(j))
                job_memory_settings_early_end(j);
        j->step = STEP_VERIFY_CACHE;
        job_next(j);
}

/* One qom-get per cached disk, all at once: does each device still sit on the node the
 * cache says? An external memory save asks for QEMU's migration settings in the same batch:
 * one round trip less before QEMU starts copying (1-4 ms under TCG with a busy guest; the
 * median call-to-"setup" is noise-bound, its minimum went 15.1 -> 14.4 ms). */
static void verify_cache(CreateJob *j) {
        const DiskCache *c = &j->domain->disk_cache;

        j->cache_checked = true;
        if (job_batch_begin(j, c->n_disks + (settings_with_verify(j) ? JOB_MEMORY_SETTINGS_CALLS : 0),
                            on_verify_reply, on_verify_end) < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        for (size_t i = 0; i < c->n_disks; i++)
                job_batch_call(j, "qom-get", json_pack("{s:s, s:s}", "path", c->disks[i].qom_path, "property", "drive"), i);
        if (settings_with_verify(j))
                job_memory_settings_calls(j, VERIFY_SETTINGS_TAG);
        if (j->batch.send_error < 0)
                j->cache_stale = true;
        job_batch_send(j);
}

static int plan_from_cache(CreateJob *j) {
        const DiskCache *c = &j->domain->disk_cache;

        j->disks = calloc(c->n_disks + 1, sizeof(DiskPlan));
        if (!j->disks)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_disks; i++) {
                const DiskInfo *info = &c->disks[i];
                DiskPlan *p = &j->disks[j->n_disks++];

                p->target = strdup(info->target);
                p->qom_path = strdup(info->qom_path);
                p->top_node = strdup(info->top_node);
                p->base_file = strdup(info->file);
                p->base_format = strdup(info->format);
                p->virtual_size = info->virtual_size;
                p->read_only = info->read_only;
                p->location = p->read_only ? SNAPSHOT_LOCATION_NO : SNAPSHOT_LOCATION_EXTERNAL;
                if (!p->target || !p->qom_path || !p->top_node || !p->base_file || !p->base_format)
                        return -ENOMEM;
        }
        j->memory_kib = c->memory_kib;
        j->vcpus = c->vcpus;
        return 0;
}

static void inspect_done(CreateJob *j) {
        int r;

        r = job_validate(j);
        if (r < 0) {
                if (!sd_bus_error_is_set(&j->error))
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "%s", strerror(-r));
                log_info("Domain '%s': refused snapshot '%s': %s", domain_name(j->domain), j->req.name, j->error.message);
                /* Nothing was done yet: finish without an undo pass. */
                return job_finish(j, NULL);
        }

        j->step = STEP_CHECK_AGENT;
        job_next(j);
}

/* ---- the journal ---- */

int job_journal_note(CreateJob *j, const char *key, json_t *value) {
        if (!j->journal) {
                json_decref(value);
                return 0;
        }
        return journal_set(j->journal, key, value);
}


/* Before anything changes, one write: what this job is, every node name it may add and every
 * file it may create (for a rollback), and the record it will write (so that a crash after
 * the disks switched over can finish the snapshot instead of leaving it half done). What is
 * about to happen to the guest is said too: a thaw or a cont of a guest that was never
 * frozen or paused is harmless to recovery. */
static int job_journal_begin(CreateJob *j) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        _cleanup_free_ char *xml = NULL;
        json_t *nodes, *files;
        int r;

        r = job_build_def(j, &def);
        if (r < 0)
                return r;
        def->quiesced = j->plan.quiesce;
        def->current = true;
        r = snapshot_xml_format(def, &xml);
        if (r < 0)
                return r;

        r = journal_new(&j->journal, j->domain->manager->state_dir, domain_name(j->domain), "snapshot-create");
        if (r < 0)
                return r;
        nodes = json_array();
        files = json_array();
        for (size_t i = 0; nodes && files && i < j->n_disks; i++) {
                if (j->disks[i].fmt_node)
                        json_array_append_new(nodes, json_string(j->disks[i].fmt_node));
                if (j->disks[i].file_node)
                        json_array_append_new(nodes, json_string(j->disks[i].file_node));
                /* Recovery removes only what no snapshot names and what we made: never a
                 * reused file. */
                if (j->disks[i].overlay && !(j->req.flags & SNAPSHOT_CREATE_REUSE_EXT))
                        json_array_append_new(files, json_string(j->disks[i].overlay));
        }
        if (journal_put(j->journal, "nodes", nodes) < 0 || journal_put(j->journal, "files", files) < 0 ||
            journal_put(j->journal, "snapshot", json_string(j->req.name)) < 0 ||
            journal_put(j->journal, "was_running", json_boolean(j->was_running)) < 0 ||
            journal_put(j->journal, "froze", json_boolean(j->plan.quiesce)) < 0 ||
            journal_put(j->journal, "paused", json_boolean(j->plan.pause)) < 0 ||
            journal_put(j->journal, "def", json_string(xml)) < 0)
                return -ENOMEM;
        if (j->memory_file && j->saved_caps &&
            (journal_put(j->journal, "memory_file", json_string(j->memory_file)) < 0 ||
             journal_put(j->journal, "migration", json_pack("{s:O, s:O}", "caps", j->saved_caps,
                                                          "params", j->saved_params)) < 0))
                return -ENOMEM;
        return 0;
}

static int journal_write_job(void *jw) {
        int r = failpoint_io("create-journal-write");

        return r < 0 ? r : journal_write_run(jw);
}

static void on_journal_written(int r, void *userdata) {
        CreateJob *j = userdata;

        j->journal_worker = NULL;
        if (r < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot write the job journal to '%s': %s",
                                j->domain->manager->state_dir, strerror(-r));
        j->step = STEP_PREPARE;
        job_next(j);
}

/* Everything known: the journal, then the first change. Written on a worker: its fsync on
 * the loop waited up to 130 ms for another domain's memory image (job-record.c says why). */
static void job_begin(CreateJob *j) {
        JournalWrite *jw = NULL;
        int r;

        r = job_journal_begin(j);
        if (r >= 0)
                r = journal_snapshot(j->journal, &jw);
        if (r < 0)
                return on_journal_written(r, j);
        worker_start_or_run(&j->journal_worker, j->domain->manager->event, journal_write_job, jw,
                            journal_write_free, on_journal_written, j);
}

static void on_check_agent(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err && !j->req.quiesce_best_effort) {
                (void) sd_bus_error_setf(&j->error, SNAPSHOT_ERROR_AGENT_UNAVAILABLE,
                                         "The guest agent of domain '%s' did not answer: %s",
                                         domain_name(j->domain), err->desc ?: strerror(-err->error));
                return job_finish(j, NULL);
        }
        if (err)
                /* Best effort: go on crash-consistent and record Quiesced = false. */
                j->plan.quiesce = false;

        if (j->plan.validate_only) {
                log_info("Domain '%s': snapshot '%s' would succeed (validate only).", domain_name(j->domain), j->req.name);
                job_progress(j, "done", 0, 0);
                return job_finish(j, "/");
        }

        /* A memory image: QEMU's migration settings are read now, to be journalled with the
         * rest (recovery puts them back) in the one write before anything changes. */
        if (j->plan.memory == SNAPSHOT_LOCATION_EXTERNAL)
                return job_memory_read_settings(j, job_begin);
        job_begin(j);
}

/* ---- prepare overlays ---- */

/* The failpoint of each step of the forward path (job_next). */
static const char *const step_failpoints[] = {
        [STEP_PREPARE] = "create-prepare",
        [STEP_FREEZE] = "create-freeze",
        [STEP_PAUSE] = "create-pause",
        [STEP_INTERNAL] = "create-internal",
        [STEP_MEMORY] = "create-memory",
        [STEP_SNAPSHOT] = "create-snapshot",
        [STEP_MEMORY_FINISH] = "create-memory-finish",
        [STEP_THAW] = "create-thaw",
        [STEP_RESUME] = "create-resume",
        [STEP_SYNC] = "create-sync",
        [STEP_RESTORE] = "create-restore",
        [STEP_METADATA] = "create-metadata",
};

static json_t *transaction_actions(CreateJob *j);
static void on_snapshot(CreateJob *j, json_t *reply, const QmpError *err);
static bool any_external_disk(CreateJob *j);

/* Batch tags: the disk's index; the transaction's when it rides along (job_prepare). */
#define TAG_TRANSACTION SIZE_MAX

static void on_add_reply(CreateJob *j, size_t tag, json_t *reply, const QmpError *err) {
        if (tag == TAG_TRANSACTION) {
                if (err)
                        job_batch_note_error(j, "QEMU refused the disk snapshot (transaction)", err);
                return;
        }
        if (err)
                return job_batch_note_error(j, "Cannot open the overlay (blockdev-add)", err);
        j->disks[tag].fmt_node_added = true;
}

/* Every overlay is opened by QEMU: a qcow2 node on a file node, one blockdev-add a disk, all
 * sent together; end runs when all have answered. With with_transaction, the transaction goes
 * out right behind them: QEMU runs a monitor's commands in order, so it sees the overlays
 * open, or fails (atomically: nothing switches) if one did not. One round trip instead of two. */
static int adds_send(CreateJob *j, bool with_transaction, batch_end_fn end) {
        if (job_batch_begin(j, j->n_disks + 1, on_add_reply, end) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < j->n_disks; i++) {
                DiskPlan *p = &j->disks[i];

                if (p->location != SNAPSHOT_LOCATION_EXTERNAL)
                        continue;
                job_batch_call(j, "blockdev-add",
                               json_pack("{s:s, s:s, s:n, s:{s:s, s:s, s:s}}", "driver", "qcow2", "node-name",
                                         p->fmt_node, "backing", "file", "driver", "file", "node-name",
                                         p->file_node, "filename", p->overlay), i);
        }
        if (with_transaction) {
                j->tx_pipelined = true;
                job_batch_call(j, "transaction", json_pack("{s:o}", "actions", transaction_actions(j)),
                               TAG_TRANSACTION);
        }
        job_batch_send(j);
        return 0;
}

int job_adds_send(CreateJob *j, batch_end_fn end) {
        return adds_send(j, false, end);
}

/* A batch's failure as the job's error, or 0. */
int job_adds_failed(CreateJob *j) {
        if (j->batch.send_error < 0) {
                job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot open the overlays (blockdev-add): %s",
                         strerror(-j->batch.send_error));
                return -EIO;
        }
        if (j->batch_error) {
                job_fail(j, SNAPSHOT_ERROR_FAILED, "%s", j->batch_error);
                return -EIO;
        }
        return 0;
}

static void on_add_end(CreateJob *j) {
        if (job_adds_failed(j) < 0)
                return;
        if (j->tx_pipelined)
                return on_snapshot(j, NULL, NULL);
        j->step = STEP_FREEZE;
        job_next(j);
}

/* Disks to switch and nothing to wait for between the adds and the transaction: no freeze, no
 * pause, no memory, and no failpoint (tests) on the steps skipped. */
static bool transaction_rides_along(CreateJob *j) {
        return any_external_disk(j) && j->plan.memory == SNAPSHOT_LOCATION_NO && j->plan.use_transaction &&
               !j->plan.quiesce && !(j->plan.pause && j->domain->state == DOMAIN_STATE_RUNNING) &&
               !j->abort_requested && !failpoint_armed(step_failpoints[STEP_FREEZE]) &&
               !failpoint_armed(step_failpoints[STEP_PAUSE]) && !failpoint_armed(step_failpoints[STEP_SNAPSHOT]);
}

/* Only needed at pre-switchover: a live save opens its overlays while QEMU copies RAM
 * (job-memory.c), where the guest does not wait on them. A paused save opens them before
 * the pause, like a disk-only snapshot before the freeze. */
static bool adds_after_migrate(CreateJob *j) {
        return j->plan.memory == SNAPSHOT_LOCATION_EXTERNAL && (j->req.flags & SNAPSHOT_CREATE_LIVE) &&
               !(j->req.flags & SNAPSHOT_CREATE_REUSE_EXT);
}

/* Every overlay is made and formatted here (qcow2-overlay.c), then opened by QEMU. */
static void job_prepare(CreateJob *j) {
        int fd, r;

        for (size_t i = 0; i < j->n_disks; i++) {
                DiskPlan *p = &j->disks[i];

                if (p->location != SNAPSHOT_LOCATION_EXTERNAL || (j->req.flags & SNAPSHOT_CREATE_REUSE_EXT))
                        continue;
                fd = image_file_create(j->domain->config->images_dir, p->overlay);
                if (fd >= 0) {
                        p->file_created = true;
                        r = qcow2_overlay_write(fd, p->virtual_size, p->base_file, p->base_format);
                        close(fd);
                } else
                        r = fd;
                if (r < 0)
                        return job_fail(j, r == -ENOSPC ? SNAPSHOT_ERROR_NO_SPACE : SNAPSHOT_ERROR_FAILED,
                                        "Cannot create overlay '%s' for disk '%s': %s",
                                        p->overlay, p->target, strerror(-r));
        }
        /* Their fdatasync runs while QEMU opens them and the disks switch (STEP_SYNC waits). */
        if (job_overlays_sync_start(j) < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        if (any_external_disk(j) && adds_after_migrate(j)) {
                j->adds_late = true;
                j->step = STEP_FREEZE;
                return job_next(j);
        }
        if (!transaction_rides_along(j)) {
                if (job_adds_send(j, on_add_end) < 0)
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
                return;
        }
        job_progress(j, "disks", 0, j->n_disks);
        if (adds_send(j, true, on_add_end) < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        /* The record is final now: written while QEMU opens the overlays and switches. */
        qmp_flush(j->domain->qmp);
        job_record_stage(j);
}

void create_job_on_event(CreateJob *j, const char *event, json_t *data) {
        job_memory_on_event(j, event, data);

        if (j->internal_running && streq(event, "JOB_STATUS_CHANGE") &&
            streq_ptr(json_string_value(json_object_get(data, "id")), j->internal_job_id) &&
            streq_ptr(json_string_value(json_object_get(data, "status")), "concluded")) {
                j->internal_running = false;
                j->internal_concluded = true;
                if (!j->undoing)
                        job_next(j);
        }
}

/* ---- freeze, pause, snapshot, thaw, resume ---- */

static bool any_external_disk(CreateJob *j) {
        for (size_t i = 0; i < j->n_disks; i++)
                if (j->disks[i].location == SNAPSHOT_LOCATION_EXTERNAL)
                        return true;
        return false;
}


static void on_freeze(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err && !j->req.quiesce_best_effort)
                return job_fail(j, SNAPSHOT_ERROR_AGENT_UNAVAILABLE,
                                "The guest agent could not freeze the guest's file systems: %s",
                                err->desc ?: strerror(-err->error));
        j->quiesced = !err;
        j->step = STEP_PAUSE;
        job_next(j);
}

/* After the pause: the memory (internal save, or the image), else the disks. */
static Step step_after_pause(CreateJob *j) {
        return j->plan.memory == SNAPSHOT_LOCATION_INTERNAL ? STEP_INTERNAL :
               j->plan.memory == SNAPSHOT_LOCATION_EXTERNAL ? STEP_MEMORY : STEP_SNAPSHOT;
}

static void on_pause(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return job_fail_qmp(j, "Cannot pause the guest (stop)", err);
        j->paused = true;
        j->step = step_after_pause(j);
        job_next(j);
}

static void on_snapshot(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return job_fail_qmp(j, "QEMU refused the disk snapshot (transaction)", err);
        j->committed = any_external_disk(j);
        for (size_t i = 0; j->committed && i < j->n_disks; i++) {
                if (j->disks[i].location != SNAPSHOT_LOCATION_EXTERNAL)
                        continue;
                if (j->domain->disk_cache.valid)
                        (void) disk_cache_update_top(&j->domain->disk_cache, j->disks[i].target, j->disks[i].fmt_node,
                                                     j->disks[i].overlay, "qcow2");
                /* A managed domain starts next time on the overlay. */
                if (domain_set_active_disk(j->domain, j->disks[i].target, j->disks[i].overlay, "qcow2") < 0)
                        log_warning("Domain '%s': cannot record that disk '%s' now runs on '%s'.",
                                    domain_name(j->domain), j->disks[i].target, j->disks[i].overlay);
        }
        if (j->committed)
                job_progress(j, "disks", j->n_disks, j->n_disks);
        j->step = j->plan.memory == SNAPSHOT_LOCATION_EXTERNAL ? STEP_MEMORY_FINISH : STEP_THAW;
        job_next(j);
}

static void on_thaw(CreateJob *j, json_t *reply, const QmpError *err) {
        /* The disks are snapshotted by now; a failed thaw is worth a loud log, not a lost snapshot. */
        if (err)
                log_error("Domain '%s': the guest agent did not thaw the file systems after snapshot '%s': %s",
                          domain_name(j->domain), j->req.name, err->desc ?: strerror(-err->error));
        j->freeze_sent = false;
        j->step = STEP_RESUME;
        job_next(j);
}

static int on_retry_resume(sd_event_source *s, uint64_t usec, void *userdata) {
        CreateJob *j = userdata;

        job_next(j);
        return 0;
}

static void on_resume(CreateJob *j, json_t *reply, const QmpError *err) {
        /* Right after a memory save's "completed" event QEMU still says "Migration is not
         * finalized yet" for a millisecond or two: retry briefly rather than poll status. */
        if (err && err->error == -EIO && j->migration_done && j->cont_retries++ < 1000) {
                j->retry_timer = sd_event_source_disable_unref(j->retry_timer);
                if (sd_event_add_time_relative(j->domain->manager->event, &j->retry_timer, CLOCK_MONOTONIC,
                                               USEC_PER_MSEC, 1, on_retry_resume, j) >= 0)
                        return;
        }
        if (err && !(j->plan.halt && err->error == -ECONNRESET))
                log_error("Domain '%s': cannot %s the guest after snapshot '%s': %s", domain_name(j->domain),
                          j->plan.halt ? "halt" : "resume", j->req.name, err->desc ?: strerror(-err->error));
        j->paused = false;
        if (j->stop_usec && j->resume_usec > j->stop_usec)
                log_info("Domain '%s': guest paused for %.1f ms by snapshot '%s'.", domain_name(j->domain),
                         (double) (j->resume_usec - j->stop_usec) / 1000.0, j->req.name);
        j->step = STEP_SYNC;
        job_next(j);
}

static json_t *transaction_actions(CreateJob *j) {
        json_t *actions = json_array();

        for (size_t i = 0; actions && i < j->n_disks; i++) {
                DiskPlan *p = &j->disks[i];

                if (p->location != SNAPSHOT_LOCATION_EXTERNAL)
                        continue;
                json_array_append_new(actions,
                                      json_pack("{s:s, s:{s:s, s:s}}", "type", "blockdev-snapshot", "data",
                                                "node", p->top_node, "overlay", p->fmt_node));
        }
        return actions;
}

/* ---- the forward path ---- */

void job_next(CreateJob *j) {
        if (j->undoing)
                return;
        /* AbortJob before the memory save started: stop at this step boundary. */
        if (j->abort_requested && !j->migration_started && !j->committed && !j->internal_saved)
                return job_fail(j, SNAPSHOT_ERROR_ABORTED, "Aborted by AbortJob");

        /* Each step is entered once (sub-steps come back here with the same step). */
        if (j->step < ELEMENTSOF(step_failpoints) && step_failpoints[j->step] && j->failpoint_step != (int) j->step) {
                FailpointAction a;

                j->failpoint_step = (int) j->step;
                a = failpoint(step_failpoints[j->step]);
                if (a == FAILPOINT_HANG)
                        return;
                if (a == FAILPOINT_ERROR)
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Failpoint '%s'", step_failpoints[j->step]);
        }

        switch (j->step) {
        case STEP_INSPECT_BLOCK:
                if (!j->cache_checked)
                        job_progress(j, "validate", 0, 0);
                if (j->domain->disk_cache.valid && !j->cache_checked)
                        return verify_cache(j);
                return job_qmp(j, "query-block", NULL, on_inspect_block);
        case STEP_VERIFY_CACHE:
                if (j->cache_stale) {
                        /* Changed behind our back (or gone): ask QEMU for everything. */
                        disk_cache_clear(&j->domain->disk_cache);
                        j->step = STEP_INSPECT_BLOCK;
                        return job_next(j);
                }
                if (plan_from_cache(j) < 0)
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
                return inspect_done(j);
        case STEP_INSPECT_MEMORY:
                return job_qmp(j, "query-memory-size-summary", NULL, on_inspect_memory);
        case STEP_INSPECT_CPUS:
                return job_qmp(j, "query-cpus-fast", NULL, on_inspect_cpus);
        case STEP_CHECK_AGENT:
                if (!j->plan.quiesce)
                        return on_check_agent(j, NULL, NULL);
                return job_agent(j, "guest-ping", AGENT_PING_TIMEOUT_USEC, on_check_agent);
        case STEP_PREPARE:
                return job_prepare(j);
        case STEP_FREEZE:
                if (!j->plan.quiesce) {
                        j->step = STEP_PAUSE;
                        return job_next(j);
                }
                job_progress(j, "quiesce", 0, 0);
                j->freeze_sent = true;
                return job_agent(j, "guest-fsfreeze-freeze", AGENT_FREEZE_TIMEOUT_USEC, on_freeze);
        case STEP_PAUSE:
                if (!j->plan.pause || j->domain->state != DOMAIN_STATE_RUNNING) {
                        j->step = step_after_pause(j);
                        return job_next(j);
                }
                job_progress(j, "pause", 0, 0);
                return job_qmp(j, "stop", NULL, on_pause);
        case STEP_INTERNAL:
                return job_internal_next(j);
        case STEP_MEMORY:
        case STEP_MEMORY_FINISH:
                return job_memory_next(j);
        case STEP_SNAPSHOT:
                if (!any_external_disk(j))
                        return on_snapshot(j, NULL, NULL);
                job_progress(j, "disks", 0, j->n_disks);
                if (j->plan.use_transaction) {
                        job_qmp(j, "transaction", json_pack("{s:o}", "actions", transaction_actions(j)), on_snapshot);
                        /* A disk-only record is final now: written while QEMU switches the
                         * disks. (A memory save's waits for its image's sync, job-sync.c.) */
                        if (j->plan.memory == SNAPSHOT_LOCATION_NO) {
                                qmp_flush(j->domain->qmp);
                                job_record_stage(j);
                        }
                        return;
                }
                /* Without a transaction QEMU snapshots no disks here: refused by validation. */
                return job_fail(j, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                "This QEMU lacks 'transaction' with 'blockdev-snapshot'");
        case STEP_THAW:
                if (!j->freeze_sent) {
                        j->step = STEP_RESUME;
                        return job_next(j);
                }
                job_progress(j, "thaw", 0, 0);
                return job_agent(j, "guest-fsfreeze-thaw", AGENT_FREEZE_TIMEOUT_USEC, on_thaw);
        case STEP_RESUME:
                if (j->plan.halt) {
                        job_progress(j, "resume", 0, 0);
                        return job_qmp(j, "quit", NULL, on_resume);
                }
                /* We paused it, or QEMU did (a live save ends paused, snapshot-save too). */
                if (!j->was_running || !(j->paused || j->migration_done || j->internal_saved || j->escalated)) {
                        j->step = STEP_SYNC;
                        return job_next(j);
                }
                job_progress(j, "resume", 0, 0);
                return job_qmp(j, "cont", NULL, on_resume);
        case STEP_SYNC:
                return job_sync_next(j);
        case STEP_RESTORE:
                return job_restore_next(j);
        case STEP_METADATA:
                return job_metadata(j);
        case STEP_DONE:
                return;
        }
}

/* ---- the undo path: every step runs, whatever the last one did ---- */

static void on_undo_reply(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err && err->error != -ECONNRESET && err->error != -ENOTCONN)
                log_warning("Domain '%s': undoing snapshot '%s': %s", domain_name(j->domain), j->req.name,
                            err->desc ?: strerror(-err->error));
        job_undo_next(j);
}

void job_undo_next(CreateJob *j) {
        Domain *d = j->domain;

        for (;;) {
                switch (j->undo_step) {
                case UNDO_MEMORY:
                        /* Each call's reply comes back here, until nothing is left. */
                        if (job_memory_undo_next(j, on_undo_reply))
                                return;
                        j->undo_step++;
                        continue;

                case UNDO_THAW:
                        j->undo_step++;
                        if (j->freeze_sent) {
                                j->freeze_sent = false;
                                job_progress(j, "thaw", 0, 0);
                                return job_agent(j, "guest-fsfreeze-thaw", AGENT_FREEZE_TIMEOUT_USEC, on_undo_reply);
                        }
                        continue;

                case UNDO_RESUME:
                        j->undo_step++;
                        /* A single pass began with the guest stopped: QEMU, thinking it
                         * paused, does not resume it after a failed final pass (a "cont" of
                         * a running guest does nothing). */
                        if (j->was_running && (j->paused || j->escalated || j->migration_done ||
                                                j->at_switchover || j->internal_concluded || j->single_pass)) {
                                j->paused = false;
                                j->at_switchover = false;
                                job_progress(j, "resume", 0, 0);
                                return job_qmp(j, "cont", NULL, on_undo_reply);
                        }
                        continue;

                case UNDO_NODES:
                        /* Newest first; each format node takes its file node with it. */
                        if (j->committed) {
                                j->undo_step++;
                                continue;
                        }
                        /* blockdev-adds still in flight (a live save's): on_batch_reply
                         * comes back here once they have all answered. */
                        if (j->batch.done < j->batch.sent)
                                return;
                        for (size_t i = j->n_disks; i > 0; i--) {
                                DiskPlan *p = &j->disks[i - 1];

                                if (p->fmt_node_added) {
                                        p->fmt_node_added = false;
                                        return job_qmp(j, "blockdev-del", json_pack("{s:s}", "node-name", p->fmt_node),
                                                       on_undo_reply);
                                }
                        }
                        j->undo_step++;
                        continue;

                case UNDO_FILES:
                        j->undo_step++;
                        if (j->committed)
                                continue;
                        for (size_t i = 0; i < j->n_disks; i++) {
                                DiskPlan *p = &j->disks[i];

                                if (p->file_created && unlink(p->overlay) < 0 && errno != ENOENT)
                                        log_warning("Domain '%s': cannot remove overlay '%s': %m", domain_name(d), p->overlay);
                                p->file_created = false;
                        }
                        continue;

                case UNDO_REPLY:
                default:
                        log_info("Domain '%s': snapshot '%s' rolled back.", domain_name(d), j->req.name);
                        job_progress(j, "done", 0, 0);
                        return job_finish(j, NULL);
                }
        }
}

int create_job_start(Domain *d, sd_bus_message *m, CreateRequest *req, sd_bus_error *error) {
        CreateJob *j;
        uint32_t tag;
        struct timespec ts;

        if (!qmp_is_connected(d->qmp)) {
                /* Flag conflicts (and LIVE on a shut-off domain) are named first, as always. */
                CreateCheck check = {
                        .flags = req->flags,
                        .memory = req->memory,
                        .state = DOMAIN_STATE_SHUTOFF,
                        .agent_configured = d->agent != NULL,
                        .quiesce_best_effort = req->quiesce_best_effort,
                        .can_transaction = true,
                        .n_disks = 1,
                };
                CreatePlan plan;
                int r = snapshot_rules_check_create(&check, &plan, error);

                if (r < 0)
                        return r;
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID,
                                         "Domain '%s' is %s: its QEMU is not connected", domain_name(d),
                                         domain_state_to_string(d->state));
        }

        j = calloc(1, sizeof(CreateJob));
        if (!j)
                return -ENOMEM;
        j->started_usec = now_usec();
        j->started_qemu_usec = qmp_busy_usec(d->qmp);
        j->domain = d;
        j->memory_fd = -1;
        j->request = sd_bus_message_ref(m);
        j->req = *req;
        *req = (CreateRequest) {};

        if (getrandom(&tag, sizeof(tag), GRND_NONBLOCK) != sizeof(tag))
                tag = (uint32_t) rand();
        snprintf(j->tag, sizeof(j->tag), "%08x", tag);
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        j->creation_usec = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;

        d->job = j;
        (void) domain_emit_changed(d, "Job");

        j->step = STEP_INSPECT_BLOCK;
        job_next(j);
        return 1;
}

