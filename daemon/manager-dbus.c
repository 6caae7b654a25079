/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.example.Snapshot1.Manager, the object tree and the bus connection. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "domain-config.h"
#include "domain.h"
#include "errors.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "path-util.h"
#include "polkit.h"
#include "snapshot.h"

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int method_list_domains(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *mgr = userdata;
        int r;

        r = bus_authorize(m, SNAPSHOT_ACTION_LIST, NULL, NULL, &mgr->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "o");
        if (r < 0)
                return r;
        for (size_t i = 0; i < mgr->n_domains; i++) {
                r = sd_bus_message_append(reply, "o", mgr->domains[i]->path);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_get_domain(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Manager *mgr = userdata;
        const char *name;
        Domain *d;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        r = bus_authorize(m, SNAPSHOT_ACTION_LIST, name, NULL, &mgr->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */

        d = manager_find_domain(mgr, name);
        if (!d)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_NO_SUCH_DOMAIN, "No domain '%s'", name);
        return sd_bus_reply_method_return(m, "o", d->path);
}

static int read_register_options(sd_bus_message *m, DomainConfig *c, bool *persistent, sd_bus_error *error) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        for (;;) {
                const char *key, *contents;

                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, NULL, &contents);
                if (r < 0)
                        return r;

                if (streq(key, "agent-socket") || streq(key, "images-dir")) {
                        char **dst = streq(key, "agent-socket") ? &c->agent_socket : &c->images_dir;
                        const char *s;

                        if (!streq(contents, "s"))
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                         "Option '%s' must be of type 's', not '%s'", key, contents);
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r < 0)
                                return r;
                        if (s[0] != '/')
                                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                                         "Option '%s' must be an absolute path, not '%s'", key, s);
                        free(*dst);
                        *dst = strdup(s);
                        if (!*dst)
                                return -ENOMEM;
                } else if (streq(key, "persistent")) {
                        int b;

                        if (!streq(contents, "b"))
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                         "Option '%s' must be of type 'b', not '%s'", key, contents);
                        r = sd_bus_message_read(m, "v", "b", &b);
                        if (r < 0)
                                return r;
                        *persistent = b;
                } else
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown option '%s'", key);

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_exit_container(m);
}

static int method_register_domain(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(domain_config_freep) DomainConfig *c = NULL;
        _cleanup_(domain_freep) Domain *d = NULL;
        Manager *mgr = userdata;
        const char *name, *qmp_socket;
        bool persistent = false;
        int r;

        r = sd_bus_message_read(m, "ss", &name, &qmp_socket);
        if (r < 0)
                return r;

        c = calloc(1, sizeof(DomainConfig));
        if (!c)
                return -ENOMEM;
        r = read_register_options(m, c, &persistent, error);
        if (r < 0)
                return r;

        if (!snapshot_name_is_valid(name))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT, "Invalid domain name '%s'", name);
        r = bus_authorize(m, SNAPSHOT_ACTION_MANAGE, name, NULL, &mgr->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */
        if (qmp_socket[0] != '/')
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                         "QMP socket must be an absolute path, not '%s'", qmp_socket);
        if (manager_find_domain(mgr, name))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_INVALID_ARGUMENT, "Domain '%s' is already registered", name);

        c->name = strdup(name);
        c->qmp_socket = strdup(qmp_socket);
        if (!c->name || !c->qmp_socket)
                return -ENOMEM;
        if (!c->images_dir && asprintf(&c->images_dir, "%s/images/%s", mgr->state_dir, name) < 0)
                return -ENOMEM;

        r = mkdir_p(c->images_dir, 0700);
        if (r < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot create image directory '%s': %s",
                                         c->images_dir, strerror(-r));

        if (persistent) {
                r = domain_config_save(mgr->config_dir, c);
                if (r < 0)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot write config of '%s' to '%s': %s",
                                                 name, mgr->config_dir, strerror(-r));
        }

        r = domain_new(&d, mgr, TAKE_PTR(c));
        if (r < 0)
                return r;
        d->runtime = !persistent;
        r = domain_load_snapshots(d);
        if (r < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot load snapshots of '%s': %s",
                                         name, strerror(-r));
        r = manager_add_domain(mgr, d);
        if (r < 0)
                return r;
        (void) domain_start(d);
        log_info("Domain '%s' registered (%s), QMP at '%s'.", name, persistent ? "persistent" : "until restart", qmp_socket);

        return sd_bus_reply_method_return(m, "o", TAKE_PTR(d)->path);
}

