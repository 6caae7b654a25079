/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Manager: the registry of domains, the bus connection, and the idle check. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

typedef struct Domain Domain;

typedef struct Manager {
        sd_event *event;
        sd_bus *bus;

        char *config_dir;
        char *state_dir;
        char *runtime_dir;              /* managed domains' sockets and logs */

        Domain **domains;
        size_t n_domains;

        uint64_t idle_timeout_usec;     /* 0: never exit on idle */
        unsigned max_snapshots;         /* per domain; 0: MANAGER_MAX_SNAPSHOTS_DEFAULT */
        uint64_t qmp_timeout_usec;      /* QMP calls' default timeout; 0: the client's (30 s) */
        sd_event_source *idle_timer;

        struct PolkitRegistry *polkit;  /* authorization checks in flight (polkit.c) */

        bool exit_requested;            /* SIGTERM came while jobs ran: exit when they end */
        sd_event_source *exit_timer;
} Manager;

/* Enough for years of nightly snapshots and for the 1,000-in-a-chain benchmark; a bound on
 * what one caller can make the daemon hold in memory. */
#define MANAGER_MAX_SNAPSHOTS_DEFAULT 10000U

static inline unsigned manager_max_snapshots(const Manager *m) {
        return m->max_snapshots ? m->max_snapshots : MANAGER_MAX_SNAPSHOTS_DEFAULT;
}

int manager_new(Manager **ret, sd_event *event, const char *config_dir, const char *state_dir, const char *runtime_dir);
Manager *manager_free(Manager *m);
static inline void manager_freep(Manager **m) {
        if (*m)
                manager_free(*m);
}

/* Reads the config directory: adds new domains, drops those whose file went away (unless a
 * job runs on them or they were registered at run time), keeps the rest. */
int manager_load_config(Manager *m);

Domain *manager_find_domain(Manager *m, const char *name);
int manager_add_domain(Manager *m, Domain *d);
void manager_remove_domain(Manager *m, Domain *d);

/* Bus side (manager-dbus.c) */
int manager_connect_bus(Manager *m, const char *address);
int manager_bus_add_objects(Manager *m);
int manager_send_snapshot_created(Manager *m, const char *domain_path, const char *snapshot_path);
int manager_send_snapshot_deleted(Manager *m, const char *domain_path, const char *name);
bool manager_is_busy(Manager *m);
bool manager_has_jobs(Manager *m);
/* SIGTERM/SIGINT: exit now, or once the running jobs have finished or rolled back (bounded). */
int manager_request_exit(Manager *m);
int manager_add_signals(Manager *m);
/* Called by a job when it has ended. */
void manager_job_ended(Manager *m);
int manager_arm_idle(Manager *m);
