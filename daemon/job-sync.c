/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The create job's sync: the new files reach the disk, off the event loop.
 *
 * Two workers. The overlays' fdatasync starts as soon as they are written (job_prepare), so
 * it runs while QEMU opens them and switches the disks; the memory image's commit (fsync,
 * final magic) starts once the guest runs again, while QEMU's migration settings go back.
 * STEP_SYNC ends when all of them have: only then is the record written. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "domain.h"
#include "job-create-private.h"
#include "manager.h"
#include "save-image.h"
#include "snapshot-bus.h"

/* What a worker syncs; it owns this (the job may be gone before it ends). */
typedef struct SyncWork {
        int memory_fd;          /* a dup of the memory image's fd, or -1 */
        char **overlays;        /* the overlays we wrote (qcow2-overlay.c does not sync) */
} SyncWork;

static void sync_work_free(SyncWork *w);

static int sync_files(void *arg) {
        SyncWork *w = arg;
        int r = 0;

        for (char **p = w->overlays; p && *p; p++) {
                int fd = open(*p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

                if (fd < 0 || fdatasync(fd) < 0)
                        r = r ?: -errno;
                if (fd >= 0)
                        close(fd);
        }
        if (w->memory_fd >= 0) {
                int k = save_image_commit(w->memory_fd);

                r = r ?: k;
        }
        sync_work_free(w);
        return r;
}

static void sync_work_free(SyncWork *w) {
        if (!w)
                return;
        if (w->memory_fd >= 0)
                close(w->memory_fd);
        strv_free(w->overlays);
        free(w);
}

static SyncWork *sync_work_new(void) {
        SyncWork *w = calloc(1, sizeof(SyncWork));

        if (w)
                w->memory_fd = -1;
        return w;
}

/* The job goes on when the last of the syncs and the settings' restore is done. */
static void sync_and_restore_done(CreateJob *j) {
        int r = j->sync_error < 0 ? j->sync_error : j->overlay_sync_error;

        if (j->step != STEP_SYNC || j->undoing || j->sync_pending || j->restore_pending || j->overlay_sync_pending)
                return;
        if (r < 0) {
                const char *name = r == -ENOSPC ? SNAPSHOT_ERROR_NO_SPACE : SNAPSHOT_ERROR_FAILED;

                if (j->sync_error < 0)
                        return job_fail(j, name, "Cannot write memory image '%s' to disk: %s", j->memory_file,
                                        strerror(-r));
                return job_fail(j, name, "Cannot write the new overlays to disk: %s", strerror(-r));
        }
        j->step = STEP_RESTORE;
        job_next(j);
}

/* Runs w on a worker (done comes back on the loop), or right here if no thread starts. */
static void sync_start(CreateJob *j, SyncWork *w, Worker **worker, bool *pending, int *error,
                       worker_done_fn done) {
        *pending = true;
        if (worker_start(worker, j->domain->manager->event, sync_files, w, done, j) < 0) {
                *pending = false;
                *error = sync_files(w);
        }
}

static void on_overlays_synced(int r, void *userdata) {
        CreateJob *j = userdata;

        j->overlay_worker = NULL;
        j->overlay_sync_pending = false;
        j->overlay_sync_error = r < 0 ? r : 0;
        sync_and_restore_done(j);
}

int job_overlays_sync_start(CreateJob *j) {
        SyncWork *w = sync_work_new();
        size_t n = 0;

        if (!w)
                return -ENOMEM;
        w->overlays = calloc(j->n_disks + 1, sizeof(char *));
        if (!w->overlays) {
                sync_work_free(w);
                return -ENOMEM;
        }
        for (size_t i = 0; i < j->n_disks; i++)
                if (j->disks[i].file_created && !(w->overlays[n++] = strdup(j->disks[i].overlay))) {
                        sync_work_free(w);
                        return -ENOMEM;
                }
        if (n == 0) {
                sync_work_free(w);
                return 0;
        }
        sync_start(j, w, &j->overlay_worker, &j->overlay_sync_pending, &j->overlay_sync_error, on_overlays_synced);
        return 0;
}

static void on_synced(int r, void *userdata) {
        CreateJob *j = userdata;

        j->worker = NULL;
        j->sync_pending = false;
        j->sync_error = r < 0 ? r : 0;
        sync_and_restore_done(j);
}

void job_sync_next(CreateJob *j) {
        SyncWork *w;
        int r;

        if (j->plan.memory == SNAPSHOT_LOCATION_EXTERNAL && j->memory_fd >= 0) {
                w = sync_work_new();
                if (!w)
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Out of memory");
                w->memory_fd = fcntl(j->memory_fd, F_DUPFD_CLOEXEC, 3);
                if (w->memory_fd < 0) {
                        r = -errno;
                        sync_work_free(w);
                        return job_fail(j, SNAPSHOT_ERROR_FAILED, "Cannot sync memory image '%s': %s", j->memory_file,
                                        strerror(-r));
                }
                job_progress(j, "sync", 0, 0);
                sync_start(j, w, &j->worker, &j->sync_pending, &j->sync_error, on_synced);
        }
        (void) job_memory_restore_begin(j);
        /* (A checkpoint's record is not staged while the image syncs: an fsync on the loop
         * then waits for the file system's journal, which waits for the image: ~85 ms of a
         * loop that answers other callers. It is written once the image is on disk.) */
        sync_and_restore_done(j);
}

void job_sync_restored(CreateJob *j) {
        sync_and_restore_done(j);
}
