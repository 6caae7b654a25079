/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reverting to an external snapshot: QEMU restarts on fresh overlays over the snapshot's
 * images (which are never written), and, with a memory image, loads its migration stream
 * with -incoming. Only a managed domain can be restarted.
 *
 *   stop QEMU → qemu-img create a new overlay per disk over the image the snapshot was taken
 *   on → record them as the disks' images → start QEMU (-incoming defer and -S with memory)
 *   → getfd + migrate-incoming from the image's stream offset → run or stay paused.
 *
 * Crash safety: before QEMU is stopped the journal holds each disk's image as it was, and
 * each new overlay is named there before it is made. A failed revert puts the disks' images
 * back (and removes its overlays), so the domain starts as it was; a snapshotd that died
 * mid-revert does the same when it comes back, then runs the revert again — the caller asked
 * for it, and QEMU may already be stopped. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "domain-managed.h"
#include "domain.h"
#include "failpoint.h"
#include "job-revert.h"
#include "journal.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "save-image.h"
#include "snapshot-bus.h"
#include "snapshot.h"

extern char **environ;

enum {
        EXT_STOP,
        EXT_OVERLAYS,
        EXT_LAUNCH,
        EXT_CAPS,
        EXT_GETFD,
        EXT_INCOMING,
        EXT_WAIT,
        EXT_STATE,
        EXT_DONE,
};

static void ext_next(RevertJob *j);

static const char *snapshot_base(const Snapshot *s, const char *target) {
        for (size_t k = 0; k < s->def->domain.n_disks; k++)
                if (streq_ptr(s->def->domain.disks[k].target, target))
                        return s->def->domain.disks[k].file;
        return NULL;
}

static const char *snapshot_base_format(const Snapshot *s, const char *target) {
        for (size_t k = 0; k < s->def->domain.n_disks; k++)
                if (streq_ptr(s->def->domain.disks[k].target, target))
                        return s->def->domain.disks[k].format;
        return NULL;
}

int revert_external_check(Domain *d, Snapshot *s, uint64_t flags, sd_bus_error *error) {
        if (!domain_is_managed(d))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                         "Reverting to external snapshot '%s' restarts QEMU, and domain '%s' is attached "
                                         "(its QEMU was started elsewhere); a managed domain can be reverted",
                                         snapshot_name(s), domain_name(d));

        for (size_t i = 0; i < s->def->n_disks; i++) {
                const char *base;

                if (s->def->disks[i].location != SNAPSHOT_LOCATION_EXTERNAL)
                        continue;
                base = snapshot_base(s, s->def->disks[i].target);
                if (!base || access(base, R_OK) < 0)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID,
                                                 "Disk '%s' of snapshot '%s': its image '%s' is gone",
                                                 s->def->disks[i].target, snapshot_name(s), strempty(base));
        }
        if (s->def->memory == SNAPSHOT_LOCATION_EXTERNAL) {
                _cleanup_close_ int fd = open(strempty(s->def->memory_file), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                SaveImageHeader h;
                int r = fd < 0 ? -errno : save_image_read_header(fd, &h, NULL);

                if (r < 0)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID,
                                                 "Memory image '%s' of snapshot '%s' cannot be loaded: %s",
                                                 strempty(s->def->memory_file), snapshot_name(s),
                                                 r == -EINPROGRESS ? "the save never completed" : strerror(-r));
        }
        return 0;
}

/* qemu-img create -f qcow2 -F FMT -b BASE NEW: a small, quick process; waited for in place. */
static int create_overlay(const char *base, const char *format, const char *path) {
        char *argv[] = { (char *) "qemu-img", (char *) "create", (char *) "-q", (char *) "-f", (char *) "qcow2",
                         (char *) "-F", (char *) format, (char *) "-b", (char *) base, (char *) path, NULL };
        pid_t pid;
        int r, status;

        r = -posix_spawnp(&pid, "qemu-img", NULL, NULL, argv, environ);
        if (r < 0)
                return r;
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* Each disk back on the image it had before the revert, and the overlays made for it gone:
 * QEMU does not run on them (a failed revert leaves it stopped), the next Start must not
 * either. Tolerates having been done already. */
static void ext_undo(Domain *d, json_t *previous, json_t *created) {
        size_t i;
        json_t *p;

        json_array_foreach(previous, i, p) {
                const char *target = json_string_value(json_object_get(p, "target"));
                const char *file = json_string_value(json_object_get(p, "file"));
                const char *format = json_string_value(json_object_get(p, "format"));

                if (target && file && !streq_ptr(domain_active_disk_file(d, target), file))
                        (void) domain_set_active_disk(d, target, file, format ?: "qcow2");
        }
        json_array_foreach(created, i, p)
                if (json_string_value(p) && unlink(json_string_value(p)) >= 0)
                        log_info("Domain '%s': removed overlay '%s' of an unfinished revert.", domain_name(d),
                                 json_string_value(p));
}

void revert_external_undo_journal(Domain *d, json_t *journal) {
        ext_undo(d, json_object_get(journal, "previous"), json_object_get(journal, "created"));
}

static json_t *created_json(RevertExternal *e) {
        json_t *a = json_array();

        for (char **f = e->created; a && f && *f; f++)
                json_array_append_new(a, json_string(*f));
        return a;
}

static void ext_fail(RevertJob *j, const char *what, const char *arg) {
        RevertExternal *e = revert_job_external(j);
        _cleanup_(json_decrefp) json_t *created = created_json(e);

        ext_undo(revert_job_domain(j), e->previous, created);
        revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "%s%s%s", what, arg ? ": " : "", strempty(arg));
}

