/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "domain.h"
#include "job-settle.h"
#include "log.h"
#include "macro.h"
#include "manager.h"

#define POLL_USEC (100 * USEC_PER_MSEC)
/* A commit of a large overlay can take minutes; a cancelled one stops within a poll or two. */
#define MAX_POLLS 3000

struct JobSettle {
        Domain *domain;
        char *prefix;
        bool cancel;
        unsigned polls;
        json_t *seen;           /* id -> last job object */
        uint64_t call;
        sd_event_source *timer;
        job_settle_done_t done;
        void *userdata;
};

static void settle_poll(JobSettle *s);

JobSettle *job_settle_free(JobSettle *s) {
        if (!s)
                return NULL;
        if (s->call)
                qmp_cancel(s->domain->qmp, s->call);
        sd_event_source_disable_unref(s->timer);
        json_decref(s->seen);
        free(s->prefix);
        free(s);
        return NULL;
}

static bool ours(JobSettle *s, const char *id) {
        return id && strncmp(id, s->prefix, strlen(s->prefix)) == 0;
}

static void settle_end(JobSettle *s, int err) {
        json_t *jobs = json_array();
        const char *id;
        json_t *job;

        json_object_foreach(s->seen, id, job) {
                if (streq_ptr(json_string_value(json_object_get(job, "status")), "concluded"))
                        (void) qmp_call(s->domain->qmp, "job-dismiss", json_pack("{s:s}", "id", id), -1, 0, NULL, NULL,
                                        NULL);
                if (jobs)
                        (void) json_array_append(jobs, job);
        }
        s->done(s->userdata, jobs, jobs ? err : -ENOMEM);
        json_decref(jobs);
}

static int on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        settle_poll(userdata);
        return 0;
}

static void on_jobs(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        JobSettle *s = userdata;
        bool pending = false;
        size_t i;
        json_t *job;

        s->call = 0;
        if (err)
                return settle_end(s, err->error < 0 ? err->error : -EIO);

        json_array_foreach(reply, i, job) {
                const char *id = json_string_value(json_object_get(job, "id"));
                const char *status = json_string_value(json_object_get(job, "status"));

                if (!ours(s, id))
                        continue;
                (void) json_object_set(s->seen, id, job);
                if (streq_ptr(status, "concluded") || streq_ptr(status, "null"))
                        continue;
                pending = true;
                if (s->cancel && s->polls == 0) {
                        /* force: a mirror-style job in 'ready' would otherwise wait for us. */
                        log_info("Domain '%s': recovery cancels QEMU job '%s' (%s).", domain_name(s->domain), id,
                                 strempty(status));
                        (void) qmp_call(s->domain->qmp, "block-job-cancel", json_pack("{s:s, s:b}", "device", id, "force", 1),
                                        -1, 0, NULL, NULL, NULL);
                }
        }
        /* Jobs seen before and gone now were auto-dismissed: they ended. */
        if (!pending)
                return settle_end(s, 0);
        if (++s->polls > MAX_POLLS)
                return settle_end(s, -ETIMEDOUT);
        if (sd_event_add_time_relative(s->domain->manager->event, &s->timer, CLOCK_MONOTONIC, POLL_USEC,
                                       10 * USEC_PER_MSEC, on_timer, s) < 0)
                return settle_end(s, -ENOMEM);
}

static void settle_poll(JobSettle *s) {
        int r;

        s->timer = sd_event_source_disable_unref(s->timer);
        r = qmp_call(s->domain->qmp, "query-jobs", NULL, -1, 0, on_jobs, s, &s->call);
        if (r < 0)
                settle_end(s, r);
}

int job_settle(Domain *d, const char *id_prefix, bool cancel, job_settle_done_t done, void *userdata,
               JobSettle **ret) {
        JobSettle *s;

        s = calloc(1, sizeof(JobSettle));
        if (!s)
                return -ENOMEM;
        s->domain = d;
        s->cancel = cancel;
        s->done = done;
        s->userdata = userdata;
        s->prefix = strdup(id_prefix);
        s->seen = json_object();
        if (!s->prefix || !s->seen) {
                job_settle_free(s);
                return -ENOMEM;
        }
        *ret = s;
        settle_poll(s);
        return 0;
}
