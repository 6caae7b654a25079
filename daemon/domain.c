/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "domain-managed.h"
#include "domain.h"
#include "job-create.h"
#include "job-delete.h"
#include "job-revert.h"
#include "log.h"
#include "recovery.h"
#include "macro.h"
#include "manager.h"
#include "snapshot-bus.h"
#include "snapshot-store.h"
#include "snapshot.h"
#include "store-batch.h"

#define RECONNECT_MIN_USEC (500 * USEC_PER_MSEC)
#define RECONNECT_MAX_USEC (10 * USEC_PER_SEC)
#define AGENT_PROBE_TIMEOUT_USEC (3 * USEC_PER_SEC)

static void domain_schedule_reconnect(Domain *d);
static void domain_connect_failed(Domain *d);

int domain_new(Domain **ret, Manager *m, DomainConfig *config) {
        _cleanup_(domain_config_freep) DomainConfig *owned = config;
        _cleanup_(domain_freep) Domain *d = NULL;
        int r;

        d = calloc(1, sizeof(Domain));
        if (!d)
                return -ENOMEM;
        d->manager = m;
        d->config = TAKE_PTR(owned);
        d->state = DOMAIN_STATE_UNKNOWN;

        r = sd_bus_path_encode(SNAPSHOT_DOMAIN_PREFIX, d->config->name, &d->path);
        if (r < 0)
                return r;

        if (domain_is_managed(d)) {
                /* Its sockets are ours to choose, under the runtime dir. */
                free(d->config->qmp_socket);
                free(d->config->agent_socket);
                d->config->agent_socket = NULL;
                if (asprintf(&d->config->qmp_socket, "%s/%s/qmp.sock", m->runtime_dir, d->config->name) < 0 ||
                    (d->config->qemu->agent &&
                     asprintf(&d->config->agent_socket, "%s/%s/qga.sock", m->runtime_dir, d->config->name) < 0))
                        return -ENOMEM;
                r = domain_managed_init(d);
                if (r < 0)
                        return r;
        }

        r = qmp_new(&d->qmp, m->event, d->config->qmp_socket);
        if (r < 0)
                return r;

        if (d->config->agent_socket) {
                r = agent_new(&d->agent, m->event, d->config->agent_socket);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(d);
        return 0;
}

Domain *domain_free(Domain *d) {
        if (!d)
                return NULL;

        create_job_free(d->job);
        d->job = NULL;
        d->delete_job = delete_job_free(d->delete_job);
        d->revert_job = revert_job_free(d->revert_job);
        d->recovery = recovery_free(d->recovery);

        for (size_t i = 0; i < d->n_snapshots; i++)
                snapshot_free(d->snapshots[i]);
        free(d->snapshots);
        snapshot_index_clear(&d->snapshots_by_name);

        disk_cache_clear(&d->disk_cache);
        domain_managed_done(d);
        if (d->pending_start)
                (void) sd_bus_reply_method_errorf(d->pending_start, SNAPSHOT_ERROR_FAILED, "snapshotd is stopping");
        sd_bus_message_unref(d->pending_start);
        if (d->pending_stop)
                (void) sd_bus_reply_method_errorf(d->pending_stop, SNAPSHOT_ERROR_FAILED, "snapshotd is stopping");
        sd_bus_message_unref(d->pending_stop);
        sd_event_source_disable_unref(d->reconnect_timer);
        agent_unref(d->agent);
        qmp_unref(d->qmp);
        domain_config_free(d->config);
        free(d->path);
        free(d);
        return NULL;
}

const char *domain_name(Domain *d) {
        return d->config->name;
}

int domain_error_too_many_snapshots(Domain *d, sd_bus_error *error) {
        return sd_bus_error_setf(error, SNAPSHOT_ERROR_NO_SPACE,
                                 "Domain '%s' has %zu snapshots, the most it may have (snapshotd --max-snapshots=%u); "
                                 "delete some first", domain_name(d), d->n_snapshots, manager_max_snapshots(d->manager));
}

const char *domain_job_name(Domain *d) {
        return d->job ? "snapshot-create" : d->delete_job ? "snapshot-delete" :
               d->revert_job ? "snapshot-revert" : d->recovery ? "recovery" : "";
}

void domain_set_state(Domain *d, DomainState state) {
        if (d->state == state)
                return;
        d->state = state;
        (void) domain_emit_changed(d, "State");
}

void domain_set_has_agent(Domain *d, bool b) {
        if (d->has_agent == b)
                return;
        d->has_agent = b;
        (void) domain_emit_changed(d, "HasAgent");
}

static void on_agent_probe(Agent *a, json_t *reply, const QmpError *err, void *userdata) {
        Domain *d = userdata;

        domain_set_has_agent(d, !err);
}

static void domain_probe_agent(Domain *d) {
        if (!d->agent)
                return;
        if (agent_call(d->agent, "guest-ping", NULL, AGENT_PROBE_TIMEOUT_USEC, on_agent_probe, d, NULL) < 0)
                domain_set_has_agent(d, false);
}

/* A Start or a revert waiting for QEMU: it is up, and State says what it is. */
static void domain_launch_done(Domain *d) {
        if (d->pending_start) {
                (void) sd_bus_reply_method_return(d->pending_start, NULL);
                d->pending_start = sd_bus_message_unref(d->pending_start);
        }
        if (d->launch_cb) {
                void (*cb)(Domain *, int, void *) = d->launch_cb;

                d->launch_cb = NULL;
                cb(d, 0, d->launch_userdata);
        }
}

static void on_query_status(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        Domain *d = userdata;
        const char *status;

        if (err) {
                domain_set_state(d, DOMAIN_STATE_UNKNOWN);
                return domain_launch_done(d);
        }

        status = json_string_value(json_object_get(reply, "status"));
        if (streq_ptr(status, "running"))
                domain_set_state(d, DOMAIN_STATE_RUNNING);
        else if (streq_ptr(status, "shutdown") || streq_ptr(status, "guest-panicked"))
                domain_set_state(d, DOMAIN_STATE_SHUTOFF);
        else if (status)
                /* paused, postmigrate, prelaunch, inmigrate, finish-migrate, ... */
                domain_set_state(d, DOMAIN_STATE_PAUSED);
        else
                domain_set_state(d, DOMAIN_STATE_UNKNOWN);
        domain_launch_done(d);
}

static void domain_refresh_state(Domain *d) {
        if (qmp_call(d->qmp, "query-status", NULL, -1, 0, on_query_status, d, NULL) < 0)
                domain_set_state(d, DOMAIN_STATE_UNKNOWN);
}

static void on_qmp_state(Qmp *q, bool connected, int error, void *userdata) {
        Domain *d = userdata;

        /* A new or lost connection: whatever we knew of QEMU's disks may be stale. */
        disk_cache_clear(&d->disk_cache);
        d->stalled = false;
        if (connected) {
                d->reconnect_attempt = 0;
                domain_refresh_state(d);
                domain_probe_agent(d);

                /* A job that died with the daemon: finish its rollback first. */
                (void) domain_recover(d, true);
                return;
        }

        /* An attached QEMU that went away is shut off; keep trying in case it comes back. */
        if (d->job)
                create_job_on_disconnect(d->job);
        if (d->revert_job)
                revert_job_on_disconnect(d->revert_job);
        domain_set_state(d, DOMAIN_STATE_SHUTOFF);
        domain_set_has_agent(d, false);
        domain_connect_failed(d);
}

static void on_qmp_event(Qmp *q, const char *event, json_t *data, void *userdata) {
        Domain *d = userdata;

        if (d->job)
                create_job_on_event(d->job, event, data);
        if (d->revert_job)
                revert_job_on_event(d->revert_job, event, data);
        if (d->delete_job) {
                delete_job_on_event(d->delete_job, event, data);
                if (d->delete_job)
                        delete_job_on_job_event(d->delete_job, event, data);
        }

        if (streq(event, "STOP"))
                domain_set_state(d, DOMAIN_STATE_PAUSED);
        else if (streq(event, "RESUME"))
                domain_set_state(d, DOMAIN_STATE_RUNNING);
        else if (streq(event, "SHUTDOWN"))
                domain_set_state(d, DOMAIN_STATE_SHUTOFF);
}

static int on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Domain *d = userdata;

        if (qmp_connect(d->qmp) < 0)
                domain_connect_failed(d);
        return 0;
}

