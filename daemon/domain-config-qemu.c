/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The <qemu> element of a managed domain's config:
 *
 *   <domain name="vm2" managed="yes">
 *     <images dir="/var/lib/snapshotd/images/vm2"/>
 *     <agent/>                                    <!-- optional: a guest agent channel -->
 *     <qemu binary="/usr/bin/qemu-system-x86_64">
 *       <machine>q35</machine> <accel>auto</accel>
 *       <memory unit="MiB">1024</memory> <vcpus>2</vcpus>
 *       <disk target="vda" file="root.qcow2" format="qcow2" serial="root"/>
 *       <kernel>/boot/vmlinuz</kernel> <initrd>...</initrd> <cmdline>...</cmdline>
 *                                     (relative disk, kernel, initrd paths: in the images dir)
 *       <arg>-serial</arg> <arg>file:/var/log/vm2.log</arg>
 *       <shutdown timeout="60"/>
 *     </qemu>
 *   </domain> */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

#include "xml-util.h"
#include "domain-config.h"
#include "macro.h"
#include "path-util.h"

QemuDef *qemu_def_free(QemuDef *q) {
        if (!q)
                return NULL;
        free(q->binary);
        free(q->machine);
        free(q->accel);
        for (size_t i = 0; i < q->n_disks; i++) {
                free(q->disks[i].target);
                free(q->disks[i].file);
                free(q->disks[i].format);
                free(q->disks[i].serial);
        }
        free(q->disks);
        free(q->kernel);
        free(q->initrd);
        free(q->cmdline);
        strv_free(q->args);
        free(q);
        return NULL;
}

static void qemu_def_freep(QemuDef **q) {
        qemu_def_free(*q);
}

static int child_text_or(const xmlNode *n, const char *name, const char *def, char **ret) {
        int r = xml_child_text(n, name, ret);

        if (r == -ENOENT) {
                *ret = def ? strdup(def) : NULL;
                return def && !*ret ? -ENOMEM : 0;
        }
        return r;
}

/* Values that end up inside a QEMU option string ("driver=%s,...") may not carry commas, '='
 * or spaces, which would smuggle in further options. */
static bool option_value_ok(const char *s) {
        return !isempty(s) && !strpbrk(s, " ,=\t\n");
}

/* A relative path is relative to the images dir; commas would split QEMU's option string. */
static int resolve_path(const char *images_dir, char *path /* taken */, char **ret) {
        _cleanup_free_ char *p = path;

        if (isempty(p))
                return -EINVAL;
        if (p[0] != '/') {
                char *abs;

                if (asprintf(&abs, "%s/%s", images_dir, p) < 0)
                        return -ENOMEM;
                free(p);
                p = abs;
        }
        if (strchr(p, ','))
                return -EINVAL;
        *ret = TAKE_PTR(p);
        return 0;
}

static int parse_uint(const xmlNode *n, const char *name, uint64_t def, uint64_t max, uint64_t *ret) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = xml_child_text(n, name, &s);
        if (r == -ENOENT) {
                *ret = def;
                return 0;
        }
        if (r < 0)
                return r;
        r = xml_parse_u64(s, ret);
        if (r < 0 || *ret == 0 || *ret > max)
                return -EINVAL;
        return 0;
}

