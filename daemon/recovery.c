/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Finishing what a dead snapshotd left. A delete or a revert is resumed by its own job
 * (job-delete.c, job-revert.c). A create job's journal (journal.h) says what the job
 * had done when it died. Recovery, when the domain's QEMU is reachable again:
 *   thaw the guest if it was frozen; cancel a memory save and put the migration settings
 *   back; then look at QEMU's block graph — if the disks had already switched to the new
 *   overlays, the snapshot is finished (its record, kept in the journal, is written; a memory
 *   image that never completed is dropped and the snapshot kept as disk-only); otherwise
 *   every node and file the job created is removed; resume a guest the job paused; delete
 *   the journal.
 * Every action tolerates having been done already, so dying during recovery is fine: the
 * journal is deleted last. Each action is logged on one line. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "domain.h"
#include "job-delete.h"
#include "job-revert.h"
#include "journal.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "migration-cancel.h"
#include "recovery.h"
#include "save-image.h"
#include "snapshot-bus.h"
#include "snapshot-store.h"
#include "snapshot.h"

#define POLL_USEC (50 * USEC_PER_MSEC)
#define MAX_POLLS 200

typedef enum RecoveryStep {
        REC_THAW,
        REC_MIGRATION,
        REC_MIGRATION_WAIT,
        REC_CAPS,
        REC_PARAMS,
        REC_BLOCKS,
        REC_NODES,
        REC_STATUS,
        REC_DONE,
} RecoveryStep;

struct Recovery {
        Domain *domain;
        json_t *journal;
        RecoveryStep step;
        bool committed;
        size_t node_cursor;
        unsigned polls;
        sd_event_source *timer;
};

static void recovery_next(Recovery *rc);

Recovery *recovery_free(Recovery *rc) {
        if (!rc)
                return NULL;
        json_decref(rc->journal);
        sd_event_source_disable_unref(rc->timer);
        free(rc);
        return NULL;
}

static const char *jstr(Recovery *rc, const char *key) {
        return json_string_value(json_object_get(rc->journal, key));
}

static bool jbool(Recovery *rc, const char *key) {
        return json_is_true(json_object_get(rc->journal, key));
}

/* Is path recorded by a snapshot that exists (then it is not ours to remove)? */
static bool file_in_use(Domain *d, const char *path) {
        for (size_t i = 0; i < d->n_snapshots; i++) {
                const SnapshotDef *def = d->snapshots[i]->def;

                if (streq_ptr(def->memory_file, path))
                        return true;
                for (size_t k = 0; k < def->n_disks; k++)
                        if (streq_ptr(def->disks[k].file, path))
                                return true;
                for (size_t k = 0; k < def->domain.n_disks; k++)
                        if (streq_ptr(def->domain.disks[k].file, path))
                                return true;
        }
        return false;
}

static void remove_files(Recovery *rc) {
        Domain *d = rc->domain;
        json_t *files = json_object_get(rc->journal, "files"), *f;
        const char *mem = jstr(rc, "memory_file");
        size_t i;

        json_array_foreach(files, i, f) {
                const char *path = json_string_value(f);

                if (!path || file_in_use(d, path))
                        continue;
                if (unlink(path) >= 0)
                        log_info("Domain '%s': recovery removed overlay '%s'.", domain_name(d), path);
        }
        if (mem && !file_in_use(d, mem) && unlink(mem) >= 0)
                log_info("Domain '%s': recovery removed memory image '%s'.", domain_name(d), mem);
}

/* The disks had switched: write the snapshot's record from the journal. */
static void roll_forward(Recovery *rc) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        Domain *d = rc->domain;
        Manager *m = d->manager;
        const char *xml = jstr(rc, "def");
        Snapshot *s = NULL;
        int r;

        if (!xml || snapshot_xml_parse(xml, strlen(xml), &def) < 0) {
                log_error("Domain '%s': recovery found the disks switched to new overlays but no usable record in the journal; "
                          "the overlays stay in use.", domain_name(d));
                return;
        }
        if (domain_find_snapshot(d, def->name))
                return; /* already written before we died */

        if (def->memory == SNAPSHOT_LOCATION_EXTERNAL) {
                _cleanup_close_ int fd = def->memory_file ? open(def->memory_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
                SaveImageHeader h;

                if (fd < 0 || save_image_read_header(fd, &h, NULL) < 0) {
                        /* The disks are a consistent point in time, the memory is not: keep
                         * what is whole, as a disk-only snapshot. */
                        log_warning("Domain '%s': recovery keeps '%s' as a disk-only snapshot: its memory image never completed.",
                                    domain_name(d), def->name);
                        if (def->memory_file)
                                (void) unlink(def->memory_file);
                        free(def->memory_file);
                        def->memory_file = NULL;
                        def->memory = SNAPSHOT_LOCATION_NO;
                        free(def->state);
                        def->state = strdup("disk-snapshot");
                        if (!def->state)
                                return (void) log_oom();
                }
        }

        def->current = true;
        r = snapshot_store_save(m->state_dir, domain_name(d), def);
        if (r < 0) {
                log_error_errno(r, "Domain '%s': recovery cannot write the record of '%s': %m", domain_name(d), def->name);
                return;
        }
        r = snapshot_new(&s, d, TAKE_PTR(def));
        if (r >= 0)
                r = domain_add_snapshot(d, s);
        if (r < 0) {
                snapshot_free(s);
                log_oom();
                return;
        }
        s->parent = s->def->parent ? domain_find_snapshot(d, s->def->parent) : NULL;
        (void) sd_bus_emit_object_added(m->bus, s->path);
        (void) domain_set_current(d, s);
        (void) manager_send_snapshot_created(m, d->path, s->path);
        log_info("Domain '%s': recovery finished snapshot '%s' (its disks had already switched over).",
                 domain_name(d), snapshot_name(s));
}

