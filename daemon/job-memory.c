/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The memory part of the create job.
 *
 * External memory (DESIGN.md "Memory image"): QEMU migrates to a file the daemon opened and
 * passed with getfd. The migration runs with the capability pause-before-switchover, so
 * QEMU stops the guest (by itself in a live save, after our "stop" otherwise) and waits in
 * "pre-switchover" before writing the final pass and inactivating the disks. The disks are
 * snapshotted right there, then migrate-continue lets QEMU write the final pass, and "cont"
 * follows the moment QEMU says "completed". The guest is paused only for the final pass and
 * the transaction; the fsync of the image and the rewrite of its magic to LibvirtQemudSave
 * happen after it runs again, in a worker thread.
 *
 * Under TCG, QEMU before 9.0 loses guest writes in a live save: after each sync of its dirty
 * bitmap it leaves the vCPU's TLB entries as they were, and stores through an entry that had
 * already marked its page dirty mark nothing again (fixed upstream by "physmem: Fix migration
 * dirty bitmap coherency with TCG memory access", 9.0). A page written after a sync and sent
 * before the next one is then never sent again: the image restores to a corrupt guest. So
 * there a live save runs as a single pass, with QEMU syncing the bitmap only twice, each time
 * with the guest stopped: the guest is stopped before migrate and resumed once QEMU says
 * "active" (its setup, with the first sync, is done; starting the dirty log flushed the
 * TLBs), and downtime-limit 0 keeps QEMU from syncing while it copies (it syncs in the middle
 * only to check whether what is left fits the limit). Every write after the first sync goes
 * through a fresh TLB entry, so its page is dirty at the final sync, which runs with the
 * guest stopped at pre-switchover as always. The cost: a few ms of pause at the start, and
 * a final pass holding everything written during the copy (no auto-converge without syncs).
 *
 * Migration settings are QEMU-wide and outlive us: the ones we change (capabilities events,
 * pause-before-switchover, auto-converge; parameters max-bandwidth, downtime-limit) are read
 * first and put back afterwards, on every path.
 *
 * Internal memory: QEMU's snapshot-save job writes memory and every disk into the qcow2
 * images themselves. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "domain.h"
#include "job-create-private.h"
#include "journal.h"
#include "log.h"
#include "manager.h"
#include "migration-cancel.h"
#include "path-util.h"
#include "save-image.h"
#include "snapshot-bus.h"
#include "snapshot-store.h"

#define PROGRESS_INTERVAL_USEC (200 * USEC_PER_MSEC)
#define LIVE_TIMEOUT_DEFAULT_SEC 120U
#define LIVE_DOWNTIME_MS 20
#define MEMORY_HEADROOM (64ULL << 20)
#define ABORT_CANCEL_TIMEOUT_USEC (10 * USEC_PER_SEC)
/* Less free than this after a failed save: the file system filled up. */
#define MEMORY_FULL_BELOW (1ULL << 20)
#define CONT_RETRY_USEC (2 * USEC_PER_MSEC)
#define MIGRATION_END_TIMEOUT_USEC (30 * USEC_PER_SEC)

/* Capabilities we set, and the value each gets during the save. auto-converge only for a
 * live save: it throttles the guest when it dirties memory faster than we write it. */
static const char *const our_caps[] = { "events", "pause-before-switchover", "auto-converge" };

static void arm_abort_timer(CreateJob *j);
static void cancel_save(CreateJob *j);
static void migration_ended(CreateJob *j);
static json_t *saved_caps_args(CreateJob *j);
static void on_restore_caps(CreateJob *j, json_t *reply, const QmpError *err);
static void on_setup_resume(CreateJob *j, json_t *reply, const QmpError *err);

static bool job_is_live(CreateJob *j) {
        return j->req.flags & SNAPSHOT_CREATE_LIVE;
}

/* A live save pauses the guest itself only for a single pass's setup (the escalation of
 * live-timeout is j->escalated). */
static bool setup_paused(CreateJob *j) {
        return j->single_pass && j->paused;
}

int job_memory_validate(CreateJob *j, sd_bus_error *error) {
        Domain *d = j->domain;
        _cleanup_free_ char *def_name = NULL;
        _cleanup_close_ int dirfd = -1;
        uint64_t need, avail = 0;
        int r;

        if (j->plan.memory == SNAPSHOT_LOCATION_INTERNAL) {
                for (size_t i = 0; i < j->n_disks; i++) {
                        if (j->disks[i].location == SNAPSHOT_LOCATION_EXTERNAL)
                                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                         "Disk '%s' asks for an external snapshot, but memory 'internal' keeps every disk internal",
                                                         j->disks[i].target);
                        if (j->disks[i].location == SNAPSHOT_LOCATION_INTERNAL &&
                            !streq_ptr(j->disks[i].base_format, "qcow2"))
                                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                         "Disk '%s' is %s: internal snapshots need qcow2",
                                                         j->disks[i].target, j->disks[i].base_format);
                }
                if (!qmp_has_command(d->qmp, "snapshot-save"))
                        return sd_bus_error_set(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                                "This QEMU lacks snapshot-save, which internal memory snapshots need");
                return 0;
        }

        if (j->plan.memory != SNAPSHOT_LOCATION_EXTERNAL)
                return 0;

        if (!qmp_has_command(d->qmp, "migrate") || !qmp_has_command(d->qmp, "getfd") ||
            !qmp_has_command(d->qmp, "migrate-continue"))
                return sd_bus_error_set(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                        "This QEMU lacks migrate/getfd/migrate-continue, which memory images need");

        if (asprintf(&def_name, "%s.mem", j->req.name) < 0)
                return -ENOMEM;
        r = image_path_resolve(d->config->images_dir, j->req.memory_file, def_name, &j->memory_file);
        if (r < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "Memory file '%s' must lie under the domain's image directory '%s'",
                                         isempty(j->req.memory_file) ? def_name : j->req.memory_file,
                                         d->config->images_dir);
        for (size_t i = 0; i < j->n_disks; i++)
                if (streq_ptr(j->disks[i].overlay, j->memory_file))
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                 "Memory file '%s' is also disk '%s''s overlay",
                                                 j->memory_file, j->disks[i].target);
        r = image_path_check_new(d->config->images_dir, j->memory_file);
        if (r < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         r == -EEXIST ? "Memory file '%s' already exists" :
                                         "Memory file '%s' cannot be created there (no symlinks, existing directories only)",
                                         j->memory_file);

        /* Refuse up front when the image cannot fit: the guest's RAM plus room for the
         * header, device state and the overlays. */
        dirfd = open(d->config->images_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (dirfd < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot open image directory '%s': %s",
                                         d->config->images_dir, strerror(errno));
        need = j->memory_kib * 1024 + MEMORY_HEADROOM;
        r = save_image_check_space(dirfd, need, &avail);
        if (r == -ENOSPC)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_NO_SPACE,
                                         "The memory image needs about %llu MiB in '%s', which has %llu MiB free",
                                         (unsigned long long) (need >> 20), d->config->images_dir,
                                         (unsigned long long) (avail >> 20));
        if (r < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot check free space in '%s': %s",
                                         d->config->images_dir, strerror(-r));
        return 0;
}

