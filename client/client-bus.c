/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "client-bus.h"
#include "client-output.h"
#include "snapshot-bus.h"

static bool connected_remote = false;

bool bus_is_remote(void) {
        return connected_remote;
}

int bus_connect(const char *address, const char *host, bool allow_interactive_authorization, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (host) {
                /* sd-bus runs "ssh -xT [USER@]HOST systemd-stdio-bridge" and speaks D-Bus over
                 * its stdin/stdout, as systemctl -H does. ssh's own complaints reach stderr. */
                r = sd_bus_open_system_remote(&bus, host);
                if (r < 0)
                        return log_error_errno(r, "Failed to connect to the system bus of '%s' over ssh: %m", host);
                connected_remote = true;
        } else if (address) {
                r = sd_bus_new(&bus);
                if (r < 0)
                        return log_error_errno(r, "Failed to allocate bus connection: %m");

                r = sd_bus_set_address(bus, address);
                if (r < 0)
                        return log_error_errno(r, "Failed to set bus address '%s': %m", address);

                /* A message bus (dbus-daemon), not a peer: say Hello and get a unique name. */
                r = sd_bus_set_bus_client(bus, true);
                if (r < 0)
                        return log_error_errno(r, "Failed to make the connection a bus client: %m");

                r = sd_bus_start(bus);
                if (r < 0)
                        return log_error_errno(r, "Failed to connect to bus '%s': %m", address);
        } else {
                /* Honours DBUS_SYSTEM_BUS_ADDRESS. */
                r = sd_bus_open_system(&bus);
                if (r < 0)
                        return log_error_errno(r, "Failed to connect to the system bus: %m");
        }

        r = sd_bus_set_allow_interactive_authorization(bus, allow_interactive_authorization);
        if (r < 0)
                return log_error_errno(r, "Failed to set interactive authorization: %m");

        *ret = TAKE_PTR(bus);
        return 0;
}

int bus_call_method(
                sd_bus *bus,
                const char *path,
                const char *interface,
                const char *member,
                uint64_t timeout_usec,
                sd_bus_error *error,
                sd_bus_message **ret_reply,
                const char *types, ...) {

        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SNAPSHOT_BUS_NAME, path, interface, member);
        if (r < 0)
                return r;

        if (!isempty(types)) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
                if (r < 0)
                        return r;
        }

        return sd_bus_call(bus, m, timeout_usec, error, ret_reply);
}

static int read_path_reply(sd_bus_message *reply, char **ret) {
        const char *path;
        char *p;
        int r;

        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return r;

        p = strdup(path);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int bus_get_domain(sd_bus *bus, const char *name, char **ret_path) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = bus_call_method(bus, SNAPSHOT_ROOT_PATH, SNAPSHOT_IFACE_MANAGER, "GetDomain",
                            CALL_TIMEOUT_DEFAULT, &error, &reply, "s", name);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to get domain '%s'", name);

        r = read_path_reply(reply, ret_path);
        if (r < 0)
                return log_error_errno(r, "Failed to parse GetDomain reply: %m");
        return 0;
}

int bus_lookup_snapshot(sd_bus *bus, const char *domain, const char *domain_path, const char *name, char **ret_path) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = bus_call_method(bus, domain_path, SNAPSHOT_IFACE_DOMAIN, "LookupSnapshot",
                            CALL_TIMEOUT_DEFAULT, &error, &reply, "s", name);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to look up snapshot '%s' of domain '%s'", name, domain);

        r = read_path_reply(reply, ret_path);
        if (r < 0)
                return log_error_errno(r, "Failed to parse LookupSnapshot reply: %m");
        return 0;
}

#define STR_IN_SET3(s, a, b, c) (streq(s, a) || streq(s, b) || streq(s, c))

int bus_get_string_property(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_error *error, char **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *contents, *s;
        char *copy;
        int r;

        r = bus_call_method(bus, path, "org.freedesktop.DBus.Properties", "Get",
                            CALL_TIMEOUT_DEFAULT, error, &reply, "ss", interface, property);
        if (r < 0)
                return r;

        r = sd_bus_message_peek_type(reply, NULL, &contents);
        if (r < 0)
                return r;
        if (!STR_IN_SET3(contents, "s", "o", "g"))
                return -EBADMSG;

        r = sd_bus_message_read(reply, "v", contents, &s);
        if (r < 0)
                return r;

        copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

int bus_read_string(sd_bus_message *m, const char *signature, void *p) {
        char **s = p;
        const char *v;
        char *copy;
        int r;

        r = sd_bus_message_read_basic(m, signature[0], &v);
        if (r < 0)
                return r;

        copy = strdup(v);
        if (!copy)
                return -ENOMEM;
        free(*s);
        *s = copy;
        return 0;
}

int bus_read_bool(sd_bus_message *m, const char *signature, void *p) {
        int b, r;

        r = sd_bus_message_read_basic(m, 'b', &b);
        if (r < 0)
                return r;
        *(bool *) p = b;
        return 0;
}

int bus_read_uint64(sd_bus_message *m, const char *signature, void *p) {
        return sd_bus_message_read_basic(m, 't', p);
}

int bus_read_strv(sd_bus_message *m, const char *signature, void *p) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;
        int r;

        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;

        r = sd_bus_message_enter_container(m, 'a', signature + 1);
        if (r < 0)
                return r;

        for (;;) {
                const char *s;
                char **grown;

                r = sd_bus_message_read_basic(m, signature[1], &s);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                grown = reallocarray(l, n + 2, sizeof(char *));
                if (!grown)
                        return -ENOMEM;
                l = grown;
                l[n] = strdup(s);
                if (!l[n])
                        return -ENOMEM;
                l[++n] = NULL;
        }

        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        strv_free(*(char ***) p);
        *(char ***) p = TAKE_PTR(l);
        return 0;
}

int bus_map_properties(sd_bus_message *m, const BusPropertyMap *map, void *userdata) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;

        for (;;) {
                const BusPropertyMap *e;
                const char *name, *contents;

                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                r = sd_bus_message_read_basic(m, 's', &name);
                if (r < 0)
                        return r;

                for (e = map; e->name; e++)
                        if (streq(e->name, name))
                                break;

                if (!e->name) {
                        r = sd_bus_message_skip(m, "v");
                        if (r < 0)
                                return r;
                } else {
                        r = sd_bus_message_peek_type(m, NULL, &contents);
                        if (r < 0)
                                return r;
                        if (!streq(contents, e->signature))
                                return -EBADMSG;

                        r = sd_bus_message_enter_container(m, 'v', contents);
                        if (r < 0)
                                return r;
                        r = e->read(m, e->signature, (uint8_t *) userdata + e->offset);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_exit_container(m);
                        if (r < 0)
                                return r;
                }

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }

        return sd_bus_message_exit_container(m);
}
