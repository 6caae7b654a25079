/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapshotctl: the command-line client of snapshotd. Parses the command line, connects to
 * the bus and hands over to one verb from the table below. */

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-bus.h"
#include "client-output.h"
#include "config.h"
#include "polkit-agent.h"
#include "snapshotctl.h"

static const char *arg_address = NULL;
static const char *arg_host = NULL;
static bool arg_ask_password = true;

/* Adding a verb: write its run (and maybe check) function and options, add a line here. */
static const Verb verbs[] = {
        { "list-domains", "",                              "List the domains snapshotd knows",
          0, 0, list_domains_options, check_list_domains, verb_list_domains, VERB_JSON },
        { "create-as",    "DOMAIN [NAME] [DESCRIPTION]",   "Create a snapshot described by options",
          1, 3, create_as_options,    check_create_as, verb_create_as    },
        { "create",       "DOMAIN FILE.xml",               "Create a snapshot from <domainsnapshot> XML ('-': stdin)",
          2, 2, create_options,       NULL,            verb_create       },
        { "list",         "DOMAIN",                        "List a domain's snapshots",
          1, 1, list_options,         check_list,      verb_list,         VERB_JSON },
        { "dumpxml",      "DOMAIN SNAPSHOT",               "Show a snapshot's XML",
          2, 2, dumpxml_options,      NULL,            verb_dumpxml,      VERB_JSON },
        { "info",         "DOMAIN SNAPSHOT",               "Show a snapshot's properties",
          2, 2, NULL,                 NULL,            verb_info,         VERB_JSON },
        { "current",      "DOMAIN",                        "Show a domain's current snapshot",
          1, 1, current_options,      NULL,            verb_current,      VERB_JSON },
        { "revert",       "DOMAIN SNAPSHOT",               "Bring the domain back to a snapshot",
          2, 2, revert_options,       NULL,            verb_revert       },
        { "delete",       "DOMAIN SNAPSHOT",               "Delete a snapshot (with its data unless --metadata)",
          2, 2, delete_options,       check_delete,    verb_delete       },
        { "prune",        "DOMAIN",                        "Delete the oldest snapshots so that --keep=N remain",
          1, 1, prune_options,        check_prune,     verb_prune,        VERB_JSON },
        { "abort",        "DOMAIN",                        "Abort the domain's running job",
          1, 1, NULL,                 NULL,            verb_abort        },
        { "job",          "DOMAIN",                        "Show the domain's running job",
          1, 1, NULL,                 NULL,            verb_job,          VERB_JSON },
        { "parent",       "DOMAIN SNAPSHOT",               "Show a snapshot's parent",
          2, 2, NULL,                 NULL,            verb_parent,       VERB_JSON },
        { "redefine",     "DOMAIN FILE.xml",               "Import or edit a snapshot's record ('-': stdin)",
          2, 2, redefine_options,     NULL,            verb_redefine     },
        { "start",        "DOMAIN",                        "Start a managed domain",
          1, 1, NULL,                 NULL,            verb_start        },
        { "stop",         "DOMAIN",                        "Stop a managed domain (gracefully unless --force)",
          1, 1, stop_options,         NULL,            verb_stop         },
};

enum {
        ARG_VERSION = 0x100,
        ARG_ADDRESS,
        ARG_NO_ASK_PASSWORD,
        ARG_JSON,
        ARG_VERB_OPTION = 0x1000,       /* + index into the verb's options */
};

static const struct option global_options[] = {
        { "help",            no_argument,       NULL, 'h'                 },
        { "version",         no_argument,       NULL, ARG_VERSION         },
        { "address",         required_argument, NULL, ARG_ADDRESS         },
        { "host",            required_argument, NULL, 'H'                 },
        { "json",            optional_argument, NULL, ARG_JSON            },
        { "no-ask-password", no_argument,       NULL, ARG_NO_ASK_PASSWORD },
};

/* The short options getopt takes besides the verbs' long ones: ':' first, so a missing
 * argument is told apart from an unknown option. */
#define SHORT_OPTIONS ":hH:"