/* ---- progress ---- */

static void on_progress_reply(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        CreateJob *j = userdata;
        json_t *ram;
        uint64_t done, left, total;

        j->progress_call = 0;
        if (err || j->undoing || j->step != STEP_MEMORY)
                return;
        ram = json_object_get(reply, "ram");
        if (!ram)
                return;
        done = (uint64_t) json_integer_value(json_object_get(ram, "transferred"));
        left = (uint64_t) json_integer_value(json_object_get(ram, "remaining"));
        total = (uint64_t) json_integer_value(json_object_get(ram, "total"));
        (void) domain_send_progress(j->domain, "snapshot-create", "memory", done, left, total);
}

static int on_progress_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CreateJob *j = userdata;

        if (j->step != STEP_MEMORY || j->undoing)
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        /* One query at a time: a slow QEMU gets fewer, never a pile-up. */
        if (!j->progress_call)
                (void) qmp_call(j->domain->qmp, "query-migrate", NULL, -1, 0, on_progress_reply, j,
                                &j->progress_call);
        (void) sd_event_source_set_time_relative(s, PROGRESS_INTERVAL_USEC);
        return 0;
}

static void on_escalate(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        CreateJob *j = userdata;

        if (err)
                log_warning("Domain '%s': could not pause the guest to finish the live save: %s",
                            domain_name(j->domain), err->desc ?: strerror(-err->error));
}

static int on_live_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CreateJob *j = userdata;

        /* Being aborted, the save is cancelled, not finished: nothing to pause the guest for. */
        if (j->step != STEP_MEMORY || j->at_switchover || j->undoing || j->abort_requested)
                return 0;

        /* The guest dirties memory faster than the image is written, even throttled by
         * auto-converge: pause it, and the save finishes with what it has. */
        j->escalated = true;
        log_notice("Domain '%s': live save of '%s' did not converge in %us; pausing the guest to finish it.",
                   domain_name(j->domain), j->req.name, j->req.live_timeout ?: LIVE_TIMEOUT_DEFAULT_SEC);
        job_progress(j, "pause", 0, 0);
        (void) qmp_call(j->domain->qmp, "stop", NULL, -1, 0, on_escalate, j, NULL);
        return 0;
}

/* ---- the forward path ---- */

/* QEMU's MIGRATION events can come before the reply to the command that caused them
 * (migrate, migrate-continue). They only set flags; this moves the job on once no call of
 * the job is in flight, from the event or from that reply, whichever comes last. */
