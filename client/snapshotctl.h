/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapshotctl's verbs. A verb is one entry in the table in snapshotctl.c: its name, its
 * positional arguments, its options, and the functions that check and run it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct VerbOption {
        const char *name;       /* the long option, without "--" */
        const char *metavar;    /* NULL when the option takes no argument */
        const char *help;
        uint64_t flag;          /* OR'ed into verb_flags() when given */
        const char *key;        /* the a{sv} boolean this option sets, for verbs that send one */
} VerbOption;

typedef struct Verb Verb;

typedef enum VerbFlags {
        VERB_JSON = 1 << 0,     /* prints JSON with --json=MODE */
} VerbFlags;

typedef struct VerbArgs {
        const Verb *verb;
        char **args;            /* positional arguments after the verb */
        size_t n_args;
        unsigned *counts;       /* per option in verb->options: how often it was given */
        char ***values;         /* per option: the arguments it was given, in order (strv) */
} VerbArgs;

struct Verb {
        const char *name;
        const char *synopsis;   /* positional arguments, for --help */
        const char *summary;
        size_t min_args, max_args;
        const VerbOption *options;      /* terminated by an entry without name; may be NULL */
        /* Checks the command line before any connection is made; failures are usage errors
         * (exit status 2). May be NULL. */
        int (*check)(const VerbArgs *a);
        int (*run)(sd_bus *bus, const VerbArgs *a);
        VerbFlags flags;
};

bool verb_has(const VerbArgs *a, const char *option);
const char *verb_value(const VerbArgs *a, const char *option);   /* the last one given, or NULL */
char **verb_values(const VerbArgs *a, const char *option);       /* NULL-terminated, maybe empty */
uint64_t verb_flags(const VerbArgs *a);

/* verb-domain.c */
extern const VerbOption list_domains_options[];
int check_list_domains(const VerbArgs *a);
int verb_list_domains(sd_bus *bus, const VerbArgs *a);

/* verb-create.c */
extern const VerbOption create_as_options[];
extern const VerbOption create_options[];
int check_create_as(const VerbArgs *a);
int verb_create_as(sd_bus *bus, const VerbArgs *a);
int verb_create(sd_bus *bus, const VerbArgs *a);

/* verb-snapshot.c */
extern const VerbOption list_options[];
extern const VerbOption dumpxml_options[];
extern const VerbOption current_options[];
int check_list(const VerbArgs *a);
int verb_list(sd_bus *bus, const VerbArgs *a);
int verb_dumpxml(sd_bus *bus, const VerbArgs *a);
int verb_info(sd_bus *bus, const VerbArgs *a);
int verb_current(sd_bus *bus, const VerbArgs *a);

/* verb-prune.c */
extern const VerbOption prune_options[];
int check_prune(const VerbArgs *a);
int verb_prune(sd_bus *bus, const VerbArgs *a);

/* verb-job.c */
extern const VerbOption revert_options[];
extern const VerbOption delete_options[];
int check_delete(const VerbArgs *a);
int verb_revert(sd_bus *bus, const VerbArgs *a);
int verb_delete(sd_bus *bus, const VerbArgs *a);
int verb_abort(sd_bus *bus, const VerbArgs *a);
int verb_job(sd_bus *bus, const VerbArgs *a);
extern const VerbOption stop_options[];
int verb_start(sd_bus *bus, const VerbArgs *a);
int verb_stop(sd_bus *bus, const VerbArgs *a);
int verb_parent(sd_bus *bus, const VerbArgs *a);
extern const VerbOption redefine_options[];
int verb_redefine(sd_bus *bus, const VerbArgs *a);
