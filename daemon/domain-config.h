/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The domain config directory: one <name>.xml per domain (see DESIGN.md "Domains").
 * Never logs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A managed domain: the QEMU snapshotd starts itself (domain-config-qemu.c). */
typedef struct QemuDiskDef {
        char *target;
        char *file;             /* absolute (relative ones are resolved against the images dir) */
        char *format;
        char *serial;           /* the guest sees it as the disk's serial number (optional) */
} QemuDiskDef;

typedef struct QemuDef {
        char *binary;
        char *machine;
        char *accel;            /* "kvm", "tcg" or "auto" */
        uint64_t memory_mib;
        unsigned vcpus;
        QemuDiskDef *disks;
        size_t n_disks;
        bool agent;
        char *kernel, *initrd, *cmdline;
        char **args;            /* extra argv elements, NULL-terminated */
        unsigned shutdown_timeout;      /* seconds a graceful stop may take */
} QemuDef;

typedef struct DomainConfig {
        char *name;
        char *qmp_socket;       /* absolute */
        char *agent_socket;     /* absolute, or NULL */
        char *images_dir;       /* absolute */
        QemuDef *qemu;          /* managed domains only; then the sockets are the daemon's */
} DomainConfig;

QemuDef *qemu_def_free(QemuDef *q);
/* Parses the <qemu> element of a managed domain's config. */
int qemu_def_parse(const void *qemu_node, const char *images_dir, QemuDef **ret);

DomainConfig *domain_config_free(DomainConfig *c);
static inline void domain_config_freep(DomainConfig **c) {
        if (*c)
                domain_config_free(*c);
}

/* Parses one config document (same safety rules as snapshot_xml_parse). -EINVAL with a
 * malformed document, a missing name/qmp socket/images dir, or relative paths. */
int domain_config_parse(const char *xml, size_t size, DomainConfig **ret);
int domain_config_format(const DomainConfig *c, char **ret);

/* Every *.xml in dir, parsed; a file whose name is not "<name>.xml" for the name inside, or
 * that does not parse, is skipped and its file name appended to *ret_bad (NULL-terminated strv,
 * may be NULL when the caller does not care). A missing dir is an empty list. */
int domain_config_load_dir(const char *dir, DomainConfig ***ret, size_t *ret_n, char ***ret_bad);
/* Atomically writes dir/<name>.xml (for RegisterDomain with persistent=true). */
int domain_config_save(const char *dir, const DomainConfig *c);
int domain_config_remove(const char *dir, const char *name);