static void memory_check_events(CreateJob *j) {
        if (j->undoing || j->cont)
                return;
        /* Aborted: do not switch the disks; the MIGRATION "cancelled" event ends the job. */
        if (j->abort_requested && j->step == STEP_MEMORY)
                return;

        /* A single pass: QEMU's setup is done, the guest may run while it copies. */
        if (j->step == STEP_MEMORY && j->memory_step == MEMORY_WAIT && setup_paused(j) && j->ev_active) {
                j->ev_active = false;
                return job_qmp(j, "cont", NULL, on_setup_resume);
        }
        if (j->step == STEP_MEMORY && j->memory_step == MEMORY_WAIT && j->ev_switchover && !j->adds_pending) {
                j->ev_switchover = false;
                j->at_switchover = true;
                writeback_stop(j->writeback);
                j->writeback = NULL;
                (void) sd_event_source_set_enabled(j->progress_timer, SD_EVENT_OFF);
                (void) sd_event_source_set_enabled(j->live_timer, SD_EVENT_OFF);
                if (job_is_live(j) && !j->escalated)
                        job_progress(j, "pause", 0, 0); /* QEMU's own pause at convergence */
                j->step = STEP_SNAPSHOT;
                job_next(j);
        } else if (j->step == STEP_MEMORY_FINISH && j->memory_step == MEMORY_WAIT_DONE && j->ev_completed) {
                j->ev_completed = false;
                j->migration_done = true;
                j->migration_started = false;
                j->step = STEP_THAW;
                job_next(j);
        }
}

static void memory_advance(CreateJob *j, MemoryStep next) {
        j->memory_step = next;
        job_next(j);
}

/* ---- QEMU's migration settings: read before the journal, set, put back ----
 * Each pair goes out pipelined (job_batch_*). */

enum { SETTING_CAPS, SETTING_PARAMS, SETTING_ACCEL, SETTING_VERSION };

/* The first QEMU with the TCG dirty-tracking fix (the comment at the top). */
#define QEMU_TCG_DIRTY_FIXED_MAJOR 9

void job_memory_setting_reply(CreateJob *j, size_t tag, json_t *reply, const QmpError *err) {
        size_t i;
        json_t *c;

        if (tag == SETTING_ACCEL) {
                /* Unknown (an error) counts as TCG: the careful choice (set_settings). */
                j->kvm = !err && json_is_true(json_object_get(reply, "enabled"));
                return;
        }
        if (tag == SETTING_VERSION) {
                /* Unknown stays 0: an old QEMU, the careful choice again. */
                j->qemu_major = err ? 0 : (int) json_integer_value(json_object_get(json_object_get(reply, "qemu"), "major"));
                return;
        }
        if (err)
                return job_batch_note_error(j, tag == SETTING_CAPS ? "Cannot read migration capabilities" :
                                            "Cannot read migration parameters", err);
        if (tag == SETTING_PARAMS) {
                json_decref(j->saved_params);
                j->saved_params = json_pack("{s:O?, s:O?}",
                                            "max-bandwidth", json_object_get(reply, "max-bandwidth"),
                                            "downtime-limit", json_object_get(reply, "downtime-limit"));
                return;
        }
        json_decref(j->saved_caps);
        j->saved_caps = json_array();
        json_array_foreach(reply, i, c)
                for (size_t k = 0; j->saved_caps && k < ELEMENTSOF(our_caps); k++)
                        if (streq_ptr(json_string_value(json_object_get(c, "capability")), our_caps[k]))
                                json_array_append(j->saved_caps, c);
}

static void on_read_settings_end(CreateJob *j) {
        if (j->batch_error)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "%s", j->batch_error);
        if (j->batch.send_error < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot read migration settings: %s",
                                strerror(-j->batch.send_error));
        if (!j->saved_caps || !j->saved_params)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        if (json_array_size(j->saved_caps) != ELEMENTSOF(our_caps))
                return job_fail(j, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                "This QEMU lacks the migration capabilities events/pause-before-switchover/auto-converge");
        j->batch_then(j);
}

void job_memory_settings_calls(CreateJob *j, size_t tag_base) {
        job_batch_call(j, "query-migrate-capabilities", NULL, tag_base + SETTING_CAPS);
        job_batch_call(j, "query-migrate-parameters", NULL, tag_base + SETTING_PARAMS);
        job_batch_call(j, "query-kvm", NULL, tag_base + SETTING_ACCEL);
        job_batch_call(j, "query-version", NULL, tag_base + SETTING_VERSION);
}

void job_memory_settings_early_end(CreateJob *j) {
        /* Any doubt (an error, a capability missing): read again in the usual place, which
         * says what went wrong. */
        j->settings_read = !j->batch_error && j->batch.send_error >= 0 && j->saved_caps && j->saved_params &&
                           json_array_size(j->saved_caps) == ELEMENTSOF(our_caps);
        j->batch_error = mfree(j->batch_error);
}

