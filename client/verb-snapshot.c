/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* list, dumpxml, info, current: the read-only views of a domain's snapshots. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-bus.h"
#include "client-objects.h"
#include "client-output.h"
#include "client-save-image.h"
#include "client-snapshot-list.h"
#include "snapshot-bus.h"
#include "snapshotctl.h"

const VerbOption list_options[] = {
        { "tree",        NULL, "Show the snapshots as a tree of parents and children" },
        { "name",        NULL, "Print only the names" },
        { "parent",      NULL, "Add a column with each snapshot's parent" },
        { "roots",       NULL, "Only snapshots without a parent",          SNAPSHOT_LIST_ROOTS       },
        { "leaves",      NULL, "Only snapshots without children",          SNAPSHOT_LIST_LEAVES      },
        { "no-leaves",   NULL, "Only snapshots with children",             SNAPSHOT_LIST_NO_LEAVES   },
        { "metadata",    NULL, "Only snapshots with metadata",             SNAPSHOT_LIST_METADATA    },
        { "no-metadata", NULL, "Only snapshots without metadata",          SNAPSHOT_LIST_NO_METADATA },
        { "inactive",    NULL, "Only snapshots of a shut-off domain",      SNAPSHOT_LIST_INACTIVE    },
        { "active",      NULL, "Only snapshots of a running domain (with memory)", SNAPSHOT_LIST_ACTIVE },
        { "disk-only",   NULL, "Only disk-only snapshots",                 SNAPSHOT_LIST_DISK_ONLY   },
        { "internal",    NULL, "Only internal snapshots",                  SNAPSHOT_LIST_INTERNAL    },
        { "external",    NULL, "Only external snapshots",                  SNAPSHOT_LIST_EXTERNAL    },
        { "topological", NULL, "Parents before children, in snapshotd's order", SNAPSHOT_LIST_TOPOLOGICAL },
        {}
};

const VerbOption dumpxml_options[] = {
        { "security-info", NULL, "Include security-sensitive information", SNAPSHOT_XML_SECURE },
        {}
};

const VerbOption current_options[] = {
        { "name",          NULL, "Print only the name, not the XML" },
        { "security-info", NULL, "Include security-sensitive information in the XML", SNAPSHOT_XML_SECURE },
        {}
};

int check_list(const VerbArgs *a) {
        unsigned views = verb_has(a, "tree") + (arg_json != JSON_OFF) + verb_has(a, "name");

        if (views > 1)
                return log_usage("--tree, --json and --name exclude each other.");
        if (verb_has(a, "parent") && views > 0)
                return log_usage("--parent adds a column to the table; it goes with neither --tree, --json nor --name.");
        return 0;
}

static int snapshot_compare_name(const void *a, const void *b) {
        const SnapshotInfo *x = a, *y = b;

        return strcmp(x->name ?: "", y->name ?: "");
}

static ssize_t snapshot_list_find(const SnapshotList *l, const char *path) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i].path, path))
                        return (ssize_t) i;
        return -1;
}

/* Draws
 *
 *   root
 *     |
 *     +- child
 *     |   |
 *     |   +- grandchild
 *     |
 *     +- other-child
 *
 * A snapshot whose parent is not in the list (filtered out) is drawn as a root. */
static void print_subtree(const SnapshotList *l, const ssize_t *parents, size_t node, char *prefix, size_t prefix_len) {
        size_t last = SIZE_MAX;

        for (size_t i = 0; i < l->n; i++)
                if (parents[i] == (ssize_t) node)
                        last = i;
        if (last == SIZE_MAX)
                return;

        for (size_t i = 0; i < l->n; i++) {
                if (parents[i] != (ssize_t) node)
                        continue;

                printf("%.*s|\n", (int) prefix_len, prefix);
                printf("%.*s+- %s%s\n", (int) prefix_len, prefix, l->items[i].name ?: "-",
                       l->items[i].is_current ? "  (current)" : "");

                /* The child's own children hang below it; the bar continues only when
                 * more siblings follow. */
                memcpy(prefix + prefix_len, i == last ? "    " : "|   ", 4);
                print_subtree(l, parents, i, prefix, prefix_len + 4);
        }
}