static void domain_schedule_reconnect(Domain *d) {
        uint64_t delay = RECONNECT_MIN_USEC;
        int r;

        for (unsigned i = 0; i < d->reconnect_attempt && delay < RECONNECT_MAX_USEC; i++)
                delay *= 2;
        if (delay > RECONNECT_MAX_USEC)
                delay = RECONNECT_MAX_USEC;
        d->reconnect_attempt++;

        if (d->reconnect_timer) {
                r = sd_event_source_set_time_relative(d->reconnect_timer, delay);
                if (r >= 0)
                        r = sd_event_source_set_enabled(d->reconnect_timer, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time_relative(d->manager->event, &d->reconnect_timer, CLOCK_MONOTONIC,
                                               delay, 0, on_reconnect_timer, d);
        if (r < 0)
                /* Without a timer we cannot retry; the domain stays shut off until Reload. */
                return;
}

/* No QMP connection. An attached QEMU may come back: keep trying. A managed one whose process
 * is gone stays shut off until Start (one we did not start ourselves, found after a restart,
 * is not our child: losing its socket is how we learn it ended); while the process exists
 * (starting, or started by an earlier snapshotd) its socket will answer. */
static void domain_connect_failed(Domain *d) {
        if (domain_is_managed(d) && !domain_managed_alive(d)) {
                domain_managed_lost(d);
                /* A revert a dead snapshotd left may have stopped QEMU: it goes on without. */
                (void) domain_recover(d, false);
                return;
        }
        domain_schedule_reconnect(d);
}

void domain_managed_exited(Domain *d) {
        if (d->pending_stop) {
                (void) sd_bus_reply_method_return(d->pending_stop, NULL);
                d->pending_stop = sd_bus_message_unref(d->pending_stop);
        }
        if (d->pending_start) {
                (void) sd_bus_reply_method_errorf(d->pending_start, SNAPSHOT_ERROR_FAILED,
                                                  "QEMU of domain '%s' exited before it answered; see %s/%s/qemu.log",
                                                  domain_name(d), d->manager->runtime_dir, domain_name(d));
                d->pending_start = sd_bus_message_unref(d->pending_start);
        }
        if (d->launch_cb) {
                void (*cb)(Domain *, int, void *) = d->launch_cb;

                d->launch_cb = NULL;
                cb(d, -ECHILD, d->launch_userdata);
        }
}

/* Right after spawning QEMU: its socket appears within moments. */
void domain_connect_soon(Domain *d) {
        d->reconnect_attempt = 0;
        if (d->reconnect_timer) {
                (void) sd_event_source_set_time_relative(d->reconnect_timer, 50 * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(d->reconnect_timer, SD_EVENT_ONESHOT);
        } else
                (void) sd_event_add_time_relative(d->manager->event, &d->reconnect_timer, CLOCK_MONOTONIC,
                                                  50 * USEC_PER_MSEC, 0, on_reconnect_timer, d);
}

/* QEMU answers again after a stall: its state as it is now, and a job that could not finish
 * its undo while QEMU was silent gets its recovery. */
static void on_stall_probe(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        Domain *d = userdata;

        if (err)
                return; /* a timeout comes back through on_qmp_stall: probe again then */
        d->stalled = false;
        log_info("Domain '%s': QEMU answers again.", domain_name(d));
        on_query_status(q, reply, NULL, d);
        if (!domain_busy(d))
                (void) domain_recover(d, true);
}

/* A QMP call timed out. QEMU is hung (or stopped): say so rather than wait on it, and keep
 * asking, one query-status per timeout, until it answers. Other domains never wait on it. */
static void on_qmp_stall(Qmp *q, const char *command, void *userdata) {
        Domain *d = userdata;

        if (!d->stalled)
                log_warning("Domain '%s': QEMU did not answer '%s' in time; its state is unknown until it answers.",
                            domain_name(d), command);
        d->stalled = true;
        domain_set_state(d, DOMAIN_STATE_UNKNOWN);
        (void) qmp_call(d->qmp, "query-status", NULL, -1, 0, on_stall_probe, d, NULL);
}

int domain_start(Domain *d) {
        qmp_set_handlers(d->qmp, on_qmp_state, on_qmp_event, d);
        qmp_set_stall_handler(d->qmp, on_qmp_stall);
        qmp_set_default_timeout(d->qmp, d->manager->qmp_timeout_usec);
        if (qmp_connect(d->qmp) < 0) {
                domain_set_state(d, DOMAIN_STATE_SHUTOFF);
                domain_connect_failed(d);
        }
        return 0;
}

static int compare_creation(const void *a, const void *b) {
        const Snapshot *x = *(Snapshot *const *) a, *y = *(Snapshot *const *) b;

        if (x->def->creation_usec != y->def->creation_usec)
                return x->def->creation_usec < y->def->creation_usec ? -1 : 1;
        return strcmp(x->def->name, y->def->name);
}

int domain_load_snapshots(Domain *d) {
        SnapshotDef **defs = NULL;
        size_t n = 0, n_bad = 0;
        int r;

        r = snapshot_store_load(d->manager->state_dir, domain_name(d), &defs, &n, &n_bad);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                Snapshot *s = NULL;

                if (r >= 0 && !domain_find_snapshot(d, defs[i]->name)) {
                        r = snapshot_new(&s, d, TAKE_PTR(defs[i]));
                        if (r >= 0)
                                r = domain_add_snapshot(d, s);
                        if (r < 0)
                                snapshot_free(s);
                }
                snapshot_def_free(defs[i]);
        }
        free(defs);
        if (r < 0)
                return r;

        if (d->n_snapshots > 1)
                qsort(d->snapshots, d->n_snapshots, sizeof(Snapshot *), compare_creation);
        for (size_t i = 0; i < d->n_snapshots; i++)
                d->snapshots[i]->index = i;

        /* Link parents; a parent that is gone makes the snapshot a root. */
        d->current = NULL;
        for (size_t i = 0; i < d->n_snapshots; i++) {
                Snapshot *s = d->snapshots[i];

                s->parent = s->def->parent ? domain_find_snapshot(d, s->def->parent) : NULL;
                if (s->parent == s)
                        s->parent = NULL;
                if (s->def->current)
                        d->current = s;
        }
        /* Break any cycle a hand-edited store may hold, so tree walks always end. */
        for (size_t i = 0; i < d->n_snapshots; i++) {
                Snapshot *s = d->snapshots[i];
                size_t steps = 0;

                for (Snapshot *p = s->parent; p; p = p->parent)
                        if (++steps > d->n_snapshots) {
                                s->parent = NULL;
                                break;
                        }
        }

        return (int) n_bad;
}

Snapshot *domain_find_snapshot(Domain *d, const char *name) {
        return snapshot_index_get(&d->snapshots_by_name, name);
}

int domain_add_snapshot(Domain *d, Snapshot *s) {
        Snapshot **l;
        int r;

        l = reallocarray(d->snapshots, d->n_snapshots + 1, sizeof(Snapshot *));
        if (!l)
                return -ENOMEM;
        d->snapshots = l;
        /* Callers check the name is free first; a duplicate stays findable by the first one. */
        r = snapshot_index_put(&d->snapshots_by_name, s);
        if (r < 0 && r != -EEXIST)
                return r;
        s->index = d->n_snapshots;
        d->snapshots[d->n_snapshots++] = s;
        return 0;
}

void domain_remove_snapshot(Domain *d, Snapshot *s) {
        snapshot_index_remove(&d->snapshots_by_name, s);
        for (size_t i = 0; i < d->n_snapshots; i++)
                if (d->snapshots[i] == s) {
                        memmove(d->snapshots + i, d->snapshots + i + 1,
                                (d->n_snapshots - i - 1) * sizeof(Snapshot *));
                        d->n_snapshots--;
                        for (size_t k = i; k < d->n_snapshots; k++)
                                d->snapshots[k]->index = k;
                        break;
                }
        if (d->current == s)
                d->current = NULL;
}

int domain_set_current(Domain *d, Snapshot *s) {
        Snapshot *old = d->current;
        int r;

        if (old == s)
                return 0;

        /* Write the new mark first: after a crash between the two writes, two records claim
         * to be current and loading picks the newer, which is the one we meant. */
        if (s && !s->def->current) {
                s->def->current = true;
                r = snapshot_store_save(d->manager->state_dir, domain_name(d), s->def);
                if (r < 0) {
                        s->def->current = false;
                        return r;
                }
        }
        if (old) {
                old->def->current = false;
                r = snapshot_store_save(d->manager->state_dir, domain_name(d), old->def);
                if (r < 0)
                        return r;
        }
        domain_current_moved(d, s);
        return 0;
}

int domain_move_current(Domain *d, Snapshot *s, StoreBatch *b) {
        Snapshot *old = d->current;
        int r;

        if (old == s)
                return 0;
        domain_current_moved(d, s);
        /* The batch writes the marked record first (what domain_set_current() does by hand). */
        if (s) {
                r = store_batch_save(b, s->def);
                if (r < 0)
                        return r;
        }
        return old ? store_batch_save(b, old->def) : 0;
}

void domain_current_moved(Domain *d, Snapshot *s) {
        Snapshot *old = d->current;

        if (old == s)
                return;
        if (old)
                old->def->current = false;
        if (s)
                s->def->current = true;
        d->current = s;
        (void) domain_emit_changed(d, "CurrentSnapshot");
        if (old)
                (void) sd_bus_emit_properties_changed(d->manager->bus, old->path, SNAPSHOT_IFACE_SNAPSHOT, "IsCurrent", NULL);
        if (s)
                (void) sd_bus_emit_properties_changed(d->manager->bus, s->path, SNAPSHOT_IFACE_SNAPSHOT, "IsCurrent", NULL);
}