void job_memory_read_settings(CreateJob *j, batch_end_fn then) {
        if (j->settings_read)
                return then(j);
        if (job_batch_begin(j, JOB_MEMORY_SETTINGS_CALLS, job_memory_setting_reply, on_read_settings_end) < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        j->batch_then = then;
        job_memory_settings_calls(j, 0);
        job_batch_send(j);
}

static void on_set_setting(CreateJob *j, size_t tag, json_t *reply, const QmpError *err) {
        if (err)
                return job_batch_note_error(j, tag == SETTING_CAPS ? "Cannot set migration capabilities" :
                                            "Cannot set migration parameters", err);
        /* Either one changed is enough to put both back (restoring the other is a no-op). */
        j->migration_changed = true;
}

static void on_set_settings_end(CreateJob *j) {
        if (j->batch_error)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "%s", j->batch_error);
        if (j->batch.send_error < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot set migration settings: %s",
                                strerror(-j->batch.send_error));
        memory_advance(j, MEMORY_GETFD);
}

static void set_settings(CreateJob *j) {
        json_t *params;

        j->single_pass = job_is_live(j) && !j->kvm && j->qemu_major < QEMU_TCG_DIRTY_FIXED_MAJOR;
        if (job_batch_begin(j, 2, on_set_setting, on_set_settings_end) < 0)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        job_batch_call(j, "migrate-set-capabilities",
                       json_pack("{s:[{s:s,s:b},{s:s,s:b},{s:s,s:b}]}", "capabilities",
                                 "capability", "events", "state", 1,
                                 "capability", "pause-before-switchover", "state", 1,
                                 "capability", "auto-converge", "state", job_is_live(j) && !j->single_pass),
                       SETTING_CAPS);
        /* QEMU's default bandwidth cap (128 MiB/s) is for networks, not a local file. */
        params = json_pack("{s:I}", "max-bandwidth", (json_int_t) INT64_MAX / 8);
        /* A short pause needs a low downtime limit, which makes QEMU run more passes: under
         * KVM. A single pass (the comment at the top) needs 0: QEMU never syncs mid-copy.
         * Under TCG on a fixed QEMU its own limit stays, as it was before the cause was known
         * (not tried here: Debian 12 has 7.2). */
        if (params && j->single_pass)
                json_object_set_new(params, "downtime-limit", json_integer(0));
        else if (params && job_is_live(j) && j->kvm)
                json_object_set_new(params, "downtime-limit", json_integer(LIVE_DOWNTIME_MS));
        job_batch_call(j, "migrate-set-parameters", params, SETTING_PARAMS);
        job_batch_send(j);
}

static void on_getfd(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return job_fail_qmp(j, "Cannot pass the memory image to QEMU (getfd)", err);
        j->fd_added = true;
        memory_advance(j, j->single_pass && j->domain->state == DOMAIN_STATE_RUNNING ? MEMORY_SETUP_PAUSE :
                          MEMORY_MIGRATE);
}

static void on_setup_pause(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return job_fail_qmp(j, "Cannot pause the guest for the save's setup (stop)", err);
        j->paused = true;
        memory_advance(j, MEMORY_MIGRATE);
}

static void on_setup_resume(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return job_fail_qmp(j, "Cannot resume the guest after the save's setup (cont)", err);
        j->paused = false;
        if (j->stop_usec && j->resume_usec > j->stop_usec)
                log_debug("Domain '%s': guest paused %.1f ms for the setup of the live save (single pass).",
                          domain_name(j->domain), (double) (j->resume_usec - j->stop_usec) / 1000.0);
        memory_check_events(j);
}

static void on_early_end_query(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        CreateJob *j = userdata;
        const char *st = err ? NULL : json_string_value(json_object_get(reply, "status"));

        j->progress_call = 0;
        if (j->undoing || !j->migration_started || !st)
                return;
        if (streq(st, "failed") || streq(st, "cancelled")) {
                _cleanup_(json_decrefp) json_t *data = json_pack("{s:s}", "status", st);

                if (data)
                        job_memory_on_event(j, "MIGRATION", data);
        }
}

/* A live save's overlays, opened while QEMU copies RAM: the disks switch once both this and
 * pre-switchover are in. */
static void on_late_adds_end(CreateJob *j) {
        j->adds_pending = false;
        if (job_adds_failed(j) < 0)
                return;
        memory_check_events(j);
}

