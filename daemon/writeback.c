/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "worker.h"
#include "writeback.h"

/* Often enough that the disk always has the next part queued while QEMU writes at
 * several hundred MiB/s; each call only queues pages, so it is cheap when nothing is dirty. */
#define WRITEBACK_INTERVAL_NSEC (10 * 1000 * 1000L)
#define WRITEBACK_BEHIND (8 << 20)
#define WRITEBACK_ALIGN (1 << 20)
#define WRITEBACK_NICE 10

struct Writeback {
        int fd;
        Worker *worker;
        atomic_bool stop;
};

/* The thread owns wb from the moment stop is set (the loop side has let go by then). */
static int writeback_loop(void *arg) {
        Writeback *wb = arg;
        const struct timespec interval = { .tv_nsec = WRITEBACK_INTERVAL_NSEC };

        off_t done = 0;

        /* Submitting the writeback costs CPU in this thread; on a small machine the loop
         * thread's answers to other callers come first. */
        (void) setpriority(PRIO_PROCESS, (id_t) gettid(), WRITEBACK_NICE);

        while (!atomic_load(&wb->stop)) {
                struct stat st;

                /* QEMU appends: leave the last WRITEBACK_BEHIND alone, where it still writes
                 * (a page under writeback makes a writer wait for it). Errors (EIO, ENOSPC)
                 * are the save's to report, by its own fsync. */
                if (fstat(wb->fd, &st) >= 0 && st.st_size - WRITEBACK_BEHIND > done) {
                        off_t end = (st.st_size - WRITEBACK_BEHIND) & ~(off_t) (WRITEBACK_ALIGN - 1);

                        if (end > done && sync_file_range(wb->fd, done, end - done, SYNC_FILE_RANGE_WRITE) >= 0)
                                done = end;
                }
                (void) nanosleep(&interval, NULL);
        }
        close(wb->fd);
        free(wb);
        return 0;
}

static void on_writeback_done(int r, void *userdata) {
}

int writeback_start(Writeback **ret, sd_event *event, int fd) {
        Writeback *wb;
        int r;

        wb = calloc(1, sizeof(Writeback));
        if (!wb)
                return -ENOMEM;
        atomic_init(&wb->stop, false);
        wb->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (wb->fd < 0) {
                r = -errno;
                free(wb);
                return r;
        }
        r = worker_start(&wb->worker, event, writeback_loop, wb, on_writeback_done, NULL);
        if (r < 0) {
                close(wb->fd);
                free(wb);
                return r;
        }
        *ret = wb;
        return 0;
}

void writeback_stop(Writeback *wb) {
        if (!wb)
                return;
        /* Detach first: after stop is set the thread may free wb at any moment. */
        worker_detach(wb->worker);
        atomic_store(&wb->stop, true);
}
