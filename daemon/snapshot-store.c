/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

#include "xml-util.h"
#include "macro.h"
#include "path-util.h"
#include "snapshot-store.h"

/* What libvirt's schema accepts in <state>. */
static const char *const snapshot_states[] = {
        "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "disk-snapshot",
};

static bool snapshot_state_is_valid(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(snapshot_states); i++)
                if (streq(snapshot_states[i], s))
                        return true;
        return false;
}

/* ---- format ---------------------------------------------------------------------------- */

static bool domain_def_strings_valid(const DomainDef *dom) {
        if (!xml_string_is_valid(dom->name))
                return false;
        for (size_t i = 0; i < dom->n_disks; i++)
                if (!xml_string_is_valid(dom->disks[i].target) ||
                    !xml_string_is_valid(dom->disks[i].file) ||
                    !xml_string_is_valid(dom->disks[i].format) ||
                    !xml_string_is_valid(dom->disks[i].node_name))
                        return false;
        return true;
}

static bool snapshot_def_strings_valid(const SnapshotDef *def) {
        const char *top[] = { def->name, def->description, def->parent, def->state,
                              def->memory_file };

        for (size_t i = 0; i < ELEMENTSOF(top); i++)
                if (!xml_string_is_valid(top[i]))
                        return false;
        for (size_t i = 0; i < def->n_disks; i++)
                if (!xml_string_is_valid(def->disks[i].target) ||
                    !xml_string_is_valid(def->disks[i].file) ||
                    !xml_string_is_valid(def->disks[i].format))
                        return false;
        return domain_def_strings_valid(&def->domain);
}

/* Written as text (XmlWriter), in the order and layout libxml2 printed the tree this used
 * to build: GetXMLDesc formats a record per call. */

static void format_disks(XmlWriter *w, const SnapshotDef *def) {
        if (def->n_disks == 0)
                return;

        xml_writer_open(w, "disks", NULL);
        for (size_t i = 0; i < def->n_disks; i++) {
                const SnapshotDiskDef *d = &def->disks[i];
                const char *location = d->location != SNAPSHOT_LOCATION_DEFAULT ?
                                       snapshot_location_to_string(d->location) : NULL;
                /* libvirt's schema allows a source and driver only for external disks. */
                bool ext = IN_SET2(d->location, SNAPSHOT_LOCATION_DEFAULT, SNAPSHOT_LOCATION_EXTERNAL);

                if (!ext || (!d->format && !d->file)) {
                        xml_writer_empty(w, "disk", "name", d->target, "snapshot", location,
                                         "type", ext && d->file ? "file" : NULL, NULL);
                        continue;
                }
                xml_writer_open(w, "disk", "name", d->target, "snapshot", location,
                                "type", d->file ? "file" : NULL, NULL);
                if (d->format)
                        xml_writer_empty(w, "driver", "type", d->format, NULL);
                if (d->file)
                        xml_writer_empty(w, "source", "file", d->file, NULL);
                xml_writer_close(w, "disk");
        }
        xml_writer_close(w, "disks");
}

/* The <domain> element: the one writer for both the <domain> section of a <domainsnapshot>
 * and the standalone document of domain_def_format_xml(). */