static void on_migrate(CreateJob *j, json_t *reply, const QmpError *err) {
        uint64_t live_timeout;

        /* A guest that stayed paused through a memory save is left by QEMU in 'postmigrate',
         * from which QEMU saves no memory again until the guest has run. */
        if (err && err->desc && strstr(err->desc, "paused due to previous migration"))
                return job_fail(j, SNAPSHOT_ERROR_OPERATION_INVALID,
                                "Domain '%s' has stayed paused since an earlier memory snapshot; QEMU saves its memory "
                                "again only once it has run: resume it first (%s)", domain_name(j->domain), err->desc);
        if (err)
                return job_fail_qmp(j, "QEMU refused to save the memory (migrate)", err);
        /* QEMU owns the fd now and closes it when the migration ends. */
        j->migration_started = true;
        j->fd_added = false;
        j->memory_step = MEMORY_WAIT;
        /* The fsync after the save then finds most of the image written (writeback.h). Only
         * while the guest runs: it slows QEMU's writing, which a paused guest (a paused save,
         * the final pass of a live one) would wait out. */
        if (job_is_live(j) && j->memory_fd >= 0)
                (void) writeback_start(&j->writeback, j->domain->manager->event, j->memory_fd);
        if (j->adds_late && !j->abort_requested) {
                j->adds_late = false;
                j->adds_pending = true;
                if (job_adds_send(j, on_late_adds_end) < 0) {
                        j->adds_pending = false;
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
                }
        }
        /* AbortJob came while migrate was in flight: cancel now that there is a save. */
        if (j->abort_requested) {
                cancel_save(j);
                arm_abort_timer(j);
        }
        /* Ended before its reply came: check with QEMU rather than trust an event that may
         * have been an earlier save's. */
        if (j->ev_ended_early)
                (void) qmp_call(j->domain->qmp, "query-migrate", NULL, -1, 0, on_early_end_query, j, &j->progress_call);

        (void) sd_event_add_time_relative(j->domain->manager->event, &j->progress_timer, CLOCK_MONOTONIC,
                                          PROGRESS_INTERVAL_USEC, 10 * USEC_PER_MSEC, on_progress_timer, j);
        if (job_is_live(j)) {
                live_timeout = (uint64_t) (j->req.live_timeout ?: LIVE_TIMEOUT_DEFAULT_SEC) * USEC_PER_SEC;
                (void) sd_event_add_time_relative(j->domain->manager->event, &j->live_timer, CLOCK_MONOTONIC,
                                                  live_timeout, 0, on_live_timer, j);
        }
        memory_check_events(j);
}

static void on_migrate_continue(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return job_fail_qmp(j, "QEMU could not finish the memory image (migrate-continue)", err);
        j->at_switchover = false;
        j->memory_step = MEMORY_WAIT_DONE;
        memory_check_events(j);
}

static int open_image(CreateJob *j) {
        _cleanup_free_ char *xml = NULL;
        DomainDef def = {
                .name = (char *) domain_name(j->domain),
                .memory_kib = j->memory_kib,
                .vcpus = j->vcpus,
        };
        _cleanup_free_ DomainDiskDef *disks = NULL;
        int fd, r;

        disks = calloc(j->n_disks + 1, sizeof(DomainDiskDef));
        if (!disks)
                return -ENOMEM;
        for (size_t i = 0; i < j->n_disks; i++)
                disks[def.n_disks++] = (DomainDiskDef) {
                        .target = j->disks[i].target,
                        .file = j->disks[i].overlay ?: j->disks[i].base_file,
                        .format = j->disks[i].overlay ? (char *) "qcow2" : j->disks[i].base_format,
                };
        def.disks = disks;
        r = domain_def_format_xml(&def, &xml);
        if (r < 0)
                return r;

        /* Named in the journal already, with the migration settings (job_journal_begin). */
        fd = image_file_create(j->domain->config->images_dir, j->memory_file);
        if (fd < 0)
                return fd;
        j->memory_fd = fd;
        j->memory_file_created = true;
        return save_image_begin(fd, xml, j->was_running, NULL);
}

void job_memory_next(CreateJob *j) {
        int r;

        if (j->step == STEP_MEMORY_FINISH)
                return job_qmp(j, "migrate-continue", json_pack("{s:s}", "state", "pre-switchover"),
                               on_migrate_continue);

        switch (j->memory_step) {
        case MEMORY_SET:
                job_progress(j, "memory", 0, j->memory_kib * 1024);
                return set_settings(j);
        case MEMORY_GETFD:
                r = open_image(j);
                if (r < 0)
                        return job_fail(j, r == -ENOSPC ? SNAPSHOT_ERROR_NO_SPACE : SNAPSHOT_ERROR_FAILED,
                                        "Cannot create memory image '%s': %s", j->memory_file, strerror(-r));
                snprintf(j->fdname, sizeof(j->fdname), "sd%s-mem", j->tag);
                return job_qmp_fd(j, "getfd", json_pack("{s:s}", "fdname", j->fdname), j->memory_fd, on_getfd);
        case MEMORY_SETUP_PAUSE:
                return job_qmp(j, "stop", NULL, on_setup_pause);
        case MEMORY_MIGRATE: {
                _cleanup_free_ char *uri = NULL;

                if (asprintf(&uri, "fd:%s", j->fdname) < 0)
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
                return job_qmp(j, "migrate", json_pack("{s:s}", "uri", uri), on_migrate);
        }
        case MEMORY_WAIT:
        case MEMORY_CONTINUE:
        case MEMORY_WAIT_DONE:
                return; /* events move us on */
        }
}

/* QEMU's MIGRATION event says only "failed". The common cause worth naming is a full file
 * system (it passed the check up front, then filled, or a live save wrote more than RAM):
 * look, rather than make another round trip for QEMU's error text. */