static int method_unregister_domain(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Manager *mgr = userdata;
        const char *name;
        Domain *d;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;

        r = bus_authorize(m, SNAPSHOT_ACTION_MANAGE, name, NULL, &mgr->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */
        d = manager_find_domain(mgr, name);
        if (!d)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_NO_SUCH_DOMAIN, "No domain '%s'", name);
        if (domain_busy(d))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_BUSY, "A job runs on domain '%s'", name);

        if (!d->runtime) {
                r = domain_config_remove(mgr->config_dir, name);
                if (r < 0 && r != -ENOENT)
                        return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot remove config of '%s': %s",
                                                 name, strerror(-r));
        }

        /* Snapshot records stay in the state dir: registering the domain again brings them back. */
        manager_remove_domain(mgr, d);
        domain_free(d);
        log_info("Domain '%s' unregistered.", name);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_reload(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Manager *mgr = userdata;
        int r;

        r = bus_authorize(m, SNAPSHOT_ACTION_MANAGE, NULL, NULL, &mgr->polkit, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* polkit is being asked; the call comes back here */

        r = manager_load_config(mgr);
        if (r < 0)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_FAILED, "Cannot read config directory '%s': %s",
                                         mgr->config_dir, strerror(-r));
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("ListDomains",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("ao", domains),
                                method_list_domains, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetDomain",
                                SD_BUS_ARGS("s", name),
                                SD_BUS_RESULT("o", domain),
                                method_get_domain, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RegisterDomain",
                                SD_BUS_ARGS("s", name, "s", qmp_socket, "a{sv}", options),
                                SD_BUS_RESULT("o", domain),
                                method_register_domain, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("UnregisterDomain",
                                SD_BUS_ARGS("s", name),
                                SD_BUS_NO_RESULT,
                                method_unregister_domain, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reload",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("SnapshotCreated", SD_BUS_ARGS("o", domain, "o", snapshot), 0),
        SD_BUS_SIGNAL_WITH_ARGS("SnapshotDeleted", SD_BUS_ARGS("o", domain, "s", name), 0),
        SD_BUS_SIGNAL_WITH_ARGS("SnapshotReverted", SD_BUS_ARGS("o", domain, "o", snapshot), 0),
        SD_BUS_VTABLE_END
};

static int node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *mgr = userdata;
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0, k = 0;

        for (size_t i = 0; i < mgr->n_domains; i++)
                n += 1 + mgr->domains[i]->n_snapshots;

        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < mgr->n_domains; i++) {
                Domain *d = mgr->domains[i];

                l[k] = strdup(d->path);
                if (!l[k++])
                        return -ENOMEM;
                for (size_t j = 0; j < d->n_snapshots; j++) {
                        l[k] = strdup(d->snapshots[j]->path);
                        if (!l[k++])
                                return -ENOMEM;
                }
        }

        *nodes = TAKE_PTR(l);
        return 1;
}

static int on_bus_message(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        (void) manager_arm_idle(userdata);
        return 0;
}

int manager_connect_bus(Manager *m, const char *address) {
        int r;

        if (address) {
                r = sd_bus_new(&m->bus);
                if (r < 0)
                        return log_error_errno(r, "Failed to allocate bus: %m");
                r = sd_bus_set_address(m->bus, address);
                if (r < 0)
                        return log_error_errno(r, "Failed to set bus address '%s': %m", address);
                (void) sd_bus_set_bus_client(m->bus, true);
                (void) sd_bus_negotiate_fds(m->bus, true);
                (void) sd_bus_negotiate_creds(m->bus, true, SD_BUS_CREDS_UID | SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID);
                r = sd_bus_start(m->bus);
        } else
                r = sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the %s bus%s%s: %m",
                                       address ? "given" : "system", address ? " " : "", address ?: "");

        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach bus to event loop: %m");
        return 0;
}

int manager_bus_add_objects(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, NULL, SNAPSHOT_ROOT_PATH, SNAPSHOT_IFACE_MANAGER, manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add manager object: %m");
        r = sd_bus_add_object_manager(m->bus, NULL, SNAPSHOT_ROOT_PATH);
        if (r < 0)
                return log_error_errno(r, "Failed to add object manager: %m");
        r = sd_bus_add_fallback_vtable(m->bus, NULL, SNAPSHOT_DOMAIN_PREFIX, SNAPSHOT_IFACE_DOMAIN,
                                       domain_vtable, domain_object_find, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add domain objects: %m");
        r = sd_bus_add_fallback_vtable(m->bus, NULL, SNAPSHOT_DOMAIN_PREFIX, SNAPSHOT_IFACE_SNAPSHOT,
                                       snapshot_vtable, snapshot_object_find, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add snapshot objects: %m");
        r = sd_bus_add_node_enumerator(m->bus, NULL, SNAPSHOT_DOMAIN_PREFIX, node_enumerator, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add node enumerator: %m");
        if (m->idle_timeout_usec > 0) {
                r = sd_bus_add_filter(m->bus, NULL, on_bus_message, m);
                if (r < 0)
                        return log_error_errno(r, "Failed to add bus filter: %m");
        }
        return 0;
}

int manager_send_snapshot_created(Manager *m, const char *domain_path, const char *snapshot_path) {
        return sd_bus_emit_signal(m->bus, SNAPSHOT_ROOT_PATH, SNAPSHOT_IFACE_MANAGER, "SnapshotCreated",
                                  "oo", domain_path, snapshot_path);
}

int manager_send_snapshot_deleted(Manager *m, const char *domain_path, const char *name) {
        return sd_bus_emit_signal(m->bus, SNAPSHOT_ROOT_PATH, SNAPSHOT_IFACE_MANAGER, "SnapshotDeleted",
                                  "os", domain_path, name);
}

static int on_idle_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        /* Exit only when nothing runs: the timer is re-armed by every incoming message (see
         * on_bus_message), so firing means no call came for the whole period. */
        if (manager_is_busy(m))
                return manager_arm_idle(m);
        log_info("Idle for %llus, exiting.", (unsigned long long) (m->idle_timeout_usec / USEC_PER_SEC));
        return sd_event_exit(m->event, 0);
}

int manager_arm_idle(Manager *m) {
        int r;

        if (m->idle_timeout_usec == 0)
                return 0;
        if (m->idle_timer) {
                r = sd_event_source_set_time_relative(m->idle_timer, m->idle_timeout_usec);
                if (r < 0)
                        return r;
                return sd_event_source_set_enabled(m->idle_timer, SD_EVENT_ONESHOT);
        }
        return sd_event_add_time_relative(m->event, &m->idle_timer, CLOCK_MONOTONIC, m->idle_timeout_usec, 0,
                                          on_idle_timer, m);
}
