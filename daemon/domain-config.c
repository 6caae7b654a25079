/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/tree.h>

#include "xml-util.h"
#include "domain-config.h"
#include "macro.h"
#include "path-util.h"

/* A config file is a handful of lines; anything near this is not one. */
#define DOMAIN_CONFIG_MAX_SIZE (64U * 1024U)

DomainConfig *domain_config_free(DomainConfig *c) {
        if (!c)
                return NULL;
        free(c->name);
        free(c->qmp_socket);
        free(c->agent_socket);
        free(c->images_dir);
        qemu_def_free(c->qemu);
        free(c);
        return NULL;
}

static bool path_is_ok(const char *p) {
        return !isempty(p) && p[0] == '/' && xml_string_is_valid(p);
}

/* Exactly one <element attr="absolute path"/>, or none when optional. Two would leave us
 * guessing which one the admin meant. */
static int parse_path_child(const xmlNode *root, const char *element, const char *attr,
                            bool required, char **ret) {
        _cleanup_free_ char *v = NULL;
        size_t n;
        int r;

        n = xml_count_children(root, element);
        if (n == 0) {
                if (required)
                        return -EINVAL;
                *ret = NULL;
                return 0;
        }
        if (n > 1)
                return -EINVAL;

        r = xml_attr(xml_child(root, element), attr, &v);
        if (r == -ENOENT)
                return -EINVAL;
        if (r < 0)
                return r;
        if (!path_is_ok(v))
                return -EINVAL;

        *ret = TAKE_PTR(v);
        return 0;
}

