/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Domain and Snapshot objects as snapshotctl reads them. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct SnapshotDisk {
        char *target;
        char *snapshot;         /* "no" | "internal" | "external" */
        char *file;
} SnapshotDisk;

typedef struct DomainInfo {
        char *path;
        char *name;
        char *state;
        char *current_snapshot; /* object path, "/" when none */
        char *job;
        bool has_agent;
        bool managed;
        json_t *json;           /* every property, as read, when asked for */
} DomainInfo;

typedef struct SnapshotInfo {
        char *path;
        char *name;
        char *description;
        char *domain;           /* object path */
        char *parent;           /* object path, "/" for a root */
        char **children;        /* object paths */
        uint64_t creation_time; /* µs since the epoch */
        char *state;
        char *memory;
        char *memory_file;
        SnapshotDisk *disks;
        size_t n_disks;
        bool is_current;
        bool quiesced;
        json_t *json;           /* every property, as read, when asked for */
} SnapshotInfo;

void domain_info_done(DomainInfo *d);
void snapshot_info_done(SnapshotInfo *s);

/* Read all properties of the object at path; these log their failures, except that with
 * missing_ok an object that vanished meanwhile is a silent -ENOENT. With want_json, also keep
 * every property as JSON (plus "Path") for --json output. */
int domain_info_load(sd_bus *bus, const char *path, bool want_json, bool missing_ok, DomainInfo *ret);
int snapshot_info_load(sd_bus *bus, const char *path, bool want_json, bool missing_ok, SnapshotInfo *ret);

/* The Name of the snapshot at path, for showing Parent/Children/CurrentSnapshot;
 * "/" gives NULL. Logs failures. */
int snapshot_name_of(sd_bus *bus, const char *path, char **ret);

/* True for the errors that say an object vanished between listing and reading it. */
bool bus_error_is_gone(const sd_bus_error *error);