static int parse_memory(const xmlNode *n, uint64_t *ret) {
        _cleanup_free_ char *unit = NULL;
        xmlNode *m = xml_child(n, "memory");
        uint64_t v;
        int r;

        r = parse_uint(n, "memory", 512, UINT64_C(1) << 40, &v);
        if (r < 0)
                return r;
        if (m && xml_attr(m, "unit", &unit) >= 0) {
                if (streq(unit, "GiB"))
                        v *= 1024;
                else if (streq(unit, "KiB"))
                        v /= 1024;
                else if (!streq(unit, "MiB"))
                        return -EINVAL;
        }
        if (v == 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

int qemu_def_parse(const void *node, const char *images_dir, QemuDef **ret) {
        const xmlNode *n = node;
        _cleanup_(qemu_def_freep) QemuDef *q = NULL;
        size_t n_args = 0;
        uint64_t v;
        int r;

        q = calloc(1, sizeof(QemuDef));
        if (!q)
                return -ENOMEM;

        r = xml_attr(n, "binary", &q->binary);
        if (r == -ENOENT)
                q->binary = strdup("qemu-system-x86_64");
        else if (r < 0)
                return r;
        if (!q->binary)
                return -ENOMEM;

        if ((r = child_text_or(n, "machine", "pc", &q->machine)) < 0 ||
            (r = child_text_or(n, "accel", "auto", &q->accel)) < 0 ||
            (r = child_text_or(n, "kernel", NULL, &q->kernel)) < 0 ||
            (r = child_text_or(n, "initrd", NULL, &q->initrd)) < 0 ||
            (r = child_text_or(n, "cmdline", NULL, &q->cmdline)) < 0)
                return r;
        if (!streq(q->accel, "kvm") && !streq(q->accel, "tcg") && !streq(q->accel, "auto"))
                return -EINVAL;
        if (isempty(q->binary) || isempty(q->machine))
                return -EINVAL;
        if (q->kernel) {
                r = resolve_path(images_dir, TAKE_PTR(q->kernel), &q->kernel);
                if (r < 0)
                        return r;
        }
        if (q->initrd) {
                r = resolve_path(images_dir, TAKE_PTR(q->initrd), &q->initrd);
                if (r < 0)
                        return r;
        }

        r = parse_memory(n, &q->memory_mib);
        if (r < 0)
                return r;
        r = parse_uint(n, "vcpus", 1, 256, &v);
        if (r < 0)
                return r;
        q->vcpus = (unsigned) v;

        q->shutdown_timeout = 60;
        if (xml_child(n, "shutdown")) {
                _cleanup_free_ char *t = NULL;

                if (xml_attr(xml_child(n, "shutdown"), "timeout", &t) >= 0) {
                        if (xml_parse_u64(t, &v) < 0 || v == 0 || v > 3600)
                                return -EINVAL;
                        q->shutdown_timeout = (unsigned) v;
                }
        }

        q->disks = calloc(xml_count_children(n, "disk") + 1, sizeof(QemuDiskDef));
        q->args = calloc(xml_count_children(n, "arg") + 1, sizeof(char *));
        if (!q->disks || !q->args)
                return -ENOMEM;
        for (xmlNode *c = n->children; c; c = c->next) {
                if (xml_node_is(c, "disk")) {
                        QemuDiskDef *d = &q->disks[q->n_disks++];
                        _cleanup_free_ char *file = NULL;

                        if (xml_attr(c, "target", &d->target) < 0 || xml_attr(c, "file", &file) < 0)
                                return -EINVAL;
                        if (xml_attr(c, "format", &d->format) == -ENOENT)
                                d->format = strdup("qcow2");
                        if (!d->format)
                                return -ENOMEM;
                        if (!snapshot_name_is_valid(d->target) || !option_value_ok(d->target) ||
                            !option_value_ok(d->format))
                                return -EINVAL;
                        if (xml_attr(c, "serial", &d->serial) >= 0 && !option_value_ok(d->serial))
                                return -EINVAL;
                        /* The target names the device and its block nodes: one disk each. */
                        for (size_t k = 0; k + 1 < q->n_disks; k++)
                                if (streq(q->disks[k].target, d->target))
                                        return -EINVAL;
                        r = resolve_path(images_dir, TAKE_PTR(file), &d->file);
                        if (r < 0)
                                return r;
                } else if (xml_node_is(c, "arg")) {
                        r = xml_node_text(c, &q->args[n_args]);
                        if (r < 0)
                                return r;
                        n_args++;
                }
        }

        *ret = TAKE_PTR(q);
        return 0;
}