static int print_tree(const SnapshotList *l) {
        _cleanup_free_ ssize_t *parents = NULL;
        _cleanup_free_ char *prefix = NULL;
        bool first = true;

        parents = calloc(l->n + 1, sizeof(ssize_t));
        /* Depth is at most n, four columns per level, plus the root's two. */
        prefix = malloc(4 * l->n + 3);
        if (!parents || !prefix)
                return log_error_errno(ENOMEM, "Out of memory.");

        for (size_t i = 0; i < l->n; i++)
                parents[i] = l->items[i].parent ? snapshot_list_find(l, l->items[i].parent) : -1;

        for (size_t i = 0; i < l->n; i++) {
                if (parents[i] >= 0)
                        continue;

                if (!first)
                        putchar('\n');
                first = false;

                printf("%s%s\n", l->items[i].name ?: "-", l->items[i].is_current ? "  (current)" : "");
                memcpy(prefix, "  ", 2);
                print_subtree(l, parents, i, prefix, 2);
        }
        return 0;
}

static int print_table(sd_bus *bus, const SnapshotList *l, bool with_parent) {
        _cleanup_(table_freep) Table *table = NULL;
        int r;

        if (with_parent)
                r = table_new(&table, 4, "Name", "Creation Time", "State", "Parent");
        else
                r = table_new(&table, 3, "Name", "Creation Time", "State");
        if (r < 0)
                return log_error_errno(r, "Out of memory.");

        for (size_t i = 0; i < l->n; i++) {
                const SnapshotInfo *s = l->items + i;
                _cleanup_free_ char *parent = NULL;
                char created[64];
                ssize_t k;

                if (format_timestamp(s->creation_time, created, sizeof(created)) < 0)
                        strcpy(created, "-");

                if (with_parent) {
                        k = s->parent ? snapshot_list_find(l, s->parent) : -1;
                        if (k >= 0)
                                parent = strdup(l->items[k].name);
                        else {
                                /* Filtered out of the list, or none at all. */
                                r = snapshot_name_of(bus, s->parent, &parent);
                                if (r < 0)
                                        return r;
                        }
                        r = table_add_row(table, s->name, created, s->state, parent);
                } else
                        r = table_add_row(table, s->name, created, s->state);
                if (r < 0)
                        return log_error_errno(r, "Out of memory.");
        }

        table_print(table);
        return 0;
}

int verb_list(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(snapshot_list_done) SnapshotList l = {};
        _cleanup_free_ char *domain_path = NULL;
        bool json = arg_json != JSON_OFF;
        uint64_t flags = verb_flags(a);
        int r;

        r = bus_get_domain(bus, a->args[0], &domain_path);
        if (r < 0)
                return r;

        r = snapshot_list_load(bus, a->args[0], domain_path, flags, json, &l);
        if (r < 0)
                return r;

        /* virsh sorts by name; --topological keeps snapshotd's parents-first order. */
        if (!(flags & SNAPSHOT_LIST_TOPOLOGICAL))
                qsort(l.items, l.n, sizeof(SnapshotInfo), snapshot_compare_name);

        if (json) {
                _cleanup_(json_decrefp) json_t *array = json_array();

                if (!array)
                        return log_error_errno(ENOMEM, "Out of memory.");
                for (size_t i = 0; i < l.n; i++)
                        if (json_array_append(array, l.items[i].json) < 0)
                                return log_error_errno(ENOMEM, "Out of memory.");
                r = json_print(array);
                if (r < 0)
                        return log_error_errno(r, "Failed to format JSON: %m");
                return 0;
        }

        if (verb_has(a, "name")) {
                for (size_t i = 0; i < l.n; i++)
                        printf("%s\n", l.items[i].name ?: "-");
                return 0;
        }

        if (verb_has(a, "tree"))
                return print_tree(&l);

        return print_table(bus, &l, verb_has(a, "parent"));
}

static int get_xml_desc(sd_bus *bus, const char *path, const char *name, uint64_t flags, char **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *xml;
        int r;

        r = bus_call_method(bus, path, SNAPSHOT_IFACE_SNAPSHOT, "GetXMLDesc",
                            CALL_TIMEOUT_DEFAULT, &error, &reply, "t", flags);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to get XML of snapshot '%s'", name);

        r = sd_bus_message_read(reply, "s", &xml);
        if (r < 0)
                return log_error_errno(r, "Failed to parse GetXMLDesc reply: %m");

        *ret = strdup(xml);
        if (!*ret)
                return log_error_errno(ENOMEM, "Out of memory.");
        return 0;
}

