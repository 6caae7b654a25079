/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client-bus.h"
#include "client-objects.h"
#include "client-output.h"
#include "snapshot-bus.h"

void domain_info_done(DomainInfo *d) {
        free(d->path);
        free(d->name);
        free(d->state);
        free(d->current_snapshot);
        free(d->job);
        if (d->json)
                json_decref(d->json);
        *d = (DomainInfo) {};
}

static void snapshot_disks_free(SnapshotDisk *disks, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(disks[i].target);
                free(disks[i].snapshot);
                free(disks[i].file);
        }
        free(disks);
}

void snapshot_info_done(SnapshotInfo *s) {
        free(s->path);
        free(s->name);
        free(s->description);
        free(s->domain);
        free(s->parent);
        strv_free(s->children);
        free(s->state);
        free(s->memory);
        free(s->memory_file);
        snapshot_disks_free(s->disks, s->n_disks);
        if (s->json)
                json_decref(s->json);
        *s = (SnapshotInfo) {};
}

static int read_disks(sd_bus_message *m, const char *signature, void *p) {
        SnapshotInfo *s = p;
        SnapshotDisk *disks = NULL;
        size_t n = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(sss)");
        if (r < 0)
                return r;

        for (;;) {
                const char *target, *snapshot, *file;
                SnapshotDisk *grown;

                r = sd_bus_message_read(m, "(sss)", &target, &snapshot, &file);
                if (r < 0)
                        goto fail;
                if (r == 0)
                        break;

                grown = reallocarray(disks, n + 1, sizeof(SnapshotDisk));
                if (!grown) {
                        r = -ENOMEM;
                        goto fail;
                }
                disks = grown;
                disks[n] = (SnapshotDisk) {
                        .target = strdup(target),
                        .snapshot = strdup(snapshot),
                        .file = strdup(file),
                };
                n++;
                if (!disks[n - 1].target || !disks[n - 1].snapshot || !disks[n - 1].file) {
                        r = -ENOMEM;
                        goto fail;
                }
        }

        r = sd_bus_message_exit_container(m);
        if (r < 0)
                goto fail;

        snapshot_disks_free(s->disks, s->n_disks);
        s->disks = disks;
        s->n_disks = n;
        return 0;

fail:
        snapshot_disks_free(disks, n);
        return r;
}

static const BusPropertyMap domain_map[] = {
        { "Name",            "s", bus_read_string, offsetof(DomainInfo, name)             },
        { "State",           "s", bus_read_string, offsetof(DomainInfo, state)            },
        { "CurrentSnapshot", "o", bus_read_string, offsetof(DomainInfo, current_snapshot) },
        { "Job",             "s", bus_read_string, offsetof(DomainInfo, job)              },
        { "HasAgent",        "b", bus_read_bool,   offsetof(DomainInfo, has_agent)        },
        { "Managed",         "b", bus_read_bool,   offsetof(DomainInfo, managed)          },
        {}
};

static const BusPropertyMap snapshot_map[] = {
        { "Name",         "s",      bus_read_string, offsetof(SnapshotInfo, name)          },
        { "Description",  "s",      bus_read_string, offsetof(SnapshotInfo, description)   },
        { "Domain",       "o",      bus_read_string, offsetof(SnapshotInfo, domain)        },
        { "Parent",       "o",      bus_read_string, offsetof(SnapshotInfo, parent)        },
        { "Children",     "ao",     bus_read_strv,   offsetof(SnapshotInfo, children)      },
        { "CreationTime", "t",      bus_read_uint64, offsetof(SnapshotInfo, creation_time) },
        { "State",        "s",      bus_read_string, offsetof(SnapshotInfo, state)         },
        { "Memory",       "s",      bus_read_string, offsetof(SnapshotInfo, memory)        },
        { "MemoryFile",   "s",      bus_read_string, offsetof(SnapshotInfo, memory_file)   },
        { "Disks",        "a(sss)", read_disks,      0                                     },
        { "IsCurrent",    "b",      bus_read_bool,   offsetof(SnapshotInfo, is_current)    },
        { "Quiesced",     "b",      bus_read_bool,   offsetof(SnapshotInfo, quiesced)      },
        {}
};