static size_t verb_n_options(const Verb *v) {
        size_t n = 0;

        if (v->options)
                while (v->options[n].name)
                        n++;
        return n;
}

static size_t option_index(const Verb *v, const char *name) {
        for (size_t i = 0; v->options && v->options[i].name; i++)
                if (streq(v->options[i].name, name))
                        return i;

        /* Asking for an option the verb does not have is a bug in snapshotctl. */
        fprintf(stderr, "snapshotctl: internal error: verb '%s' has no option '--%s'\n", v->name, name);
        abort();
}

bool verb_has(const VerbArgs *a, const char *option) {
        return a->counts[option_index(a->verb, option)] > 0;
}

char **verb_values(const VerbArgs *a, const char *option) {
        return a->values[option_index(a->verb, option)];
}

const char *verb_value(const VerbArgs *a, const char *option) {
        char **l = verb_values(a, option);
        size_t n = 0;

        while (l[n])
                n++;
        return n > 0 ? l[n - 1] : NULL;
}

uint64_t verb_flags(const VerbArgs *a) {
        uint64_t flags = 0;

        for (size_t i = 0; i < verb_n_options(a->verb); i++)
                if (a->counts[i] > 0)
                        flags |= a->verb->options[i].flag;
        return flags;
}

static void verb_args_done(VerbArgs *a) {
        size_t n = a->verb ? verb_n_options(a->verb) : 0;

        for (size_t i = 0; a->values && i < n; i++)
                free(a->values[i]);     /* the strings themselves belong to argv */
        free(a->values);
        free(a->counts);
}

static void print_option_help(const char *name, const char *metavar, const char *help) {
        char left[256];
        int n;

        n = snprintf(left, sizeof(left), "     --%s%s%s", name, metavar ? "=" : "", metavar ?: "");
        if (n < 0)
                return;
        if (n < 30)
                printf("%-30s %s\n", left, help);
        else
                printf("%s\n%-30s %s\n", left, "", help);
}

static void help_global(void) {
        printf("snapshotctl [OPTIONS...] COMMAND [ARGS...]\n\n"
               "Take, list and inspect snapshots of QEMU domains through snapshotd.\n\n"
               "Commands:\n");

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                char left[256];

                snprintf(left, sizeof(left), "  %s%s%s", verbs[i].name,
                         isempty(verbs[i].synopsis) ? "" : " ", verbs[i].synopsis);
                if (strlen(left) < 38)
                        printf("%-38s %s\n", left, verbs[i].summary);
                else
                        printf("%s\n%-38s %s\n", left, "", verbs[i].summary);
        }

        printf("\nOptions:\n"
               "  -h --help                    Show this help\n");
        print_option_help("version", NULL, "Show the version");
        print_option_help("address", "ADDRESS", "Connect to this D-Bus address instead of the system bus");
        printf("  -H --host=[USER@]HOST        Operate on snapshotd on a remote host, over ssh\n");
        printf("     --json[=MODE]             Print JSON (from list-domains, list, info, dumpxml, current,\n"
               "                               job, parent, prune); MODE: pretty (the default), short, off\n");
        print_option_help("no-ask-password", NULL, "Do not ask for a password to authorize");
        printf("\nSee 'snapshotctl COMMAND --help' (or 'snapshotctl help COMMAND') for the options of a command.\n\n");
        exit_status_print_help(stdout);
}

static void help_verb(const Verb *v) {
        printf("snapshotctl %s%s%s [OPTIONS...]\n\n%s.\n",
               v->name, isempty(v->synopsis) ? "" : " ", v->synopsis, v->summary);

        if (verb_n_options(v) > 0 || (v->flags & VERB_JSON)) {
                printf("\nOptions:\n");
                for (size_t i = 0; i < verb_n_options(v); i++)
                        print_option_help(v->options[i].name, v->options[i].metavar, v->options[i].help);
                if (v->flags & VERB_JSON)
                        printf("     --json[=MODE]             Print JSON; MODE: pretty (the default), short, off\n");
        }

        printf("\nGlobal options: --help, --address=ADDRESS, --host=[USER@]HOST, --no-ask-password\n"
               "(see 'snapshotctl --help', which also lists the exit statuses).\n");
}