static void on_agent_reply(Agent *a, json_t *reply, const QmpError *err, void *userdata) {
        Recovery *rc = userdata;

        if (!err)
                log_info("Domain '%s': recovery thawed the guest's file systems.", domain_name(rc->domain));
        recovery_next(rc);
}

static void on_reply(Qmp *q, json_t *reply, const QmpError *err, void *userdata);

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Recovery *rc = userdata;

        if (qmp_call(rc->domain->qmp, "query-migrate", NULL, -1, 0, on_reply, rc, NULL) < 0) {
                rc->step = REC_CAPS;
                recovery_next(rc);
        }
        return 0;
}

static void on_reply(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        Recovery *rc = userdata;
        Domain *d = rc->domain;
        json_t *nodes, *dev;
        size_t i;

        switch (rc->step) {
        case REC_MIGRATION_WAIT: {
                const char *st = err ? NULL : json_string_value(json_object_get(reply, "status"));

                /* Still cancelling half a second on: QEMU may have lost the cancel's wake-up. */
                if (st && streq(st, "cancelling") && rc->polls % 10 == 9)
                        (void) migration_cancel_nudge(d->qmp, NULL, NULL, NULL);
                if (st && (streq(st, "active") || streq(st, "pre-switchover") || streq(st, "device") ||
                           streq(st, "cancelling") || streq(st, "setup")) && rc->polls++ < MAX_POLLS) {
                        rc->timer = sd_event_source_disable_unref(rc->timer);
                        if (sd_event_add_time_relative(d->manager->event, &rc->timer, CLOCK_MONOTONIC, POLL_USEC, 0,
                                                       on_poll_timer, rc) >= 0)
                                return;
                }
                log_info("Domain '%s': recovery cancelled the memory save.", domain_name(d));
                rc->step = REC_CAPS;
                break;
        }
        case REC_BLOCKS:
                nodes = json_object_get(rc->journal, "nodes");
                json_array_foreach(reply, i, dev) {
                        const char *top = json_string_value(json_object_get(json_object_get(dev, "inserted"), "node-name"));
                        json_t *images = json_object_get(json_object_get(json_object_get(dev, "inserted"), "image"), "snapshots");
                        size_t k;
                        json_t *n;

                        json_array_foreach(nodes, k, n)
                                if (streq_ptr(json_string_value(n), top))
                                        rc->committed = true;
                        json_array_foreach(images, k, n)
                                if (jstr(rc, "internal") &&
                                    streq_ptr(json_string_value(json_object_get(n, "name")), jstr(rc, "internal")))
                                        rc->committed = true;
                }
                if (rc->committed)
                        roll_forward(rc);
                rc->step = rc->committed ? REC_STATUS : REC_NODES;
                rc->node_cursor = 0;
                break;
        case REC_NODES:
                break; /* blockdev-del of a node QEMU never had fails: fine */
        case REC_STATUS: {
                const char *st = err ? NULL : json_string_value(json_object_get(reply, "status"));

                rc->step = REC_DONE;
                if (st && !streq(st, "running") && jbool(rc, "was_running")) {
                        (void) qmp_call(d->qmp, "cont", NULL, -1, 0, NULL, NULL, NULL);
                        log_info("Domain '%s': recovery resumed the guest (it was %s).", domain_name(d), st);
                }
                break;
        }
        default:
                rc->step++;
        }
        recovery_next(rc);
}

