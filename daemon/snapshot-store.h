/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libvirt's <domainsnapshot> XML: format, safe parse, and the on-disk store
 * (<state-dir>/snapshots/<domain>/<snapshot>.xml, written atomically). Never logs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "snapshot-def.h"

#define SNAPSHOT_XML_MAX_SIZE (1024U * 1024U)  /* larger documents are refused with -EFBIG */
#define SNAPSHOTD_XML_NS "https://example.org/snapshotd/1"  /* our <cookie> element's namespace */

/* secure: reserved for GetXMLDesc(SECURE); we hold no secrets yet, so output is the same. */
int snapshot_xml_format(const SnapshotDef *def, char **ret);

/* Parses a <domainsnapshot> document. Refuses (-EINVAL) malformed XML, a DTD or any entity
 * declaration or reference, network access, and documents over SNAPSHOT_XML_MAX_SIZE (-EFBIG).
 * The result is not checked for the daemon's rules (names, paths): the caller does that. */
int snapshot_xml_parse(const char *xml, size_t size, SnapshotDef **ret);

/* A standalone libvirt-style <domain type='qemu'> document (name, memory in KiB, vcpu,
 * os/type, devices/disks), the same as the <domain> section of snapshot_xml_format(); for
 * the memory image header. -EINVAL without a name or with strings XML cannot carry. */
int domain_def_format_xml(const DomainDef *def, char **ret);

int snapshot_store_save(const char *state_dir, const char *domain, const SnapshotDef *def);
int snapshot_store_remove(const char *state_dir, const char *domain, const char *name);
/* The same without the directory fsync that makes it durable (store-batch.c does one for
 * many), and that fsync. */
int snapshot_store_unlink(const char *state_dir, const char *domain, const char *name);
int snapshot_store_sync_dir(const char *state_dir, const char *domain);

/* A record written and synced under a temporary name while the caller waits for something
 * else (QEMU's transaction, the memory image's fsync), put in place later. Freeing one that
 * was not committed removes its file; a crash leaves a ".tmp-" file, which the next load
 * removes. */
typedef struct StagedRecord StagedRecord;
int snapshot_store_stage(const char *state_dir, const char *domain, const SnapshotDef *def, StagedRecord **ret);
/* The same in two halves, for a caller that writes off the event loop: prepare formats the
 * record on the caller's thread (no I/O), write puts it in its temporary file and syncs it
 * (any thread; once). */
int snapshot_store_prepare(const char *state_dir, const char *domain, const SnapshotDef *def, StagedRecord **ret);
int staged_record_write(StagedRecord *r);
bool staged_record_written(const StagedRecord *r);
/* Renames it in: visible at once, durable after staged_record_sync() (one directory fsync
 * for every record committed in that domain's directory before it). */
int staged_record_commit(StagedRecord *r);
int staged_record_sync(const StagedRecord *r);
StagedRecord *staged_record_free(StagedRecord *r);
static inline void staged_record_freep(StagedRecord **r) {
        staged_record_free(*r);
}
/* Loads every snapshot of a domain; files that fail to parse are skipped and counted in
 * *ret_n_bad (so the caller can log). Order is unspecified. The definitions are packed
 * (snapshot_def_pack()). */
int snapshot_store_load(const char *state_dir, const char *domain,
                        SnapshotDef ***ret, size_t *ret_n, size_t *ret_n_bad);