static void format_domain(XmlWriter *w, const DomainDef *dom) {
        char buf[32];

        xml_writer_open(w, "domain", "type", "qemu", NULL);
        xml_writer_text(w, "name", dom->name, NULL);
        (void) snprintf(buf, sizeof(buf), "%" PRIu64, dom->memory_kib);
        xml_writer_text(w, "memory", buf, "unit", "KiB", NULL);
        (void) snprintf(buf, sizeof(buf), "%u", dom->vcpus);
        xml_writer_text(w, "vcpu", buf, NULL);
        xml_writer_open(w, "os", NULL);
        xml_writer_text(w, "type", "hvm", "arch", "x86_64", NULL);
        xml_writer_close(w, "os");

        if (dom->n_disks == 0)
                xml_writer_empty(w, "devices", NULL);
        else {
                xml_writer_open(w, "devices", NULL);
                for (size_t i = 0; i < dom->n_disks; i++) {
                        const DomainDiskDef *d = &dom->disks[i];

                        xml_writer_open(w, "disk", "type", "file", "device", "disk", NULL);
                        xml_writer_empty(w, "driver", "name", "qemu", "type", d->format, NULL);
                        if (d->file)
                                xml_writer_empty(w, "source", "file", d->file, NULL);
                        xml_writer_empty(w, "target", "dev", d->target, "bus", "virtio", NULL);
                        xml_writer_close(w, "disk");
                }
                xml_writer_close(w, "devices");
        }
        xml_writer_close(w, "domain");
}

static bool domain_disks_have_targets(const DomainDef *dom) {
        for (size_t i = 0; i < dom->n_disks; i++)
                if (isempty(dom->disks[i].target))
                        return false;
        return true;
}

int domain_def_format_xml(const DomainDef *def, char **ret) {
        XmlWriter w = {};

        if (!def || !ret)
                return -EINVAL;
        if (isempty(def->name) || !domain_def_strings_valid(def) || !domain_disks_have_targets(def))
                return -EINVAL;

        format_domain(&w, def);
        return xml_writer_finish(&w, ret);
}

/* What libvirt has no place for, in one element of our namespace inside <cookie>. */
static void format_cookie(XmlWriter *w, const SnapshotDef *def) {
        char buf[32];

        xml_writer_open(w, "cookie", NULL);
        xml_writer_open(w, "snapshotd", "xmlns", SNAPSHOTD_XML_NS, NULL);
        (void) snprintf(buf, sizeof(buf), "%" PRIu64, def->creation_usec);
        xml_writer_text(w, "creation-time", buf, NULL);
        xml_writer_text(w, "quiesced", def->quiesced ? "yes" : "no", NULL);
        for (size_t i = 0; i < def->domain.n_disks; i++) {
                const DomainDiskDef *d = &def->domain.disks[i];

                if (!d->node_name)
                        continue;
                (void) snprintf(buf, sizeof(buf), "%zu", i);
                xml_writer_empty(w, "disk", "index", buf, "target", d->target, "node-name", d->node_name, NULL);
        }
        xml_writer_close(w, "snapshotd");
        xml_writer_close(w, "cookie");
}

int snapshot_xml_format(const SnapshotDef *def, char **ret) {
        XmlWriter w = {};
        char buf[32];

        if (!def || !ret)
                return -EINVAL;
        if (!snapshot_def_strings_valid(def))
                return -EINVAL;
        if (def->state && !snapshot_state_is_valid(def->state))
                return -EINVAL;
        if (def->memory < 0 || def->memory >= _SNAPSHOT_LOCATION_MAX)
                return -EINVAL;
        for (size_t i = 0; i < def->n_disks; i++) {
                if (def->disks[i].location < 0 || def->disks[i].location >= _SNAPSHOT_LOCATION_MAX)
                        return -EINVAL;
                if (isempty(def->disks[i].target))
                        return -EINVAL;
        }
        if (def->domain.name && !domain_disks_have_targets(&def->domain))
                return -EINVAL;

        xml_writer_open(&w, "domainsnapshot", NULL);
        if (def->name)
                xml_writer_text(&w, "name", def->name, NULL);
        /* NULL and "" differ: no element vs. an empty one. */
        if (def->description)
                xml_writer_text(&w, "description", def->description, NULL);
        if (def->state)
                xml_writer_text(&w, "state", def->state, NULL);
        if (def->parent) {
                xml_writer_open(&w, "parent", NULL);
                xml_writer_text(&w, "name", def->parent, NULL);
                xml_writer_close(&w, "parent");
        }
        (void) snprintf(buf, sizeof(buf), "%" PRIu64, def->creation_usec / USEC_PER_SEC);
        xml_writer_text(&w, "creationTime", buf, NULL);

        if (def->memory != SNAPSHOT_LOCATION_DEFAULT || def->memory_file)
                /* The schema has a file only for external memory. */
                xml_writer_empty(&w, "memory",
                                 "snapshot", def->memory != SNAPSHOT_LOCATION_DEFAULT ?
                                             snapshot_location_to_string(def->memory) : NULL,
                                 "file", IN_SET2(def->memory, SNAPSHOT_LOCATION_DEFAULT, SNAPSHOT_LOCATION_EXTERNAL) ?
                                         def->memory_file : NULL,
                                 NULL);

        format_disks(&w, def);

        if (def->current)
                xml_writer_text(&w, "active", "1", NULL);

        if (def->domain.name)
                format_domain(&w, &def->domain);

        format_cookie(&w, def);
        xml_writer_close(&w, "domainsnapshot");
        return xml_writer_finish(&w, ret);
}