static void memory_save_failed(CreateJob *j) {
        const char *dir = j->domain->config->images_dir;
        struct statvfs st;

        if (dir && statvfs(dir, &st) >= 0 && (uint64_t) st.f_bavail * st.f_frsize < MEMORY_FULL_BELOW)
                return job_fail(j, SNAPSHOT_ERROR_NO_SPACE, "QEMU failed to save the memory: '%s' is full", dir);
        job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU failed to save the memory (migration failed)");
}

void job_memory_on_event(CreateJob *j, const char *event, json_t *data) {
        const char *status;

        if (streq(event, "STOP"))
                j->stop_usec = now_usec();
        else if (streq(event, "RESUME"))
                j->resume_usec = now_usec();
        if (!streq(event, "MIGRATION"))
                return;

        status = json_string_value(json_object_get(data, "status"));
        if (!status)
                return;

        if (j->waiting_migration_end && (streq(status, "cancelled") || streq(status, "failed") || streq(status, "completed"))) {
                j->waiting_migration_end = false;
                (void) sd_event_source_set_enabled(j->end_timer, SD_EVENT_OFF);
                migration_ended(j);
                job_undo_next(j);
                return;
        }
        if (j->undoing)
                return;

        /* MIGRATION events do not say whose migration they are about. A save of an earlier
         * job that ended before QEMU's last word can still report "cancelled" or "failed":
         * that must not end this job, nor leave its own migration running unwatched. Only
         * once our migrate is sent do they count, and until its reply is in they are kept. */
        if ((streq(status, "failed") || streq(status, "cancelled")) && !j->migration_started) {
                if (j->memory_step == MEMORY_MIGRATE && j->cont && !j->ev_ended_early)
                        j->ev_ended_early = strdup(status);
                return;
        }

        if (streq(status, "pre-switchover"))
                j->ev_switchover = true;
        else if (streq(status, "active") && setup_paused(j))
                j->ev_active = true;
        else if (streq(status, "completed"))
                j->ev_completed = true;
        memory_check_events(j);
        if (streq(status, "failed") || streq(status, "cancelled")) {
                /* The save has ended already: the rollback must not wait for an end event that
                 * will not come again (it did, for 30 s, after every AbortJob). */
                migration_ended(j);
        }
        if (streq(status, "failed"))
                memory_save_failed(j);
        else if (streq(status, "cancelled"))
                job_fail(j, j->abort_requested ? SNAPSHOT_ERROR_ABORTED : SNAPSHOT_ERROR_FAILED,
                         j->abort_requested ? "Aborted by AbortJob" : "QEMU cancelled the memory save");
}

/* ---- internal memory: QEMU's snapshot-save job ---- */

static void on_internal_query(CreateJob *j, json_t *reply, const QmpError *err);

static void on_internal_dismiss(CreateJob *j, json_t *reply, const QmpError *err) {
        const char *job_error = j->internal_error;

        if (err)
                log_warning("Domain '%s': cannot dismiss snapshot-save job: %s", domain_name(j->domain),
                            err->desc ?: strerror(-err->error));
        if (job_error)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU could not save the internal snapshot: %s", job_error);
        j->internal_saved = true;
        j->step = STEP_RESUME;
        job_next(j);
}

static void on_internal_query(CreateJob *j, json_t *reply, const QmpError *err) {
        size_t i;
        json_t *job;

        if (err)
                return job_fail_qmp(j, "Cannot read the result of snapshot-save (query-jobs)", err);
        json_array_foreach(reply, i, job)
                if (streq_ptr(json_string_value(json_object_get(job, "id")), j->internal_job_id)) {
                        const char *e = json_string_value(json_object_get(job, "error"));
                        free(j->internal_error);
                        j->internal_error = e ? strdup(e) : NULL;
                }
        job_qmp(j, "job-dismiss", json_pack("{s:s}", "id", j->internal_job_id), on_internal_dismiss);
}

static void on_internal_started(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err)
                return job_fail_qmp(j, "QEMU refused the internal snapshot (snapshot-save)", err);
        j->internal_running = true; /* JOB_STATUS_CHANGE "concluded" moves us on */
}

void job_internal_next(CreateJob *j) {
        json_t *devices, *args;
        const char *vmstate = NULL;

        if (j->internal_concluded)
                return job_qmp(j, "query-jobs", NULL, on_internal_query);

        devices = json_array();
        if (!devices)
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        for (size_t i = 0; i < j->n_disks; i++) {
                if (j->disks[i].location != SNAPSHOT_LOCATION_INTERNAL)
                        continue;
                json_array_append_new(devices, json_string(j->disks[i].top_node));
                vmstate = vmstate ?: j->disks[i].top_node;
        }
        if (!vmstate) {
                json_decref(devices);
                return job_fail(j, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                "An internal memory snapshot needs a qcow2 disk to hold the memory");
        }
        free(j->internal_job_id);
        if (asprintf(&j->internal_job_id, "sd%s-save", j->tag) < 0) {
                j->internal_job_id = NULL;
                json_decref(devices);
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        }
        job_progress(j, "memory", 0, j->memory_kib * 1024);
        if (job_journal_note(j, "internal", json_string(j->req.name)) < 0) {
                json_decref(devices);
                return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot write the job journal");
        }
        args = json_pack("{s:s, s:s, s:s, s:o}", "job-id", j->internal_job_id, "tag", j->req.name,
                         "vmstate", vmstate, "devices", devices);
        job_qmp(j, "snapshot-save", args, on_internal_started);
}

