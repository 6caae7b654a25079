/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapshotctl's side of the bus: connecting, calling snapshotd, reading properties. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

/* 0 asks sd-bus for its default method call timeout (25 s), which is right for lookups. */
#define CALL_TIMEOUT_DEFAULT ((uint64_t) 0)
/* Jobs such as a live memory save of a big guest may run for a long time, and snapshotd
 * only replies when they are done: wait for a week rather than give up on a job that is
 * still running. (A finite value: sd_bus_call(3) promises nothing for UINT64_MAX.) */
#define CALL_TIMEOUT_JOB (UINT64_C(7) * 24 * 60 * 60 * 1000000)

/* The system bus (which honours DBUS_SYSTEM_BUS_ADDRESS), the bus at address, or with host
 * ("[USER@]HOST") the system bus of that machine through ssh and systemd-stdio-bridge. */
int bus_connect(const char *address, const char *host, bool allow_interactive_authorization, sd_bus **ret);

/* True once bus_connect() reached another machine: files the daemon names (a memory image)
 * are not ours to read then. */
bool bus_is_remote(void);

/* Calls a method on snapshotd. On failure the error is in *error; nothing is logged. */
int bus_call_method(
                sd_bus *bus,
                const char *path,
                const char *interface,
                const char *member,
                uint64_t timeout_usec,
                sd_bus_error *error,
                sd_bus_message **ret_reply,
                const char *types, ...);

/* Manager.GetDomain and Domain.LookupSnapshot; these log their failures. */
int bus_get_domain(sd_bus *bus, const char *name, char **ret_path);
int bus_lookup_snapshot(sd_bus *bus, const char *domain, const char *domain_path, const char *name, char **ret_path);

/* Properties.Get of an "s" or "o"; nothing is logged. */
int bus_get_string_property(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_error *error, char **ret);

/* Reads a property dictionary into a struct: each entry names a property, its signature,
 * and where in the struct it goes. Unknown properties are skipped, so a newer daemon
 * with more properties still works; a known one with a different signature is -EBADMSG. */
typedef struct BusPropertyMap {
        const char *name;
        const char *signature;
        int (*read)(sd_bus_message *m, const char *signature, void *p);
        size_t offset;
} BusPropertyMap;

int bus_map_properties(sd_bus_message *m, const BusPropertyMap *map, void *userdata);

int bus_read_string(sd_bus_message *m, const char *signature, void *p);    /* s, o → char* */
int bus_read_bool(sd_bus_message *m, const char *signature, void *p);      /* b → bool */
int bus_read_uint64(sd_bus_message *m, const char *signature, void *p);    /* t → uint64_t */
int bus_read_strv(sd_bus_message *m, const char *signature, void *p);      /* as, ao → char** */
