/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain-config.h"
#include "domain.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "polkit.h"
#include "snapshot.h"

int manager_new(Manager **ret, sd_event *event, const char *config_dir, const char *state_dir, const char *runtime_dir) {
        _cleanup_(manager_freep) Manager *m = NULL;

        m = calloc(1, sizeof(Manager));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->config_dir = strdup(config_dir);
        m->state_dir = strdup(state_dir);
        m->runtime_dir = strdup(runtime_dir);
        if (!m->config_dir || !m->state_dir || !m->runtime_dir)
                return -ENOMEM;

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        for (size_t i = 0; i < m->n_domains; i++)
                domain_free(m->domains[i]);
        free(m->domains);

        sd_event_source_disable_unref(m->idle_timer);
        sd_event_source_disable_unref(m->exit_timer);
        polkit_registry_free(m->polkit);
        sd_bus_flush_close_unref(m->bus);
        sd_event_unref(m->event);
        free(m->config_dir);
        free(m->state_dir);
        free(m->runtime_dir);
        free(m);
        return NULL;
}

Domain *manager_find_domain(Manager *m, const char *name) {
        for (size_t i = 0; i < m->n_domains; i++)
                if (streq(domain_name(m->domains[i]), name))
                        return m->domains[i];
        return NULL;
}

int manager_add_domain(Manager *m, Domain *d) {
        Domain **l;

        l = reallocarray(m->domains, m->n_domains + 1, sizeof(Domain *));
        if (!l)
                return -ENOMEM;
        m->domains = l;
        m->domains[m->n_domains++] = d;
        if (m->bus)
                (void) sd_bus_emit_object_added(m->bus, d->path);
        return 0;
}

void manager_remove_domain(Manager *m, Domain *d) {
        for (size_t i = 0; i < m->n_domains; i++)
                if (m->domains[i] == d) {
                        memmove(m->domains + i, m->domains + i + 1, (m->n_domains - i - 1) * sizeof(Domain *));
                        m->n_domains--;
                        break;
                }
        if (m->bus) {
                for (size_t i = 0; i < d->n_snapshots; i++)
                        (void) sd_bus_emit_object_removed(m->bus, d->snapshots[i]->path);
                (void) sd_bus_emit_object_removed(m->bus, d->path);
        }
}

static bool config_equal(const DomainConfig *a, const DomainConfig *b) {
        return streq_ptr(a->name, b->name) && streq_ptr(a->qmp_socket, b->qmp_socket) &&
               streq_ptr(a->agent_socket, b->agent_socket) && streq_ptr(a->images_dir, b->images_dir);
}

int manager_load_config(Manager *m) {
        DomainConfig **configs = NULL;
        _cleanup_strv_free_ char **bad = NULL;
        bool loaded = false;
        size_t n = 0;
        int r;

        r = domain_config_load_dir(m->config_dir, &configs, &n, &bad);
        if (r < 0)
                return log_error_errno(r, "Failed to read config directory '%s': %m", m->config_dir);
        for (char **b = bad; b && *b; b++)
                log_warning("Ignoring domain config '%s/%s': not a valid domain config named after its file.",
                            m->config_dir, *b);

        /* Domains whose file went away or changed: drop them, unless busy. */
        for (size_t i = m->n_domains; i > 0; i--) {
                Domain *d = m->domains[i - 1];
                const DomainConfig *c = NULL;

                if (d->runtime)
                        continue;
                for (size_t j = 0; j < n; j++)
                        if (configs[j] && streq(configs[j]->name, domain_name(d)))
                                c = configs[j];
                if (c && config_equal(c, d->config))
                        continue;
                if (domain_busy(d)) {
                        log_warning("Domain '%s' changed on disk but a job runs on it; keeping the old config.",
                                    domain_name(d));
                        continue;
                }
                log_info("Domain '%s' %s.", domain_name(d), c ? "changed, reloading it" : "removed from the config directory");
                manager_remove_domain(m, d);
                domain_free(d);
        }

        for (size_t j = 0; j < n; j++) {
                Domain *d = NULL;
                Domain *old;

                if (!configs[j])
                        continue;
                old = manager_find_domain(m, configs[j]->name);
                if (old) {
                        if (old->runtime)
                                log_warning("Domain '%s' is in the config directory but was registered at run time; keeping the registered one.",
                                            configs[j]->name);
                        domain_config_free(configs[j]);
                        continue;
                }

                r = domain_new(&d, m, configs[j]);
                if (r < 0) {
                        log_error_errno(r, "Failed to set up domain '%s': %m", configs[j]->name);
                        continue;
                }
                r = domain_load_snapshots(d);
                if (r < 0) {
                        log_error_errno(r, "Failed to load snapshots of domain '%s': %m", domain_name(d));
                        domain_free(d);
                        continue;
                }
                if (r > 0)
                        log_warning("Domain '%s': skipped %d unreadable snapshot record(s).", domain_name(d), r);
                r = manager_add_domain(m, d);
                if (r < 0) {
                        domain_free(d);
                        return log_oom();
                }
                (void) domain_start(d);
                log_info("Domain '%s' loaded with %zu snapshot(s).", domain_name(d), d->n_snapshots);
                loaded = true;
        }
        free(configs);
        /* Parsing every record left free pages between the records kept (and in the loader
         * threads' malloc arenas, see snapshot_store_load()): give them back. */
        if (loaded)
                (void) malloc_trim(0);
        return 0;
}

#define EXIT_JOB_WAIT_USEC (120 * USEC_PER_SEC)

bool manager_has_jobs(Manager *m) {
        for (size_t i = 0; i < m->n_domains; i++)
                if (domain_busy(m->domains[i]))
                        return true;
        return false;
}

static int on_exit_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("Jobs still running %llus after the stop request; exiting anyway.",
                    (unsigned long long) (EXIT_JOB_WAIT_USEC / USEC_PER_SEC));
        return sd_event_exit(m->event, 0);
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        return manager_request_exit(userdata);
}

int manager_add_signals(Manager *m) {
        int r;

        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_exit_signal, m);
        if (r < 0)
                return r;
        return sd_event_add_signal(m->event, NULL, SIGINT, on_exit_signal, m);
}

int manager_request_exit(Manager *m) {
        int r;

        if (!manager_has_jobs(m))
                return sd_event_exit(m->event, 0);
        if (m->exit_requested)
                return 0;

        /* Leaving mid-job would leave a frozen or paused guest and stray overlays: let the
         * jobs finish or roll back first. */
        m->exit_requested = true;
        log_info("Stop requested; waiting for running jobs to end.");
        r = sd_event_add_time_relative(m->event, &m->exit_timer, CLOCK_MONOTONIC, EXIT_JOB_WAIT_USEC, 0,
                                       on_exit_timer, m);
        if (r < 0)
                return sd_event_exit(m->event, 0);
        return 0;
}

void manager_job_ended(Manager *m) {
        if (m->exit_requested && !manager_has_jobs(m)) {
                (void) sd_event_exit(m->event, 0);
                return;
        }
        (void) manager_arm_idle(m);
}

bool manager_is_busy(Manager *m) {
        /* A pending authorization (maybe a person typing a password) is work in progress. */
        if (polkit_registry_n_pending(m->polkit) > 0)
                return true;
        for (size_t i = 0; i < m->n_domains; i++) {
                if (domain_busy(m->domains[i]))
                        return true;
                /* Runtime registrations live only in this process: exiting would lose them. */
                if (m->domains[i]->runtime)
                        return true;
        }
        return false;
}