/* ---- parse ----------------------------------------------------------------------------- */

static char *strip(char *s) {
        char *e;

        s += strspn(s, " \t\r\n");
        e = s + strlen(s);
        while (e > s && strchr(" \t\r\n", e[-1]))
                *--e = 0;
        return s;
}

static int child_u64(const xmlNode *parent, const char *name, uint64_t *ret) {
        _cleanup_free_ char *t = NULL;
        int r;

        r = xml_child_text(parent, name, &t);
        if (r < 0)
                return r;
        r = xml_parse_u64(strip(t), ret);
        return r < 0 ? -EINVAL : 0;
}

static int attr_location(const xmlNode *n, SnapshotLocation *ret) {
        _cleanup_free_ char *s = NULL;
        SnapshotLocation l;
        int r;

        r = xml_attr(n, "snapshot", &s);
        if (r == -ENOENT) {
                *ret = SNAPSHOT_LOCATION_DEFAULT;
                return 0;
        }
        if (r < 0)
                return r;
        l = snapshot_location_from_string(s);
        /* "" is our spelling of "not said", never a value in XML. */
        if (l < 0 || l == SNAPSHOT_LOCATION_DEFAULT)
                return -EINVAL;
        *ret = l;
        return 0;
}

/* libvirt's scaled integers: b/bytes, k/KiB = 1024, KB = 1000, and so on up to E. */
static int parse_memory_kib(const xmlNode *n, uint64_t *ret) {
        _cleanup_free_ char *text = NULL, *unit = NULL;
        uint64_t v, scale = 1024, base = 1024;
        const char *u;
        int r;

        r = xml_node_text(n, &text);
        if (r < 0)
                return r;
        r = xml_parse_u64(strip(text), &v);
        if (r < 0)
                return -EINVAL;

        r = xml_attr(n, "unit", &unit);
        if (r < 0 && r != -ENOENT)
                return r;
        u = unit ? unit : "KiB";
        if (strcasecmp(u, "b") == 0 || strcasecmp(u, "bytes") == 0)
                scale = 1;
        else {
                const char *p = strchr("kmgtpe", u[0] | 0x20);
                unsigned power;

                if (!p || !u[0])
                        return -EINVAL;
                power = p - "kmgtpe" + 1;
                if (u[1] == 0 || strcasecmp(u + 1, "ib") == 0)
                        base = 1024;
                else if (strcasecmp(u + 1, "b") == 0)
                        base = 1000;
                else
                        return -EINVAL;
                scale = 1;
                for (unsigned i = 0; i < power; i++)
                        scale *= base;
        }
        if (v != 0 && scale > UINT64_MAX / v)
                return -ERANGE;
        v *= scale;
        /* Round up to whole KiB, as libvirt does. */
        *ret = v / 1024 + (v % 1024 != 0);
        return 0;
}