/* The XML as it is, or with --json an object {"Domain", "Name", "XML"} (without "XML"
 * when xml is NULL: `current --name`). */
static int print_named_xml(const char *domain, const char *name, const char *xml) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        int r;

        if (arg_json == JSON_OFF) {
                if (!xml) {
                        printf("%s\n", name);
                        return 0;
                }
                fputs(xml, stdout);
                if (!isempty(xml) && xml[strlen(xml) - 1] != '\n')
                        putchar('\n');
                return 0;
        }

        o = json_pack("{s:s, s:s}", "Domain", domain, "Name", name);
        if (!o || (xml && json_object_set_new(o, "XML", json_string(xml)) < 0))
                return log_error_errno(ENOMEM, "Out of memory.");
        r = json_print(o);
        if (r < 0)
                return log_error_errno(r, "Failed to format JSON: %m");
        return 0;
}

int verb_dumpxml(sd_bus *bus, const VerbArgs *a) {
        _cleanup_free_ char *domain_path = NULL, *path = NULL, *xml = NULL;
        int r;

        r = bus_get_domain(bus, a->args[0], &domain_path);
        if (r < 0)
                return r;

        r = bus_lookup_snapshot(bus, a->args[0], domain_path, a->args[1], &path);
        if (r < 0)
                return r;

        r = get_xml_desc(bus, path, a->args[1], verb_flags(a), &xml);
        if (r < 0)
                return r;

        return print_named_xml(a->args[0], a->args[1], xml);
}

static void print_field(const char *label, const char *value) {
        printf("%-16s%s\n", label, isempty(value) ? "-" : value);
}

/* The header of an external memory image, read from the file itself: the daemon only
 * knows where it is. Labels as in print_info(), the header's fields indented below. */
static void print_memory_image(const char *path) {
        const char *format;
        SaveHeader h;
        char reason[256];
        int r;

        r = save_header_read(path, &h);
        if (r < 0) {
                save_header_error(r, &h, reason, sizeof(reason));
                printf("%-16sunreadable: %s\n", "Memory Image:", reason);
                return;
        }

        if (h.complete)
                printf("%-16scomplete (%s)\n", "Memory Image:", h.magic);
        else
                printf("%-16spartial (%s): the save never completed; not restorable\n", "Memory Image:", h.magic);

        format = save_header_format_name(h.format);
        printf("  %-14s%u%s\n", "Version:", h.version, h.version == 2 ? "" : " (snapshotd writes 2)");
        printf("  %-14s%u bytes (domain XML and padding)\n", "Data Length:", h.data_len);
        printf("  %-14s%s\n", "Was Running:", h.was_running ? "yes" : "no");
        printf("  %-14s%u (%s)\n", "Format:", h.format, format ?: "unknown");
        printf("  %-14s%llu", "Stream Offset:", (unsigned long long) h.stream_offset);
        if (h.stream_offset > h.size)
                printf(" (beyond the end of the file: truncated)\n");
        else
                printf(" (%llu bytes of stream)\n", (unsigned long long) (h.size - h.stream_offset));
}

static json_t *memory_image_json(const char *path) {
        SaveHeader h;
        char reason[256];
        int r;

        r = save_header_read(path, &h);
        if (r < 0) {
                save_header_error(r, &h, reason, sizeof(reason));
                return json_pack("{s:s}", "error", reason);
        }

        return json_pack("{s:s, s:b, s:b, s:I, s:I, s:b, s:I, s:s?, s:I, s:I}",
                         "magic", h.magic,
                         "complete", h.complete,
                         "partial", h.partial,
                         "version", (json_int_t) h.version,
                         "data_len", (json_int_t) h.data_len,
                         "was_running", h.was_running != 0,
                         "format", (json_int_t) h.format,
                         "format_name", save_header_format_name(h.format),
                         "stream_offset", (json_int_t) h.stream_offset,
                         "size", (json_int_t) h.size);
}