static const Verb *verb_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        return verbs + i;
        return NULL;
}

/* getopt's own messages would name argv[0] as given (maybe a build path); ours say
 * "snapshotctl:" like every other error. */
static int log_getopt_error(int c, char **argv, const struct option *options) {
        const char *arg = argv[optind - 1];

        if (c == ':')
                return log_usage("Option '%s' needs an argument.", arg);

        if (optopt != 0)
                for (const struct option *o = options; o->name; o++)
                        if (o->val == optopt && o->has_arg == no_argument)
                                return log_usage("Option '--%s' takes no argument.", o->name);

        return log_usage("Unknown option '%s'.", arg);
}

/* Returns 1 when the caller should go on, 0 when done (help shown), < 0 on usage errors. */
static int handle_global_option(int c, const char *arg, const Verb *verb) {
        switch (c) {
        case 'h':
                if (verb)
                        help_verb(verb);
                else
                        help_global();
                return 0;
        case ARG_VERSION:
                printf("snapshotctl %s\n", PACKAGE_VERSION);
                return 0;
        case ARG_ADDRESS:
                if (isempty(arg))
                        return log_usage("--address= needs a D-Bus address, e.g. unix:path=/run/bus.");
                arg_address = arg;
                return 1;
        case 'H':
                if (isempty(arg))
                        return log_usage("--host= needs a host name, e.g. root@vmhost.");
                arg_host = arg;
                return 1;
        case ARG_JSON:
                if (streq_ptr(arg, "help")) {
                        printf("pretty\nshort\noff\n");
                        return 0;
                }
                if (json_mode_from_string(arg, &arg_json) < 0)
                        return log_usage("Unknown --json= mode '%s': pretty, short or off.", arg);
                return 1;
        case ARG_NO_ASK_PASSWORD:
                arg_ask_password = false;
                return 1;
        }
        assert(false);
        return -EINVAL;
}

/* The options before the verb: global ones only. Returns the index of the verb in argv,
 * argc when there is none, 0 when done, < 0 on usage errors. */
static int parse_global_argv(int argc, char *argv[]) {
        struct option options[ELEMENTSOF(global_options) + 1] = {};
        int c, r;

        memcpy(options, global_options, sizeof(global_options));

        opterr = 0;
        optind = 0;
        while ((c = getopt_long(argc, argv, "+" SHORT_OPTIONS, options, NULL)) >= 0) {
                if (c == '?' || c == ':')
                        return log_getopt_error(c, argv, options);

                r = handle_global_option(c, optarg, NULL);
                if (r <= 0)
                        return r;
        }

        return optind;
}

/* The verb's own options, global ones, and positional arguments in any order. argv[0] is
 * the verb. Returns 1 to go on, 0 when done, < 0 on usage errors. */