static int parse_snapshot_disks(const xmlNode *root, SnapshotDef *def) {
        const xmlNode *disks;
        size_t n;
        int r;

        disks = xml_child(root, "disks");
        n = xml_count_children(disks, "disk");
        if (n == 0)
                return 0;
        def->disks = calloc(n, sizeof(SnapshotDiskDef));
        if (!def->disks)
                return -ENOMEM;

        for (xmlNode *e = xml_child(disks, "disk"); e; e = xml_next_named(e)) {
                SnapshotDiskDef *d = &def->disks[def->n_disks++];
                xmlNode *source;

                r = xml_attr(e, "name", &d->target);
                if (r < 0)
                        return r == -ENOENT ? -EINVAL : r;
                r = attr_location(e, &d->location);
                if (r < 0)
                        return r;

                source = xml_child(e, "source");
                if (source) {
                        r = xml_attr(source, "file", &d->file);
                        if (r == -ENOENT)
                                r = xml_attr(source, "dev", &d->file);
                        if (r < 0 && r != -ENOENT)
                                return r;
                }
                r = xml_attr(xml_child(e, "driver"), "type", &d->format);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return 0;
}

static int parse_domain(const xmlNode *root, DomainDef *dom) {
        const xmlNode *domain, *devices, *n;
        size_t k = 0;
        int r;

        domain = xml_child(root, "domain");
        /* libvirt also writes <domain><uuid/></domain> alone: nothing for us then. */
        if (!domain || !xml_child(domain, "name"))
                return 0;

        r = xml_child_text(domain, "name", &dom->name);
        if (r < 0)
                return r;

        n = xml_child(domain, "memory");
        if (n) {
                r = parse_memory_kib(n, &dom->memory_kib);
                if (r < 0)
                        return r;
        }

        if (xml_child(domain, "vcpu")) {
                uint64_t v;

                r = child_u64(domain, "vcpu", &v);
                if (r < 0)
                        return r;
                if (v > UINT_MAX)
                        return -ERANGE;
                dom->vcpus = v;
        }

        devices = xml_child(domain, "devices");
        for (xmlNode *e = xml_child(devices, "disk"); e; e = xml_next_named(e))
                k++;
        if (k == 0)
                return 0;
        dom->disks = calloc(k, sizeof(DomainDiskDef));
        if (!dom->disks)
                return -ENOMEM;

        for (xmlNode *e = xml_child(devices, "disk"); e; e = xml_next_named(e)) {
                _cleanup_free_ char *device = NULL;
                DomainDiskDef *d;
                xmlNode *source;

                /* CD-ROMs and floppies are not snapshotted. */
                r = xml_attr(e, "device", &device);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (device && !streq(device, "disk"))
                        continue;

                d = &dom->disks[dom->n_disks++];
                r = xml_attr(xml_child(e, "target"), "dev", &d->target);
                if (r < 0)
                        return r == -ENOENT ? -EINVAL : r;
                source = xml_child(e, "source");
                if (source) {
                        r = xml_attr(source, "file", &d->file);
                        if (r == -ENOENT)
                                r = xml_attr(source, "dev", &d->file);
                        if (r < 0 && r != -ENOENT)
                                return r;
                }
                r = xml_attr(xml_child(e, "driver"), "type", &d->format);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return 0;
}

static xmlNode *ns_child(const xmlNode *parent, const char *name) {
        if (!parent)
                return NULL;
        for (xmlNode *c = parent->children; c; c = c->next)
                if (xml_node_is_ns(c, name, SNAPSHOTD_XML_NS))
                        return c;
        return NULL;
}

static int parse_cookie(const xmlNode *root, SnapshotDef *def) {
        _cleanup_free_ char *t = NULL;
        const xmlNode *ours, *n;
        int r;

        ours = ns_child(xml_child(root, "cookie"), "snapshotd");
        if (!ours)
                return 0;

        n = ns_child(ours, "creation-time");
        if (n) {
                uint64_t usec;

                r = xml_node_text(n, &t);
                if (r < 0)
                        return r;
                r = xml_parse_u64(strip(t), &usec);
                if (r < 0)
                        return -EINVAL;
                def->creation_usec = usec;
                free(t);
                t = NULL;
        }

        n = ns_child(ours, "quiesced");
        if (n) {
                const char *s;

                r = xml_node_text(n, &t);
                if (r < 0)
                        return r;
                s = strip(t);
                if (streq(s, "yes"))
                        def->quiesced = true;
                else if (streq(s, "no"))
                        def->quiesced = false;
                else
                        return -EINVAL;
        }

        for (xmlNode *c = ours->children; c; c = c->next) {
                _cleanup_free_ char *idx = NULL, *target = NULL, *node = NULL;
                uint64_t i;

                if (!xml_node_is_ns(c, "disk", SNAPSHOTD_XML_NS))
                        continue;
                if (xml_attr(c, "index", &idx) < 0 || xml_attr(c, "target", &target) < 0 ||
                    xml_attr(c, "node-name", &node) < 0)
                        return -EINVAL;
                r = xml_parse_u64(idx, &i);
                if (r < 0)
                        return -EINVAL;
                /* Someone may have edited the <domain> section: only a disk that still sits
                 * at that index under that target gets the node name. */
                if (i >= def->domain.n_disks || !streq_ptr(def->domain.disks[i].target, target))
                        continue;
                free(def->domain.disks[i].node_name);
                def->domain.disks[i].node_name = TAKE_PTR(node);
        }
        return 0;
}

static int snapshot_xml_parse_with(XmlParser *parser, const char *xml, size_t size, SnapshotDef **ret) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        _cleanup_free_ char *active = NULL;
        xmlNode *root, *n;
        int r;

        if (!xml || !ret)
                return -EINVAL;

        if (parser)
                r = xml_parser_parse(parser, xml, size, SNAPSHOT_XML_MAX_SIZE, &doc);
        else
                r = xml_parse_safe(xml, size, SNAPSHOT_XML_MAX_SIZE, &doc);
        if (r < 0)
                return r;
        root = xmlDocGetRootElement(doc);
        if (!xml_node_is(root, "domainsnapshot"))
                return -EINVAL;

        def = calloc(1, sizeof(SnapshotDef));
        if (!def)
                return -ENOMEM;

        r = xml_child_text(root, "name", &def->name);
        if (r < 0 && r != -ENOENT)
                return r;
        r = xml_child_text(root, "description", &def->description);
        if (r < 0 && r != -ENOENT)
                return r;
        r = xml_child_text(root, "state", &def->state);
        if (r < 0 && r != -ENOENT)
                return r;
        if (def->state && !snapshot_state_is_valid(def->state))
                return -EINVAL;

        n = xml_child(root, "parent");
        if (n) {
                r = xml_child_text(n, "name", &def->parent);
                if (r < 0)
                        return r == -ENOENT ? -EINVAL : r;
        }

        if (xml_child(root, "creationTime")) {
                uint64_t sec;

                r = child_u64(root, "creationTime", &sec);
                if (r < 0)
                        return r;
                if (sec > UINT64_MAX / USEC_PER_SEC)
                        return -EINVAL;
                def->creation_usec = sec * USEC_PER_SEC;
        }

        n = xml_child(root, "memory");
        if (n) {
                r = attr_location(n, &def->memory);
                if (r < 0)
                        return r;
                r = xml_attr(n, "file", &def->memory_file);
                if (r < 0 && r != -ENOENT)
                        return r;
        }

        r = parse_snapshot_disks(root, def);
        if (r < 0)
                return r;

        r = xml_child_text(root, "active", &active);
        if (r >= 0) {
                const char *s = strip(active);

                if (streq(s, "1"))
                        def->current = true;
                else if (!streq(s, "0"))
                        return -EINVAL;
        } else if (r != -ENOENT)
                return r;

        r = parse_domain(root, &def->domain);
        if (r < 0)
                return r;

        /* Last: the cookie refines what the plain libvirt elements said. */
        r = parse_cookie(root, def);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(def);
        return 0;
}

int snapshot_xml_parse(const char *xml, size_t size, SnapshotDef **ret) {
        return snapshot_xml_parse_with(NULL, xml, size, ret);
}

/* ---- store ----------------------------------------------------------------------------- */

static int store_dir(const char *state_dir, const char *domain, char **ret) {
        if (isempty(state_dir) || !snapshot_name_is_valid(domain))
                return -EINVAL;
        return asprintf(ret, "%s/snapshots/%s", state_dir, domain) < 0 ? -ENOMEM : 0;
}

static int store_filename(const char *name, char **ret) {
        if (!snapshot_name_is_valid(name))
                return -EINVAL;
        /* A valid name may be 255 bytes; with ".xml" it would not fit a file name. */
        if (strlen(name) + strlen(".xml") > NAME_MAX)
                return -ENAMETOOLONG;
        return asprintf(ret, "%s.xml", name) < 0 ? -ENOMEM : 0;
}

int snapshot_store_remove(const char *state_dir, const char *domain, const char *name) {
        int r;

        r = snapshot_store_unlink(state_dir, domain, name);
        if (r < 0)
                return r;
        return snapshot_store_sync_dir(state_dir, domain);
}

int snapshot_store_unlink(const char *state_dir, const char *domain, const char *name) {
        _cleanup_free_ char *dir = NULL, *filename = NULL, *path = NULL;
        int r;

        r = store_dir(state_dir, domain, &dir);
        if (r < 0)
                return r;
        r = store_filename(name, &filename);
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/%s", dir, filename) < 0)
                return -ENOMEM;
        return unlink(path) < 0 ? -errno : 0;
}

int snapshot_store_sync_dir(const char *state_dir, const char *domain) {
        _cleanup_free_ char *dir = NULL;
        int r;

        r = store_dir(state_dir, domain, &dir);
        if (r < 0)
                return r;
        return fsync_dir(dir);
}

struct StagedRecord {
        char *dir;
        char *xml;              /* the text, until written */
        char *tmp;              /* NULL before it is written and once committed */
        char *final;
};

int snapshot_store_prepare(const char *state_dir, const char *domain, const SnapshotDef *def, StagedRecord **ret) {
        _cleanup_(staged_record_freep) StagedRecord *st = NULL;
        _cleanup_free_ char *filename = NULL;
        int r;

        if (!def || !ret)
                return -EINVAL;
        st = calloc(1, sizeof(StagedRecord));
        if (!st)
                return -ENOMEM;
        r = store_dir(state_dir, domain, &st->dir);
        if (r < 0)
                return r;
        r = store_filename(def->name, &filename);
        if (r < 0)
                return r;
        if (asprintf(&st->final, "%s/%s", st->dir, filename) < 0)
                return -ENOMEM;
        r = snapshot_xml_format(def, &st->xml);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(st);
        return 0;
}

int staged_record_write(StagedRecord *st) {
        int r;

        if (!st || !st->xml)
                return -EINVAL;
        r = mkdir_p(st->dir, 0700);
        if (r < 0)
                return r;
        r = xml_file_write_temp(st->dir, st->xml, strlen(st->xml), &st->tmp);
        if (r < 0)
                return r;
        st->xml = mfree(st->xml);
        return 0;
}

bool staged_record_written(const StagedRecord *st) {
        return st && !st->xml;
}

int snapshot_store_stage(const char *state_dir, const char *domain, const SnapshotDef *def, StagedRecord **ret) {
        _cleanup_(staged_record_freep) StagedRecord *st = NULL;
        int r;

        r = snapshot_store_prepare(state_dir, domain, def, &st);
        if (r < 0)
                return r;
        r = staged_record_write(st);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(st);
        return 0;
}

int staged_record_commit(StagedRecord *r) {
        if (!r || !r->tmp)
                return -EINVAL;
        if (rename(r->tmp, r->final) < 0)
                return -errno;
        r->tmp = mfree(r->tmp);
        return 0;
}

int staged_record_sync(const StagedRecord *r) {
        return r ? fsync_dir(r->dir) : -EINVAL;
}

/* Written, renamed in and synced: the staged path without the wait in between. */
int snapshot_store_save(const char *state_dir, const char *domain, const SnapshotDef *def) {
        _cleanup_(staged_record_freep) StagedRecord *st = NULL;
        int r;

        r = snapshot_store_stage(state_dir, domain, def, &st);
        if (r < 0)
                return r;
        r = staged_record_commit(st);
        if (r < 0)
                return r;
        return staged_record_sync(st);
}

StagedRecord *staged_record_free(StagedRecord *r) {
        if (!r)
                return NULL;
        if (r->tmp)
                (void) unlink(r->tmp);
        free(r->tmp);
        free(r->xml);
        free(r->final);
        free(r->dir);
        free(r);
        return NULL;
}

static void snapshot_def_array_free(SnapshotDef **a, size_t n) {
        if (!a)
                return;
        for (size_t i = 0; i < n; i++)
                snapshot_def_free(a[i]);
        free(a);
}

/* Reads and parses one record; -ENOMEM stops the load, any other error marks the file bad. */
static int load_one(XmlParser *parser, XmlReadBuffer *buf, int dir_fd, const char *filename,
                    SnapshotDef **ret) {
        _cleanup_(snapshot_def_freep) SnapshotDef *def = NULL;
        _cleanup_free_ char *expected = NULL;
        int r;

        r = xml_file_read_into(dir_fd, filename, SNAPSHOT_XML_MAX_SIZE, buf);
        if (r < 0)
                return r;
        r = snapshot_xml_parse_with(parser, buf->data, buf->size, &def);
        if (r < 0)
                return r;
        /* A file whose name does not match the snapshot inside is as good as corrupt: saving
         * or removing by name would not find it. */
        r = store_filename(def->name, &expected);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !streq(expected, filename))
                return -EINVAL;
        *ret = TAKE_PTR(def);
        return 0;
}