int domain_config_parse(const char *xml, size_t size, DomainConfig **ret) {
        _cleanup_(domain_config_freep) DomainConfig *c = NULL;
        _cleanup_free_ char *managed = NULL;
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        xmlNode *root;
        int r;

        if (!xml || !ret)
                return -EINVAL;

        r = xml_parse_safe(xml, size, DOMAIN_CONFIG_MAX_SIZE, &doc);
        if (r < 0)
                return r;
        root = xmlDocGetRootElement(doc);
        if (!xml_node_is(root, "domain"))
                return -EINVAL;

        c = calloc(1, sizeof(DomainConfig));
        if (!c)
                return -ENOMEM;

        r = xml_attr(root, "name", &c->name);
        if (r == -ENOENT)
                return -EINVAL;
        if (r < 0)
                return r;
        if (!snapshot_name_is_valid(c->name))
                return -EINVAL;

        r = parse_path_child(root, "images", "dir", true, &c->images_dir);
        if (r < 0)
                return r;

        r = xml_attr(root, "managed", &managed);
        if (r < 0 && r != -ENOENT)
                return r;
        if (managed && streq(managed, "yes")) {
                /* snapshotd starts this QEMU: the sockets are its own (set by the manager). */
                if (xml_count_children(root, "qemu") != 1 || xml_count_children(root, "qmp") != 0)
                        return -EINVAL;
                r = qemu_def_parse(xml_child(root, "qemu"), c->images_dir, &c->qemu);
                if (r < 0)
                        return r;
                c->qemu->agent = xml_count_children(root, "agent") > 0;
                *ret = TAKE_PTR(c);
                return 0;
        }
        if (managed && !streq(managed, "no"))
                return -EINVAL;

        /* Unknown children (later additions) are ignored on purpose, so an older daemon
         * still attaches a domain written for a newer one. */
        r = parse_path_child(root, "qmp", "socket", true, &c->qmp_socket);
        if (r < 0)
                return r;
        r = parse_path_child(root, "agent", "socket", false, &c->agent_socket);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

static int add_path_child(xmlNode *root, const char *element, const char *attr, const char *value) {
        xmlNode *n;

        n = xmlNewChild(root, NULL, BAD_CAST element, NULL);
        if (!n || !xmlSetProp(n, BAD_CAST attr, BAD_CAST value))
                return -ENOMEM;
        return 0;
}

int domain_config_format(const DomainConfig *c, char **ret) {
        _cleanup_(xmlFreeDocp) xmlDoc *doc = NULL;
        xmlNode *root;
        int r;

        if (!c || !ret)
                return -EINVAL;
        /* Refuse what parse would refuse, so a saved file always loads again. */
        if (!snapshot_name_is_valid(c->name) || !path_is_ok(c->qmp_socket) ||
            !path_is_ok(c->images_dir) || (c->agent_socket && !path_is_ok(c->agent_socket)))
                return -EINVAL;

        doc = xmlNewDoc(BAD_CAST "1.0");
        if (!doc)
                return -ENOMEM;
        root = xmlNewDocNode(doc, NULL, BAD_CAST "domain", NULL);
        if (!root)
                return -ENOMEM;
        xmlDocSetRootElement(doc, root);
        if (!xmlSetProp(root, BAD_CAST "name", BAD_CAST c->name))
                return -ENOMEM;

        r = add_path_child(root, "qmp", "socket", c->qmp_socket);
        if (r < 0)
                return r;
        if (c->agent_socket) {
                r = add_path_child(root, "agent", "socket", c->agent_socket);
                if (r < 0)
                        return r;
        }
        r = add_path_child(root, "images", "dir", c->images_dir);
        if (r < 0)
                return r;

        return xml_doc_format(doc, ret);
}

static int config_filename(const char *name, char **ret) {
        if (!snapshot_name_is_valid(name))
                return -EINVAL;
        if (strlen(name) + strlen(".xml") > NAME_MAX)
                return -ENAMETOOLONG;
        return asprintf(ret, "%s.xml", name) < 0 ? -ENOMEM : 0;
}

int domain_config_save(const char *dir, const DomainConfig *c) {
        _cleanup_free_ char *filename = NULL, *xml = NULL;
        int r;

        if (isempty(dir) || !c)
                return -EINVAL;
        r = config_filename(c->name, &filename);
        if (r < 0)
                return r;
        r = domain_config_format(c, &xml);
        if (r < 0)
                return r;
        r = mkdir_p(dir, 0755);
        if (r < 0)
                return r;
        return xml_file_write_atomic(dir, filename, xml, strlen(xml));
}

int domain_config_remove(const char *dir, const char *name) {
        _cleanup_free_ char *filename = NULL;
        int r;

        if (isempty(dir))
                return -EINVAL;
        r = config_filename(name, &filename);
        if (r < 0)
                return r;
        return xml_file_remove(dir, filename);
}

static int strv_push(char ***l, size_t *n, const char *s) {
        char **nl;
        char *c;

        c = strdup(s);
        if (!c)
                return -ENOMEM;
        nl = realloc(*l, (*n + 2) * sizeof(char *));
        if (!nl) {
                free(c);
                return -ENOMEM;
        }
        nl[(*n)++] = c;
        nl[*n] = NULL;
        *l = nl;
        return 0;
}

static void domain_config_array_free(DomainConfig **a, size_t n) {
        if (!a)
                return;
        for (size_t i = 0; i < n; i++)
                domain_config_free(a[i]);
        free(a);
}

int domain_config_load_dir(const char *dir, DomainConfig ***ret, size_t *ret_n, char ***ret_bad) {
        DomainConfig **list = NULL;
        char **bad = NULL;
        size_t n = 0, n_bad = 0;
        struct dirent *de;
        DIR *d;
        int r;

        if (isempty(dir) || !ret || !ret_n)
                return -EINVAL;

        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
                if (ret_bad) {
                        bad = calloc(1, sizeof(char *));
                        if (!bad)
                                return -ENOMEM;
                        *ret_bad = bad;
                }
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }

        while ((errno = 0, de = readdir(d))) {
                _cleanup_free_ char *buf = NULL, *expected = NULL;
                DomainConfig *c = NULL;
                DomainConfig **nl;
                size_t size, len;

                /* Editors' and our own temporary files start with a dot. */
                if (de->d_name[0] == '.')
                        continue;
                len = strlen(de->d_name);
                if (len <= 4 || !streq(de->d_name + len - 4, ".xml"))
                        continue;

                r = xml_file_read(dirfd(d), de->d_name, DOMAIN_CONFIG_MAX_SIZE, &buf, &size);
                if (r >= 0)
                        r = domain_config_parse(buf, size, &c);
                if (r == -ENOMEM)
                        goto fail;
                if (r >= 0 && (config_filename(c->name, &expected) < 0 || !streq(expected, de->d_name)))
                        r = -EINVAL;
                if (r < 0) {
                        domain_config_free(c);
                        if (ret_bad) {
                                r = strv_push(&bad, &n_bad, de->d_name);
                                if (r < 0)
                                        goto fail;
                        }
                        continue;
                }

                nl = realloc(list, (n + 2) * sizeof(DomainConfig *));
                if (!nl) {
                        domain_config_free(c);
                        r = -ENOMEM;
                        goto fail;
                }
                list = nl;
                list[n++] = c;
                list[n] = NULL;
        }
        if (errno != 0) {
                r = -errno;
                goto fail;
        }
        closedir(d);

        /* An empty strv rather than NULL, so callers can iterate without a check. */
        if (ret_bad && !bad) {
                bad = calloc(1, sizeof(char *));
                if (!bad) {
                        domain_config_array_free(list, n);
                        return -ENOMEM;
                }
        }
        *ret = list;
        *ret_n = n;
        if (ret_bad)
                *ret_bad = bad;
        return 0;

fail:
        closedir(d);
        domain_config_array_free(list, n);
        strv_free(bad);
        return r;
}