static const char *const ext_failpoints[] = {
        [EXT_STOP] = "revert-ext-stop",
        [EXT_OVERLAYS] = "revert-ext-overlays",
        [EXT_LAUNCH] = "revert-ext-launch",
        [EXT_CAPS] = "revert-ext-caps",
        [EXT_INCOMING] = "revert-ext-incoming",
        [EXT_STATE] = "revert-ext-state",
        [EXT_DONE] = "revert-ext-done",
};

static void on_launch(Domain *d, int error, void *userdata) {
        RevertJob *j = userdata;
        RevertExternal *e = revert_job_external(j);

        if (e->step == EXT_STOP) {
                /* A query-status answered before the quit (a revert resumed right after
                 * connecting) is no sign QEMU has gone: wait on until it really has. */
                if (domain_managed_active(d)) {
                        d->launch_cb = on_launch;
                        d->launch_userdata = j;
                        return;
                }
                e->step = EXT_OVERLAYS;
                return ext_next(j);
        }
        if (error < 0)
                return ext_fail(j, "QEMU exited while starting", domain_name(d));
        e->step = revert_job_snapshot(j)->def->memory == SNAPSHOT_LOCATION_EXTERNAL ? EXT_CAPS : EXT_STATE;
        ext_next(j);
}

static void on_step_reply(RevertJob *j, json_t *reply, const QmpError *err) {
        RevertExternal *e = revert_job_external(j);

        if (err)
                return ext_fail(j, "QEMU refused to load the memory image", err->desc ?: strerror(-err->error));
        e->step++;
        ext_next(j);
}

void revert_external_on_event(RevertJob *j, const char *event, json_t *data) {
        RevertExternal *e = revert_job_external(j);
        const char *st;

        if (!streq(event, "MIGRATION"))
                return;
        st = json_string_value(json_object_get(data, "status"));
        if (streq_ptr(st, "completed"))
                e->ev_completed = true;
        else if (streq_ptr(st, "failed"))
                return ext_fail(j, "QEMU could not load the memory image", "migration failed");
        if (e->step == EXT_WAIT && e->ev_completed)
                ext_next(j);
}

void revert_external_on_disconnect(RevertJob *j) {
        /* Expected while stopping and restarting; the launch callback reports real failures. */
}