/* A share of a directory's files, loaded by one thread. Reading and parsing is most of a
 * start-up with many snapshots (~20 us a record) and touches nothing but its own parser and
 * slots, so two halves run on two cores. Packing stays on the calling thread, so what the
 * daemon keeps is allocated from its own heap, not from a helper thread's malloc arena. */
typedef struct LoadBatch {
        int dir_fd;
        char **names;
        SnapshotDef **defs;     /* per name: the parsed record, NULL when bad */
        size_t lo, hi;
        int r;                  /* -ENOMEM, or 0 */
} LoadBatch;

static void *load_batch(void *arg) {
        _cleanup_(xml_parser_freep) XmlParser *parser = NULL;
        XmlReadBuffer buf = {};
        LoadBatch *b = arg;

        /* One parser and one read buffer for the batch: its dictionary and buffers serve
         * every record. */
        b->r = xml_parser_new(true, &parser);
        if (b->r < 0)
                return NULL;
        for (size_t i = b->lo; i < b->hi; i++)
                if (load_one(parser, &buf, b->dir_fd, b->names[i], &b->defs[i]) == -ENOMEM) {
                        b->r = -ENOMEM;
                        break;
                }
        xml_read_buffer_done(&buf);
        return NULL;
}

/* Below this a thread costs more than it saves. */
#define LOAD_PARALLEL_MIN 64