static int print_info(sd_bus *bus, const SnapshotInfo *s) {
        _cleanup_free_ char *domain = NULL, *parent = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char created[64];
        int r;

        if (!isempty(s->domain) && !streq(s->domain, "/")) {
                r = bus_get_string_property(bus, s->domain, SNAPSHOT_IFACE_DOMAIN, "Name", &error, &domain);
                if (r < 0)
                        return log_bus_error(&error, r, "Failed to get name of domain %s", s->domain);
        }

        r = snapshot_name_of(bus, s->parent, &parent);
        if (r < 0)
                return r;

        if (format_timestamp(s->creation_time, created, sizeof(created)) < 0)
                strcpy(created, "-");

        print_field("Name:", s->name);
        print_field("Domain:", domain);
        print_field("Description:", s->description);
        print_field("Creation Time:", created);
        print_field("State:", s->state);
        print_field("Current:", s->is_current ? "yes" : "no");
        print_field("Parent:", parent);

        printf("%-16s", "Children:");
        if (!s->children || !s->children[0])
                printf("-");
        for (size_t i = 0; s->children && s->children[i]; i++) {
                _cleanup_free_ char *child = NULL;

                r = snapshot_name_of(bus, s->children[i], &child);
                if (r < 0)
                        return r;
                printf("%s%s", i > 0 ? ", " : "", child ?: "-");
        }
        putchar('\n');

        print_field("Memory:", s->memory);
        print_field("Memory File:", s->memory_file);
        if (!isempty(s->memory_file)) {
                if (bus_is_remote())
                        printf("%-16snot read: the file is on the remote host\n", "Memory Image:");
                else
                        print_memory_image(s->memory_file);
        }
        print_field("Quiesced:", s->quiesced ? "yes" : "no");

        printf("%-16s", "Disks:");
        if (s->n_disks == 0)
                printf("-\n");
        for (size_t i = 0; i < s->n_disks; i++)
                printf("%*s%s: %s%s%s\n", i > 0 ? 16 : 0, "",
                       s->disks[i].target, s->disks[i].snapshot,
                       isempty(s->disks[i].file) ? "" : ", ", s->disks[i].file);
        return 0;
}

int verb_info(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(snapshot_info_done) SnapshotInfo s = {};
        _cleanup_free_ char *domain_path = NULL, *path = NULL;
        bool json = arg_json != JSON_OFF;
        int r;

        r = bus_get_domain(bus, a->args[0], &domain_path);
        if (r < 0)
                return r;

        r = bus_lookup_snapshot(bus, a->args[0], domain_path, a->args[1], &path);
        if (r < 0)
                return r;

        r = snapshot_info_load(bus, path, json, /* missing_ok= */ false, &s);
        if (r < 0)
                return r;

        if (json) {
                /* The header is read from the file here; over --host it is not ours. */
                if (!isempty(s.memory_file) && !bus_is_remote() &&
                    json_object_set_new(s.json, "MemoryImage", memory_image_json(s.memory_file)) < 0)
                        return log_error_errno(ENOMEM, "Out of memory.");
                r = json_print(s.json);
                if (r < 0)
                        return log_error_errno(r, "Failed to format JSON: %m");
                return 0;
        }

        return print_info(bus, &s);
}

int verb_current(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *domain_path = NULL, *current = NULL, *name = NULL, *xml = NULL;
        const char *domain = a->args[0];
        int r;

        r = bus_get_domain(bus, domain, &domain_path);
        if (r < 0)
                return r;

        r = bus_get_string_property(bus, domain_path, SNAPSHOT_IFACE_DOMAIN, "CurrentSnapshot", &error, &current);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to get current snapshot of domain '%s'", domain);

        if (streq(current, "/")) {
                /* There is no such snapshot to show: the same status as a name not found. */
                exit_status_note(EXIT_NO_SUCH_OBJECT);
                return log_error_errno(ENOENT, "Domain '%s' has no current snapshot.", domain);
        }

        r = snapshot_name_of(bus, current, &name);
        if (r < 0)
                return r;

        if (!verb_has(a, "name")) {
                r = get_xml_desc(bus, current, name, verb_flags(a), &xml);
                if (r < 0)
                        return r;
        }

        return print_named_xml(domain, name, xml);
}