/* ---- restore the migration settings ---- */

static json_t *saved_caps_args(CreateJob *j) {
        return json_pack("{s:O}", "capabilities", j->saved_caps);
}

static void on_restore_params(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err)
                log_warning("Domain '%s': cannot restore migration parameters: %s", domain_name(j->domain),
                            err->desc ?: strerror(-err->error));
        if (j->restore_pending) {
                j->restore_pending = false;
                return job_sync_restored(j);
        }
        j->step = STEP_METADATA;
        job_next(j);
}

static void on_restore_caps(CreateJob *j, json_t *reply, const QmpError *err) {
        if (err)
                log_warning("Domain '%s': cannot restore migration capabilities: %s", domain_name(j->domain),
                            err->desc ?: strerror(-err->error));
        j->migration_changed = false;
        if (!j->saved_params)
                return on_restore_params(j, NULL, NULL);
        job_qmp(j, "migrate-set-parameters", json_incref(j->saved_params), on_restore_params);
}

/* Put back while the files sync (STEP_SYNC): job_sync_restored() when done. */
bool job_memory_restore_begin(CreateJob *j) {
        if (!j->migration_changed || !j->saved_caps)
                return false;
        j->restore_pending = true;
        job_qmp(j, "migrate-set-capabilities", saved_caps_args(j), on_restore_caps);
        return true;
}

void job_restore_next(CreateJob *j) {
        if (!j->migration_changed || !j->saved_caps) {
                j->step = STEP_METADATA;
                return job_next(j);
        }
        job_qmp(j, "migrate-set-capabilities", saved_caps_args(j), on_restore_caps);
}

/* ---- abort ---- */

static void migration_ended(CreateJob *j) {
        j->migration_started = false;
        (void) sd_event_source_set_enabled(j->progress_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(j->nudge_timer, SD_EVENT_OFF);
}

static void on_nudge(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        CreateJob *j = userdata;

        j->nudge_call = 0;
        /* QEMU takes it only from a save still "cancelling" this long after the cancel:
         * most likely the stuck one, and it is free now. */
        if (!err && !j->nudged) {
                j->nudged = true;
                log_notice("Domain '%s': the cancelled save of '%s' was stuck in QEMU; woke it with migrate-continue.",
                           domain_name(j->domain), j->req.name);
        }
}

static int on_nudge_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CreateJob *j = userdata;

        if (!j->migration_started)
                return 0;
        if (!j->nudge_call)
                (void) migration_cancel_nudge(j->domain->qmp, on_nudge, j, &j->nudge_call);
        (void) sd_event_source_set_time_relative(s, MIGRATION_NUDGE_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* migrate_cancel, and until the save ends a nudge now and then: QEMU can lose the cancel's
 * wake-up and hang in "cancelling" with the guest stopped (migration-cancel.c). */
static void cancel_save(CreateJob *j) {
        (void) migration_cancel(j->domain->qmp);
        if (j->nudge_timer) {
                (void) sd_event_source_set_time_relative(j->nudge_timer, MIGRATION_NUDGE_USEC);
                (void) sd_event_source_set_enabled(j->nudge_timer, SD_EVENT_ONESHOT);
                return;
        }
        (void) sd_event_add_time_relative(j->domain->manager->event, &j->nudge_timer, CLOCK_MONOTONIC,
                                          MIGRATION_NUDGE_USEC, 0, on_nudge_timer, j);
}

/* The MIGRATION "cancelled" event ends an aborted save. Should it never come, the rollback
 * starts anyway (and waits for the save's end there, bounded too): an AbortJob never leaves
 * the job, and its caller, hanging. */
static int on_abort_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        CreateJob *j = userdata;

        if (j->undoing || j->step != STEP_MEMORY)
                return 0;
        log_warning("Domain '%s': QEMU did not cancel the save of '%s' in time; rolling back anyway.",
                    domain_name(j->domain), j->req.name);
        job_fail(j, SNAPSHOT_ERROR_ABORTED, "Aborted by AbortJob");
        return 0;
}

static void arm_abort_timer(CreateJob *j) {
        j->abort_timer = sd_event_source_disable_unref(j->abort_timer);
        (void) sd_event_add_time_relative(j->domain->manager->event, &j->abort_timer, CLOCK_MONOTONIC,
                                          ABORT_CANCEL_TIMEOUT_USEC, 0, on_abort_timeout, j);
}

int create_job_abort(CreateJob *j, sd_bus_error *error) {
        if (j->undoing)
                return sd_bus_error_set(error, SNAPSHOT_ERROR_OPERATION_INVALID, "The job is already being rolled back");
        /* Past the disks' transaction (or QEMU's internal save) the snapshot exists: finishing
         * is the only way that leaves nothing half done. */
        if (j->committed || j->at_switchover || j->internal_running || j->internal_saved || j->step > STEP_MEMORY)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID,
                                         "Job 'snapshot-create' of domain '%s' is finishing and cannot be aborted any more",
                                         domain_name(j->domain));
        if (j->abort_requested)
                return 0;
        j->abort_requested = true;
        log_info("Domain '%s': aborting snapshot '%s'.", domain_name(j->domain), j->req.name);
        /* A running save: the MIGRATION "cancelled" event fails the job, which rolls back and
         * replies Aborted. Otherwise the job stops at its next step (job_next). */
        if (j->migration_started) {
                cancel_save(j);
                arm_abort_timer(j);
        }
        return 0;
}

