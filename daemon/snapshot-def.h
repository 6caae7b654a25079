/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A snapshot as data: what the <domainsnapshot> XML holds, without tree links or bus state.
 * snapshot-store.c turns it into libvirt's XML and back; the daemon's Snapshot objects own one. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum SnapshotLocation {
        SNAPSHOT_LOCATION_DEFAULT,      /* not said (input only) */
        SNAPSHOT_LOCATION_NO,
        SNAPSHOT_LOCATION_INTERNAL,
        SNAPSHOT_LOCATION_EXTERNAL,
        _SNAPSHOT_LOCATION_MAX,
        _SNAPSHOT_LOCATION_INVALID = -EINVAL,
} SnapshotLocation;

const char *snapshot_location_to_string(SnapshotLocation l);   /* "", "no", "internal", "external" */
SnapshotLocation snapshot_location_from_string(const char *s);  /* -EINVAL when unknown; "" → DEFAULT */

typedef struct SnapshotDiskDef {
        char *target;           /* qdev id (e.g. "vda") or top node name */
        SnapshotLocation location;
        char *file;             /* external: the overlay created by the snapshot (absolute) */
        char *format;           /* external: overlay format, "qcow2" */
} SnapshotDiskDef;

/* One disk of the <domain> section: what the domain ran on when the snapshot was taken. */
typedef struct DomainDiskDef {
        char *target;
        char *file;             /* the image the guest used at that moment (the overlay's backing) */
        char *format;           /* "qcow2", "raw", ... */
        char *node_name;        /* QEMU's top node name then (informational) */
} DomainDiskDef;

typedef struct DomainDef {
        char *name;
        uint64_t memory_kib;
        unsigned vcpus;
        DomainDiskDef *disks;
        size_t n_disks;
} DomainDef;

typedef struct SnapshotDef {
        char *name;
        char *description;
        char *parent;           /* parent's name, or NULL for a root */
        uint64_t creation_usec; /* µs since the epoch; the XML carries seconds, the cookie µs */
        char *state;            /* "running", "paused", "shutoff", "disk-snapshot" */
        SnapshotLocation memory;
        char *memory_file;      /* external memory image, or NULL */
        SnapshotDiskDef *disks;
        size_t n_disks;
        bool current;           /* <active>1</active> */
        bool quiesced;          /* cookie */
        DomainDef domain;       /* the <domain> section; name == NULL when absent */

        /* A packed definition (snapshot_def_pack()) is one allocation: the struct, then the
         * disk arrays and every string. pack_end is its end, NULL when the fields are
         * allocated one by one. Change a string field of any definition with
         * snapshot_def_set_string(), never by free() and assignment. */
        const char *pack_end;
} SnapshotDef;

SnapshotDef *snapshot_def_free(SnapshotDef *def);
static inline void snapshot_def_freep(SnapshotDef **def) {
        if (*def)
                snapshot_def_free(*def);
}
/* For definitions that are not packed. */
void domain_def_clear(DomainDef *def);

/* A packed copy of def (see pack_end): what the daemon keeps for each loaded snapshot, at
 * about half the memory of one allocation per field. */
int snapshot_def_pack(const SnapshotDef *def, SnapshotDef **ret);
/* Sets *field, a string member of def (or of its disks), to a copy of value (NULL allowed),
 * freeing the old string unless it lies in def's pack. */
int snapshot_def_set_string(SnapshotDef *def, char **field, const char *value);

/* Deep copy, for the daemon's records of what it was asked and what it did. */
int snapshot_def_copy(const SnapshotDef *src, SnapshotDef **ret);
/* True when every field is equal (used by the round-trip tests). */
bool snapshot_def_equal(const SnapshotDef *a, const SnapshotDef *b);