static bool load_in_parallel(size_t n) {
        cpu_set_t set;

        if (n < LOAD_PARALLEL_MIN)
                return false;
        if (sched_getaffinity(0, sizeof(set), &set) < 0)
                return false;
        return CPU_COUNT(&set) > 1;
}

/* The record files of an open store directory (names ending in .xml, hidden ones skipped). */
static int list_records(DIR *d, char ***ret, size_t *ret_n) {
        char **names = NULL;
        size_t n = 0, n_alloc = 0;
        struct dirent *de;
        int r;

        while ((errno = 0, de = readdir(d))) {
                size_t len;

                /* Our own ".tmp-XXXXXX" files are leftovers of a crash (no job runs on a
                 * domain being loaded): gone. Other hidden files are not ours. */
                if (de->d_name[0] == '.') {
                        if (strncmp(de->d_name, ".tmp-", 5) == 0)
                                (void) unlinkat(dirfd(d), de->d_name, 0);
                        continue;
                }
                len = strlen(de->d_name);
                if (len <= 4 || !streq(de->d_name + len - 4, ".xml"))
                        continue;
                if (n + 1 >= n_alloc) {
                        size_t na = n_alloc ? n_alloc * 2 : 64;
                        char **nl = reallocarray(names, na, sizeof(char *));

                        if (!nl) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        names = nl;
                        n_alloc = na;
                }
                names[n] = strdup(de->d_name);
                if (!names[n]) {
                        r = -ENOMEM;
                        goto fail;
                }
                names[++n] = NULL;
        }
        if (errno != 0) {
                r = -errno;
                goto fail;
        }
        *ret = names;
        *ret_n = n;
        return 0;

fail:
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return r;
}

