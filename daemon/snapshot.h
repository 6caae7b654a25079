/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A remembered snapshot: its definition plus its place in the domain's tree and on the bus. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "snapshot-def.h"

typedef struct Domain Domain;

typedef struct Snapshot {
        Domain *domain;
        SnapshotDef *def;
        char *path;                     /* bus object path */
        Snapshot *parent;               /* NULL for a root */
        size_t index;                   /* position in the domain's list, kept by domain.c */
        bool doomed;                    /* being forgotten with others: no property signals */
} Snapshot;

int snapshot_new(Snapshot **ret, Domain *d, SnapshotDef *def /* taken */);
Snapshot *snapshot_free(Snapshot *s);
static inline void snapshot_freep(Snapshot **s) {
        if (*s)
                snapshot_free(*s);
}

const char *snapshot_name(const Snapshot *s);
bool snapshot_is_current(const Snapshot *s);
size_t snapshot_n_children(const Snapshot *s);
/* Children of s (or the roots when s is NULL), in creation order. Caller frees the array. */
int snapshot_list_children(Domain *d, const Snapshot *s, Snapshot ***ret, size_t *ret_n);
bool snapshot_is_disk_only(const Snapshot *s);
bool snapshot_is_internal(const Snapshot *s);
bool snapshot_is_external(const Snapshot *s);
/* Whether filter flags (SNAPSHOT_LIST_*, without ROOTS/DESCENDANTS/TOPOLOGICAL) keep s,
 * which has n_children children. */
bool snapshot_matches_filter(const Snapshot *s, size_t n_children, uint64_t flags);

/* Bus side (snapshot-dbus.c) */
extern const sd_bus_vtable snapshot_vtable[];
int snapshot_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found, sd_bus_error *error);
int snapshot_build_path(const char *domain_path, const char *name, char **ret);
/* Replies to m with the object paths of l (an "ao"). */
int snapshot_reply_paths(sd_bus_message *m, Snapshot **l, size_t n);