static void recovery_next(Recovery *rc) {
        Domain *d = rc->domain;
        json_t *mig = json_object_get(rc->journal, "migration");
        json_t *nodes;
        int r;

        switch (rc->step) {
        case REC_THAW:
                rc->step = REC_MIGRATION;
                if (jbool(rc, "froze") && d->agent &&
                    agent_call(d->agent, "guest-fsfreeze-thaw", NULL, 10 * USEC_PER_SEC, on_agent_reply, rc, NULL) >= 0)
                        return;
                return recovery_next(rc);

        case REC_MIGRATION:
                if (!mig) {
                        rc->step = REC_BLOCKS;
                        return recovery_next(rc);
                }
                (void) migration_cancel(d->qmp);
                rc->step = REC_MIGRATION_WAIT;
                r = qmp_call(d->qmp, "query-migrate", NULL, -1, 0, on_reply, rc, NULL);
                break;

        case REC_MIGRATION_WAIT:
                return;

        case REC_CAPS:
                if (!json_object_get(mig, "caps")) {
                        rc->step = REC_BLOCKS;
                        return recovery_next(rc);
                }
                r = qmp_call(d->qmp, "migrate-set-capabilities",
                             json_pack("{s:O}", "capabilities", json_object_get(mig, "caps")), -1, 0, on_reply, rc, NULL);
                break;

        case REC_PARAMS:
                log_info("Domain '%s': recovery restored the migration settings.", domain_name(d));
                r = qmp_call(d->qmp, "migrate-set-parameters", json_incref(json_object_get(mig, "params")), -1, 0,
                             on_reply, rc, NULL);
                break;

        case REC_BLOCKS:
                r = qmp_call(d->qmp, "query-block", NULL, -1, 0, on_reply, rc, NULL);
                break;

        case REC_NODES:
                /* Format nodes first (they hold their file nodes); the journal lists each
                 * format node before its file node. */
                nodes = json_object_get(rc->journal, "nodes");
                if (rc->node_cursor < json_array_size(nodes)) {
                        const char *n = json_string_value(json_array_get(nodes, rc->node_cursor++));

                        r = qmp_call(d->qmp, "blockdev-del", json_pack("{s:s}", "node-name", n), -1, 0, on_reply, rc, NULL);
                        break;
                }
                remove_files(rc);
                rc->step = REC_STATUS;
                return recovery_next(rc);

        case REC_STATUS:
                if (!jbool(rc, "paused") && !mig && !jstr(rc, "internal")) {
                        rc->step = REC_DONE;
                        return recovery_next(rc);
                }
                r = qmp_call(d->qmp, "query-status", NULL, -1, 0, on_reply, rc, NULL);
                break;

        case REC_DONE:
        default:
                r = journal_delete(d->manager->state_dir, domain_name(d));
                if (r < 0)
                        log_warning_errno(r, "Domain '%s': cannot delete the job journal: %m", domain_name(d));
                log_info("Domain '%s': recovered from an interrupted '%s' of snapshot '%s'.", domain_name(d),
                         strempty(jstr(rc, "job")), strempty(jstr(rc, "snapshot")));
                d->recovery = recovery_free(d->recovery);
                (void) domain_emit_changed(d, "Job");
                manager_job_ended(d->manager);
                return;
        }

        if (r < 0) {
                /* QEMU went away again: the journal stays for the next time. */
                log_warning_errno(r, "Domain '%s': recovery interrupted, will retry when QEMU is back: %m", domain_name(d));
                d->recovery = recovery_free(d->recovery);
                (void) domain_emit_changed(d, "Job");
        }
}

int domain_recover(Domain *d, bool qemu_reachable) {
        json_t *journal = NULL;
        const char *job;
        Recovery *rc;
        int r;

        if (d->recovery || d->delete_job || d->revert_job)
                return 0;
        r = journal_load(d->manager->state_dir, domain_name(d), &journal);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return log_warning_errno(r, "Domain '%s': cannot read the job journal: %m", domain_name(d));

        job = json_string_value(json_object_get(journal, "job"));
        if (streq_ptr(job, "snapshot-delete") || streq_ptr(job, "snapshot-revert")) {
                /* These go forward, not back: the job itself is run again from its journal. */
                /* An external revert restarts QEMU itself: it needs none running. */
                if (!qemu_reachable && !json_is_true(json_object_get(journal, "external")))
                        r = 0;
                else if (streq(job, "snapshot-delete"))
                        r = delete_job_resume(d, journal);
                else
                        r = revert_job_resume(d, journal);
                json_decref(journal);
                return r;
        }

        rc = calloc(1, sizeof(Recovery));
        if (!rc) {
                json_decref(journal);
                return log_oom();
        }
        rc->domain = d;
        rc->journal = journal;

        if (!qemu_reachable) {
                /* QEMU is gone with whatever it held: only our files are left to tidy, unless
                 * the disks had switched (we cannot tell without QEMU: keep the journal). */
                log_info("Domain '%s': an interrupted '%s' of snapshot '%s' waits for QEMU to be recovered.",
                         domain_name(d), strempty(jstr(rc, "job")), strempty(jstr(rc, "snapshot")));
                recovery_free(rc);
                return 0;
        }

        log_info("Domain '%s': recovering from an interrupted '%s' of snapshot '%s'.", domain_name(d),
                 strempty(jstr(rc, "job")), strempty(jstr(rc, "snapshot")));
        d->recovery = rc;
        (void) domain_emit_changed(d, "Job");
        recovery_next(rc);
        return 1;
}