int snapshot_store_load(const char *state_dir, const char *domain,
                        SnapshotDef ***ret, size_t *ret_n, size_t *ret_n_bad) {
        _cleanup_free_ char *dir = NULL;
        _cleanup_free_ SnapshotDef **defs = NULL;
        SnapshotDef **list = NULL;
        char **names = NULL;
        size_t n_names = 0, n = 0, n_bad = 0;
        LoadBatch b[2] = {};
        pthread_t thread;
        bool threaded = false;
        DIR *d;
        int r;

        if (!ret || !ret_n)
                return -EINVAL;
        r = store_dir(state_dir, domain, &dir);
        if (r < 0)
                return r;

        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
                *ret = NULL;
                *ret_n = 0;
                if (ret_n_bad)
                        *ret_n_bad = 0;
                return 0;
        }

        r = list_records(d, &names, &n_names);
        if (r < 0)
                goto finish;
        defs = calloc(n_names + 1, sizeof(SnapshotDef *));
        list = calloc(n_names + 1, sizeof(SnapshotDef *));
        if (!defs || !list) {
                r = -ENOMEM;
                goto finish;
        }

        b[0] = (LoadBatch) { .dir_fd = dirfd(d), .names = names, .defs = defs, .lo = 0, .hi = n_names };
        if (load_in_parallel(n_names)) {
                xml_parser_init();      /* once, on this thread, before any other parses */
                b[1] = b[0];
                b[0].hi = b[1].lo = n_names / 2;
                /* Without a thread the second half is loaded here too. */
                threaded = pthread_create(&thread, NULL, load_batch, &b[1]) == 0;
        }
        (void) load_batch(&b[0]);
        if (threaded)
                (void) pthread_join(thread, NULL);
        else if (b[1].hi > b[1].lo)
                (void) load_batch(&b[1]);
        r = b[0].r < 0 ? b[0].r : b[1].r;
        if (r < 0)
                goto finish;

        for (size_t i = 0; i < n_names; i++) {
                if (!defs[i]) {
                        n_bad++;
                        continue;
                }
                /* Kept for the daemon's lifetime: one block instead of a dozen small ones. */
                r = snapshot_def_pack(defs[i], &list[n]);
                if (r < 0)
                        goto finish;
                n++;
        }
        r = 0;

finish:
        closedir(d);
        for (size_t i = 0; i < n_names; i++) {
                snapshot_def_free(defs ? defs[i] : NULL);
                free(names[i]);
        }
        free(names);
        if (r < 0) {
                snapshot_def_array_free(list, n);
                return r;
        }
        *ret = list;
        *ret_n = n;
        if (ret_n_bad)
                *ret_n_bad = n_bad;
        return 0;
}