/* Reads the GetAll reply twice: once into JSON (every property, known or not), once into
 * the struct. "Path" leads the JSON object so entries can be matched with Parent/Children. */
static int properties_to_json(sd_bus_message *reply, const char *path, json_t **ret) {
        _cleanup_(json_decrefp) json_t *props = NULL, *o = NULL;
        json_t *disks;
        const char *key;
        json_t *value;
        int r;

        r = json_from_properties(reply, &props);
        if (r < 0)
                return r;

        o = json_object();
        if (!o || json_object_set_new(o, "Path", json_string(path)) < 0)
                return -ENOMEM;
        json_object_foreach(props, key, value)
                if (json_object_set(o, key, value) < 0)
                        return -ENOMEM;

        /* Disks as objects rather than bare triples: easier to read and to query. */
        disks = json_object_get(o, "Disks");
        if (json_is_array(disks)) {
                size_t i;

                json_array_foreach(disks, i, value) {
                        json_t *d;

                        if (!json_is_array(value) || json_array_size(value) != 3)
                                continue;
                        d = json_pack("{s:O,s:O,s:O}",
                                      "target", json_array_get(value, 0),
                                      "snapshot", json_array_get(value, 1),
                                      "file", json_array_get(value, 2));
                        if (!d || json_array_set_new(disks, i, d) < 0)
                                return -ENOMEM;
                }
        }

        r = sd_bus_message_rewind(reply, true);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

/* Properties.GetAll into *info via map (and JSON); on failure *info may be half filled
 * and the caller frees it. */
static int object_load(
                sd_bus *bus,
                const char *path,
                const char *interface,
                const BusPropertyMap *map,
                bool want_json,
                bool missing_ok,
                char **ret_path,
                json_t **ret_json,
                void *info) {

        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = bus_call_method(bus, path, "org.freedesktop.DBus.Properties", "GetAll",
                            CALL_TIMEOUT_DEFAULT, &error, &reply, "s", interface);
        if (r < 0) {
                if (missing_ok && bus_error_is_gone(&error))
                        return -ENOENT;
                return log_bus_error(&error, r, "Failed to get properties of %s", path);
        }

        *ret_path = strdup(path);
        if (!*ret_path)
                return log_error_errno(ENOMEM, "Out of memory.");

        if (want_json) {
                r = properties_to_json(reply, path, ret_json);
                if (r < 0)
                        return log_error_errno(r, "Failed to parse properties of %s: %m", path);
        }

        r = bus_map_properties(reply, map, info);
        if (r < 0)
                return log_error_errno(r, "Failed to parse properties of %s: %m", path);

        return 0;
}

int domain_info_load(sd_bus *bus, const char *path, bool want_json, bool missing_ok, DomainInfo *ret) {
        DomainInfo d = {};
        int r;

        r = object_load(bus, path, SNAPSHOT_IFACE_DOMAIN, domain_map, want_json, missing_ok,
                        &d.path, &d.json, &d);
        if (r < 0) {
                domain_info_done(&d);
                return r;
        }

        *ret = d;
        return 0;
}

int snapshot_info_load(sd_bus *bus, const char *path, bool want_json, bool missing_ok, SnapshotInfo *ret) {
        SnapshotInfo s = {};
        int r;

        r = object_load(bus, path, SNAPSHOT_IFACE_SNAPSHOT, snapshot_map, want_json, missing_ok,
                        &s.path, &s.json, &s);
        if (r < 0) {
                snapshot_info_done(&s);
                return r;
        }

        *ret = s;
        return 0;
}

int snapshot_name_of(sd_bus *bus, const char *path, char **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        if (isempty(path) || streq(path, "/")) {
                *ret = NULL;
                return 0;
        }

        r = bus_get_string_property(bus, path, SNAPSHOT_IFACE_SNAPSHOT, "Name", &error, ret);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to get name of snapshot %s", path);
        return 0;
}

bool bus_error_is_gone(const sd_bus_error *error) {
        return sd_bus_error_has_names(error,
                                      SD_BUS_ERROR_UNKNOWN_OBJECT,
                                      SD_BUS_ERROR_UNKNOWN_INTERFACE,
                                      SNAPSHOT_ERROR_NO_SUCH_SNAPSHOT);
}