static int parse_verb_argv(const Verb *verb, int argc, char *argv[], VerbArgs *a) {
        size_t n_global = ELEMENTSOF(global_options), n = verb_n_options(verb);
        _cleanup_free_ struct option *options = NULL;
        int c, r;

        options = calloc(n_global + n + 1, sizeof(struct option));
        a->counts = calloc(n + 1, sizeof(unsigned));
        a->values = calloc(n + 1, sizeof(char **));
        if (!options || !a->counts || !a->values)
                return log_error_errno(ENOMEM, "Out of memory.");

        memcpy(options, global_options, sizeof(global_options));
        for (size_t i = 0; i < n; i++) {
                options[n_global + i] = (struct option) {
                        .name = verb->options[i].name,
                        .has_arg = verb->options[i].metavar ? required_argument : no_argument,
                        .val = ARG_VERB_OPTION + (int) i,
                };

                a->values[i] = calloc(1, sizeof(char *));
                if (!a->values[i])
                        return log_error_errno(ENOMEM, "Out of memory.");
        }

        opterr = 0;
        optind = 0;
        while ((c = getopt_long(argc, argv, SHORT_OPTIONS, options, NULL)) >= 0) {
                size_t i, k;
                char **grown;

                if (c == '?' || c == ':')
                        return log_getopt_error(c, argv, options);

                if (c < ARG_VERB_OPTION) {
                        r = handle_global_option(c, optarg, verb);
                        if (r <= 0)
                                return r;
                        continue;
                }

                i = (size_t) (c - ARG_VERB_OPTION);
                a->counts[i]++;
                if (!optarg)
                        continue;

                for (k = 0; a->values[i][k]; k++)
                        ;
                grown = reallocarray(a->values[i], k + 2, sizeof(char *));
                if (!grown)
                        return log_error_errno(ENOMEM, "Out of memory.");
                a->values[i] = grown;
                a->values[i][k] = optarg;
                a->values[i][k + 1] = NULL;
        }

        a->args = argv + optind;
        a->n_args = (size_t) (argc - optind);

        if (a->n_args < verb->min_args)
                return log_usage("'%s' needs %s.", verb->name, verb->synopsis);
        if (a->n_args > verb->max_args)
                return log_usage("Too many arguments for '%s': %s%sexpected.", verb->name,
                                 verb->synopsis, isempty(verb->synopsis) ? "none " : " ");

        for (size_t i = 0; i < a->n_args; i++)
                if (isempty(a->args[i]))
                        return log_usage("Empty argument to '%s'.", verb->name);

        return 1;
}

/* What the global options say together, checked once the whole command line is read. */
static int check_global_options(const Verb *verb) {
        if (arg_address && arg_host)
                return log_usage("--address= and --host= exclude each other.");
        if (arg_json != JSON_OFF && !(verb->flags & VERB_JSON))
                return log_usage("'%s' has no JSON output (--json=).", verb->name);
        return 0;
}

static int run_verb(const Verb *verb, int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(verb_args_done) VerbArgs a = { .verb = verb };
        int r;

        r = parse_verb_argv(verb, argc, argv, &a);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_OK;

        r = check_global_options(verb);
        if (r < 0)
                return EXIT_USAGE;

        if (verb->check) {
                r = verb->check(&a);
                if (r < 0)
                        return EXIT_USAGE;
        }

        r = bus_connect(arg_address, arg_host, arg_ask_password, &bus);
        if (r < 0)
                return exit_status_of_failure();

        /* pkttyagent answers polkitd on the local system bus; on another bus, or another
         * host, there is no telling where the daemon's polkit lives. */
        if (arg_ask_password && !arg_address && !arg_host)
                polkit_agent_open();

        r = verb->run(bus, &a);

        polkit_agent_close();
        return r < 0 ? exit_status_of_failure() : EXIT_OK;
}

static int run(int argc, char *argv[]) {
        const Verb *verb;
        int i;

        i = parse_global_argv(argc, argv);
        if (i <= 0)
                return i < 0 ? EXIT_USAGE : EXIT_OK;
        if (i >= argc) {
                log_usage("Missing command.");
                return EXIT_USAGE;
        }

        if (streq(argv[i], "help")) {
                if (i + 1 >= argc) {
                        help_global();
                        return EXIT_OK;
                }
                verb = verb_find(argv[i + 1]);
                if (!verb) {
                        log_usage("Unknown command '%s'.", argv[i + 1]);
                        return EXIT_USAGE;
                }
                help_verb(verb);
                return EXIT_OK;
        }

        verb = verb_find(argv[i]);
        if (!verb) {
                log_usage("Unknown command '%s'.", argv[i]);
                return EXIT_USAGE;
        }

        return run_verb(verb, argc - i, argv + i);
}

int main(int argc, char *argv[]) {
        int status;

        status = run(argc, argv);

        /* Output that could not be written (a full disk, a closed pipe) is a failure too. */
        if (fflush(stdout) != 0 && status == EXIT_OK) {
                log_error_errno(errno, "Failed to write output: %m");
                status = EXIT_FAILED;
        }
        return status;
}
