/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A domain: one QEMU that snapshotd snapshots, its QMP and agent connections, its state, its
 * snapshots and the one job that may run on it. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "agent.h"
#include "disk-cache.h"
#include "domain-config.h"
#include "qmp.h"
#include "snapshot-rules.h"
#include "snapshot-index.h"

typedef struct Manager Manager;
typedef struct Snapshot Snapshot;
typedef struct CreateJob CreateJob;
typedef struct StoreBatch StoreBatch;

typedef struct Domain {
        Manager *manager;
        DomainConfig *config;
        char *path;                     /* bus object path */

        bool runtime;                   /* registered over the bus, not from the config dir */

        Qmp *qmp;
        Agent *agent;
        DomainState state;
        bool stalled;           /* a QMP call timed out: state unknown until QEMU answers again */
        bool has_agent;
        sd_event_source *reconnect_timer;
        unsigned reconnect_attempt;

        DiskCache disk_cache;           /* QEMU's disks as of the last snapshot */

        /* managed domains (domain-managed.c) */
        pid_t pid;                      /* QEMU, when we started it in this process */
        sd_event_source *child_source;
        sd_event_source *stop_timer;
        int stop_stage;
        QemuDiskDef *active;            /* the image each disk runs on now */
        size_t n_active;
        sd_bus_message *pending_start;  /* Start/Stop calls waiting for QEMU */
        sd_bus_message *pending_stop;
        void (*launch_cb)(struct Domain *d, int error, void *userdata);  /* a revert waiting for QEMU */
        void *launch_userdata;

        Snapshot **snapshots;
        size_t n_snapshots;
        SnapshotIndex snapshots_by_name;        /* the same snapshots, by name */
        Snapshot *current;

        CreateJob *job;                 /* at most one job at a time: this one... */
        struct DeleteJob *delete_job;   /* ...or this one */
        struct RevertJob *revert_job;   /* ...or this one */
        struct Recovery *recovery;      /* ...or the rollback of one a dead snapshotd left */
} Domain;

int domain_new(Domain **ret, Manager *m, DomainConfig *config /* taken */);
Domain *domain_free(Domain *d);
static inline void domain_freep(Domain **d) {
        if (*d)
                domain_free(*d);
}

const char *domain_name(Domain *d);
static inline bool domain_is_managed(const Domain *d) {
        return d->config->qemu != NULL;
}
void domain_connect_soon(Domain *d);
/* Starts connecting to QEMU; reconnects by itself when QEMU goes away. */
int domain_start(Domain *d);
/* Loads the domain's snapshots from the state dir and links the tree. Returns the number of
 * unreadable files skipped (the caller logs). */
int domain_load_snapshots(Domain *d);

Snapshot *domain_find_snapshot(Domain *d, const char *name);
int domain_add_snapshot(Domain *d, Snapshot *s);
void domain_remove_snapshot(Domain *d, Snapshot *s);
/* Snapshots below from (NULL: the whole forest) that pass the SNAPSHOT_LIST_* filters, parents
 * before children; recurse false: direct children only. */
int domain_list_snapshots(Domain *d, const Snapshot *from, uint64_t flags, bool recurse, Snapshot ***ret, size_t *ret_n);
/* Moves the current-snapshot mark (s may be NULL) and persists the change of both records. */
int domain_set_current(Domain *d, Snapshot *s);
/* The same for a caller that has written both records already: memory and signals only. */
void domain_current_moved(Domain *d, Snapshot *s);
/* Memory and signals now; both records queued in b (store-batch.h), for the caller to write. */
int domain_move_current(Domain *d, Snapshot *s, StoreBatch *b);

void domain_set_state(Domain *d, DomainState state);
void domain_set_has_agent(Domain *d, bool b);
const char *domain_job_name(Domain *d);
/* NoSpace: the domain holds --max-snapshots already. */
int domain_error_too_many_snapshots(Domain *d, sd_bus_error *error);
static inline bool domain_busy(Domain *d) {
        /* A managed domain's Start or Stop under way counts too (domain_managed_busy()). */
        return d->job || d->delete_job || d->revert_job || d->recovery || d->pending_start || d->pending_stop ||
               d->stop_timer;
}

/* Bus side (domain-dbus.c) */
extern const sd_bus_vtable domain_vtable[];
int domain_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found, sd_bus_error *error);
int domain_emit_changed(Domain *d, const char *property);
int domain_send_progress(Domain *d, const char *job, const char *phase, uint64_t processed, uint64_t remaining, uint64_t total);