/* ---- undo ---- */

static int on_migration_end_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        CreateJob *j = userdata;

        if (!j->waiting_migration_end)
                return 0;
        j->waiting_migration_end = false;
        migration_ended(j);
        log_warning("Domain '%s': QEMU did not confirm the memory save was cancelled.", domain_name(j->domain));
        job_undo_next(j);
        return 0;
}

bool job_memory_undo_next(CreateJob *j, job_reply_fn next) {
        if (j->migration_started) {
                /* Cancel, and wait for QEMU to say it stopped: only then may the guest go on. */
                j->waiting_migration_end = true;
                if (!qmp_is_connected(j->domain->qmp)) {
                        /* Nobody left to cancel: the migration died with QEMU. */
                        j->migration_started = false;
                        j->waiting_migration_end = false;
                        return job_memory_undo_next(j, next);
                }
                j->end_timer = sd_event_source_disable_unref(j->end_timer);
                (void) sd_event_add_time_relative(j->domain->manager->event, &j->end_timer, CLOCK_MONOTONIC,
                                                  MIGRATION_END_TIMEOUT_USEC, 0, on_migration_end_timeout, j);
                if (!j->abort_requested)
                        cancel_save(j);
                j->abort_requested = true;
                return true;
        }
        if (j->fd_added) {
                j->fd_added = false;
                job_qmp(j, "closefd", json_pack("{s:s}", "fdname", j->fdname), next);
                return true;
        }
        if (j->migration_changed && j->saved_caps) {
                j->migration_changed = false;
                job_qmp(j, "migrate-set-capabilities", saved_caps_args(j), next);
                return true;
        }
        if (j->saved_params) {
                json_t *p = TAKE_PTR(j->saved_params);
                job_qmp(j, "migrate-set-parameters", p, next);
                return true;
        }
        if (j->internal_saved) {
                json_t *args = json_pack("{s:s, s:s, s:[]}", "job-id", j->internal_job_id, "tag", j->req.name,
                                         "devices");
                j->internal_saved = false;
                for (size_t i = 0; args && i < j->n_disks; i++)
                        if (j->disks[i].location == SNAPSHOT_LOCATION_INTERNAL)
                                json_array_append_new(json_object_get(args, "devices"), json_string(j->disks[i].top_node));
                /* Fire the delete; its job is left for QEMU to finish and auto-dismiss. */
                job_qmp(j, "snapshot-delete", args, next);
                return true;
        }
        if (j->memory_file_created) {
                j->memory_file_created = false;
                if (unlink(j->memory_file) < 0 && errno != ENOENT)
                        log_warning("Domain '%s': cannot remove memory image '%s': %m", domain_name(j->domain),
                                    j->memory_file);
        }
        return false;
}

void job_memory_clear(CreateJob *j) {
        if (j->progress_call)
                qmp_cancel(j->domain->qmp, j->progress_call);
        if (j->nudge_call)
                qmp_cancel(j->domain->qmp, j->nudge_call);
        worker_detach(j->worker);
        worker_detach(j->overlay_worker);
        writeback_stop(j->writeback);
        j->writeback = NULL;
        sd_event_source_disable_unref(j->progress_timer);
        sd_event_source_disable_unref(j->live_timer);
        sd_event_source_disable_unref(j->end_timer);
        sd_event_source_disable_unref(j->abort_timer);
        sd_event_source_disable_unref(j->nudge_timer);
        json_decref(j->saved_caps);
        json_decref(j->saved_params);
        if (j->memory_fd >= 0)
                close(j->memory_fd);
        free(j->memory_file);
        free(j->internal_job_id);
        free(j->internal_error);
        free(j->ev_ended_early);
}

void create_job_on_disconnect(CreateJob *j) {
        if (j->waiting_migration_end) {
                j->waiting_migration_end = false;
                migration_ended(j);
                (void) sd_event_source_set_enabled(j->end_timer, SD_EVENT_OFF);
                job_undo_next(j);
                return;
        }
        /* A call in flight fails by itself (-ECONNRESET); waiting for an event does not. A
         * worker's end moves the job on, and its next call fails. */
        if (!j->cont && !j->undoing && !j->worker && !j->overlay_worker && !job_files_busy(j))
                job_fail(j, SNAPSHOT_ERROR_FAILED, "QEMU went away during the snapshot");
}