static void ext_next(RevertJob *j) {
        RevertExternal *e = revert_job_external(j);
        Domain *d = revert_job_domain(j);
        Snapshot *s = revert_job_snapshot(j);
        SaveImageHeader h;
        uint64_t offset;
        int r;

        if ((size_t) e->step < ELEMENTSOF(ext_failpoints) && ext_failpoints[e->step] && e->failpoint_step != e->step) {
                FailpointAction a;

                e->failpoint_step = e->step;
                a = failpoint(ext_failpoints[e->step]);
                if (a == FAILPOINT_HANG)
                        return;
                if (a == FAILPOINT_ERROR)
                        return ext_fail(j, "Failpoint", ext_failpoints[e->step]);
        }

        switch (e->step) {
        case EXT_STOP:
                (void) domain_send_progress(d, "snapshot-revert", "pause", 0, 0, 0);
                if (!qmp_is_connected(d->qmp) && d->pid <= 0) {
                        e->step = EXT_OVERLAYS;
                        return ext_next(j);
                }
                d->launch_cb = on_launch;
                d->launch_userdata = j;
                r = domain_managed_stop(d, true);
                if (r < 0)
                        return ext_fail(j, "Cannot stop QEMU of domain", domain_name(d));
                return;

        case EXT_OVERLAYS: {
                uint32_t tag;

                (void) domain_send_progress(d, "snapshot-revert", "disks", 0, s->def->n_disks, s->def->n_disks);
                if (getrandom(&tag, sizeof(tag), GRND_NONBLOCK) != sizeof(tag))
                        tag = (uint32_t) rand();
                for (size_t i = 0; i < s->def->n_disks; i++) {
                        const char *target = s->def->disks[i].target, *base = snapshot_base(s, target);
                        _cleanup_free_ char *path = NULL;
                        char **l;
                        size_t n = 0;

                        if (s->def->disks[i].location != SNAPSHOT_LOCATION_EXTERNAL || !base)
                                continue;
                        if (asprintf(&path, "%s/%s.%s.r%08x.qcow2", d->config->images_dir, snapshot_name(s), target,
                                     tag) < 0)
                                return ext_fail(j, "Out of memory", NULL);
                        for (l = e->created; l && *l; l++)
                                n++;
                        l = reallocarray(e->created, n + 2, sizeof(char *));
                        if (!l)
                                return ext_fail(j, "Out of memory", NULL);
                        e->created = l;
                        l[n] = strdup(path);
                        l[n + 1] = NULL;
                        /* Named before it exists: a recovery removes it if we die now. */
                        if (revert_job_journal(j) && journal_set(revert_job_journal(j), "created", created_json(e)) < 0)
                                return ext_fail(j, "Cannot write the job journal", NULL);
                        r = create_overlay(base, snapshot_base_format(s, target) ?: "qcow2", path);
                        if (r < 0)
                                return ext_fail(j, "Cannot create a new overlay over", base);
                        r = domain_set_active_disk(d, target, path, "qcow2");
                        if (r < 0)
                                return ext_fail(j, "Cannot record the new image of disk", target);
                        log_info("Domain '%s': disk '%s' now runs on '%s' over '%s'.", domain_name(d), target, path, base);
                }
                e->step = EXT_LAUNCH;
                return ext_next(j);
        }

        case EXT_LAUNCH: {
                bool memory = s->def->memory == SNAPSHOT_LOCATION_EXTERNAL;

                /* Paused until the memory is in, or as the caller wants it. */
                r = domain_managed_spawn(d, memory, memory || !revert_job_want_running(j, !streq_ptr(s->def->state, "paused")));
                if (r < 0)
                        return ext_fail(j, "Cannot start QEMU for domain", domain_name(d));
                d->launch_cb = on_launch;
                d->launch_userdata = j;
                domain_connect_soon(d);
                return;
        }

        case EXT_CAPS:
                (void) domain_send_progress(d, "snapshot-revert", "memory", 0, 0, 0);
                return revert_job_qmp(j, "migrate-set-capabilities",
                                      json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "events", "state", 1), -1,
                                      on_step_reply);

        case EXT_GETFD:
                e->memory_fd = open(s->def->memory_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (e->memory_fd < 0 || save_image_read_header(e->memory_fd, &h, NULL) < 0 ||
                    save_image_stream_offset(&h, &offset) < 0 || lseek(e->memory_fd, (off_t) offset, SEEK_SET) < 0)
                        return ext_fail(j, "Cannot read memory image", s->def->memory_file);
                e->was_running = h.was_running;
                return revert_job_qmp(j, "getfd", json_pack("{s:s}", "fdname", "snapshotd-revert"), e->memory_fd,
                                      on_step_reply);

        case EXT_INCOMING:
                return revert_job_qmp(j, "migrate-incoming", json_pack("{s:s}", "uri", "fd:snapshotd-revert"), -1,
                                      on_step_reply);

        case EXT_WAIT:
                if (!e->ev_completed)
                        return; /* the MIGRATION event moves us on */
                e->step = EXT_STATE;
                return ext_next(j);

        case EXT_STATE: {
                bool memory = s->def->memory == SNAPSHOT_LOCATION_EXTERNAL;
                bool run = revert_job_want_running(j, memory ? e->was_running : !streq_ptr(s->def->state, "paused"));

                e->step = EXT_DONE;
                if (run && memory) {
                        (void) domain_send_progress(d, "snapshot-revert", "resume", 0, 0, 0);
                        return revert_job_qmp(j, "cont", NULL, -1, on_step_reply);
                }
                return ext_next(j);
        }

        case EXT_DONE:
        default:
                /* Nothing the revert replaced is deleted; its overlays stay for other snapshots. */
                strv_free(e->created);
                e->created = NULL;
                return revert_job_finish(j);
        }
}

void revert_external_start(RevertJob *j) {
        RevertExternal *e = revert_job_external(j);
        Domain *d = revert_job_domain(j);
        Journal *jn = revert_job_journal(j);

        e->active = true;
        e->memory_fd = -1;
        e->failpoint_step = -1;
        e->step = EXT_STOP;
        /* Before anything stops: each disk's image now, to go back to. */
        e->previous = json_array();
        for (size_t i = 0; e->previous && i < d->n_active; i++)
                json_array_append_new(e->previous, json_pack("{s:s, s:s, s:s}", "target", d->active[i].target,
                                                             "file", d->active[i].file, "format", d->active[i].format));
        if (!e->previous)
                return revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
        if (jn && (journal_put(jn, "external", json_true()) < 0 ||
                   journal_set(jn, "previous", json_incref(e->previous)) < 0))
                return revert_job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot write the job journal");
        ext_next(j);
}

void revert_external_clear(RevertExternal *e) {
        if (e->memory_fd > 0)
                close(e->memory_fd);
        strv_free(e->created);
        e->created = NULL;
        json_decref(e->previous);
        e->previous = NULL;
}
