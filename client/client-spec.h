/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parsers for create-as's --diskspec and --memspec (virsh's syntax, our keys). Pure
 * functions: they never print; on -EINVAL *ret_error says what was wrong. */
#pragma once

typedef struct DiskSpec {
        char *target;
        char *snapshot;         /* "no" | "internal" | "external", or NULL when not given */
        char *file;             /* NULL when not given */
} DiskSpec;

typedef struct MemSpec {
        char *snapshot;         /* NULL when not given */
        char *file;             /* NULL when not given */
} MemSpec;

void disk_spec_done(DiskSpec *d);
void mem_spec_done(MemSpec *m);

/* TARGET[,snapshot=no|internal|external][,file=PATH] */
int disk_spec_parse(const char *s, DiskSpec *ret, char **ret_error);

/* [file=]PATH[,snapshot=no|internal|external], or just snapshot=MODE */
int mem_spec_parse(const char *s, MemSpec *ret, char **ret_error);

/* Splits at commas; ",," stands for a literal comma, as in virsh. */
int spec_split(const char *s, char ***ret);

int snapshot_mode_is_valid(const char *s);
