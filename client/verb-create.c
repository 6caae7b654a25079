/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* create-as (Domain.CreateSnapshot with a{sv} options) and create (CreateSnapshotXML). */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-bus.h"
#include "client-job.h"
#include "client-objects.h"
#include "client-output.h"
#include "client-spec.h"
#include "snapshot-bus.h"
#include "snapshotctl.h"

/* The boolean options name their a{sv} key; create-as sends only those given, as true. */
const VerbOption create_as_options[] = {
        { "name",                "NAME",    "Name of the snapshot (default: generated)" },
        { "description",         "TEXT",    "Description of the snapshot" },
        { "disk-only",           NULL,      "Snapshot the disks only, no memory",                   .key = "disk-only" },
        { "live",                NULL,      "Save the memory while the guest keeps running",        .key = "live" },
        { "quiesce",             NULL,      "Freeze the guest's file systems through its agent",    .key = "quiesce" },
        { "quiesce-best-effort", NULL,      "If the agent cannot freeze, go on without quiescing",  .key = "quiesce-best-effort" },
        { "atomic",              NULL,      "All disks or none",                                    .key = "atomic" },
        { "halt",                NULL,      "Stop the domain once the snapshot is taken",           .key = "halt" },
        { "reuse-external",      NULL,      "Reuse existing overlay and memory files",              .key = "reuse-external" },
        { "no-metadata",         NULL,      "Take the snapshot but do not remember it",             .key = "no-metadata" },
        { "validate",            NULL,      "Only check that the snapshot can be taken",            .key = "validate-only" },
        { "diskspec",            "TARGET[,snapshot=MODE][,file=PATH]",
                                            "How to snapshot one disk (repeatable); MODE: no, internal, external" },
        { "memspec",             "[file=]PATH[,snapshot=MODE]",
                                            "The memory image; MODE: no, internal, external" },
        { "live-timeout",        "SECONDS", "How long a live save may run before the guest is paused to finish" },
        { "no-progress",         NULL,      "Do not show the job's progress" },
        { "abort-on-interrupt",  NULL,      "Ctrl-C aborts the job without asking" },
        {}
};

const VerbOption create_options[] = {
        { "redefine",       NULL, "Define the snapshot's metadata, take nothing", SNAPSHOT_CREATE_REDEFINE    },
        { "current",        NULL, "With --redefine: make it the current snapshot", SNAPSHOT_CREATE_CURRENT    },
        { "disk-only",      NULL, "Snapshot the disks only, no memory",           SNAPSHOT_CREATE_DISK_ONLY   },
        { "live",           NULL, "Save the memory while the guest keeps running", SNAPSHOT_CREATE_LIVE       },
        { "quiesce",        NULL, "Freeze the guest's file systems through its agent", SNAPSHOT_CREATE_QUIESCE },
        { "atomic",         NULL, "All disks or none",                            SNAPSHOT_CREATE_ATOMIC      },
        { "halt",           NULL, "Stop the domain once the snapshot is taken",   SNAPSHOT_CREATE_HALT        },
        { "reuse-external", NULL, "Reuse existing overlay and memory files",      SNAPSHOT_CREATE_REUSE_EXT   },
        { "no-metadata",    NULL, "Take the snapshot but do not remember it",     SNAPSHOT_CREATE_NO_METADATA },
        { "validate",       NULL, "Only check that the snapshot can be taken",    SNAPSHOT_CREATE_VALIDATE    },
        { "no-progress",    NULL, "Do not show the job's progress" },
        { "abort-on-interrupt", NULL, "Ctrl-C aborts the job without asking" },
        {}
};

/* What check_create_as() made of the command line, for verb_create_as(). */
static DiskSpec *arg_disks = NULL;
static size_t arg_n_disks = 0;
static MemSpec arg_memory = {};
static const char *arg_name = NULL, *arg_description = NULL;
static uint32_t arg_live_timeout = 0;
static bool arg_live_timeout_set = false;

static void create_as_args_free(void) {
        for (size_t i = 0; i < arg_n_disks; i++)
                disk_spec_done(arg_disks + i);
        free(arg_disks);
        arg_disks = NULL;
        arg_n_disks = 0;
        mem_spec_done(&arg_memory);
}

static int parse_seconds(const char *s, uint32_t *ret) {
        unsigned long v;
        char *end;

        if (isempty(s) || s[0] == '-' || s[0] == '+' || s[0] == ' ')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v == 0 || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

int check_create_as(const VerbArgs *a) {
        char **diskspecs = verb_values(a, "diskspec"), **memspecs = verb_values(a, "memspec");
        bool memory_external;
        int r;

        arg_name = a->n_args > 1 ? a->args[1] : NULL;
        arg_description = a->n_args > 2 ? a->args[2] : NULL;

        if (verb_has(a, "name")) {
                if (arg_name || verb_values(a, "name")[1])
                        return log_usage("The snapshot name is given more than once.");
                arg_name = verb_value(a, "name");
        }
        if (verb_has(a, "description")) {
                if (arg_description || verb_values(a, "description")[1])
                        return log_usage("The description is given more than once.");
                arg_description = verb_value(a, "description");
        }

        if (verb_has(a, "live-timeout")) {
                if (parse_seconds(verb_value(a, "live-timeout"), &arg_live_timeout) < 0)
                        return log_usage("--live-timeout= needs a number of seconds (1-%u), not '%s'.",
                                         UINT32_MAX, verb_value(a, "live-timeout"));
                arg_live_timeout_set = true;
        }

        if (memspecs[0]) {
                _cleanup_free_ char *error = NULL;

                if (memspecs[1])
                        return log_usage("--memspec given more than once.");

                r = mem_spec_parse(memspecs[0], &arg_memory, &error);
                if (r == -ENOMEM)
                        return log_error_errno(r, "Out of memory.");
                if (r < 0)
                        return log_usage("%s", error ?: "Invalid --memspec.");
        }

        for (size_t i = 0; diskspecs[i]; i++) {
                _cleanup_free_ char *error = NULL;
                DiskSpec *grown;

                grown = reallocarray(arg_disks, arg_n_disks + 1, sizeof(DiskSpec));
                if (!grown)
                        return log_error_errno(ENOMEM, "Out of memory.");
                arg_disks = grown;

                r = disk_spec_parse(diskspecs[i], arg_disks + arg_n_disks, &error);
                if (r == -ENOMEM)
                        return log_error_errno(r, "Out of memory.");
                if (r < 0)
                        return log_usage("%s", error ?: "Invalid --diskspec.");
                arg_n_disks++;

                for (size_t k = 0; k + 1 < arg_n_disks; k++)
                        if (streq(arg_disks[k].target, arg_disks[arg_n_disks - 1].target))
                                return log_usage("--diskspec for disk '%s' given more than once.",
                                                 arg_disks[k].target);
        }

        /* A disk without snapshot= gets what libvirt would give it: external when it names
         * an overlay, when the snapshot is disk-only or when the memory goes to a file;
         * internal otherwise. The a(sss) on the bus always carries an explicit mode. */
        memory_external = arg_memory.file || streq_ptr(arg_memory.snapshot, "external");
        for (size_t i = 0; i < arg_n_disks; i++) {
                DiskSpec *d = arg_disks + i;

                if (d->snapshot)
                        continue;
                d->snapshot = strdup(d->file || verb_has(a, "disk-only") || memory_external ? "external" : "internal");
                if (!d->snapshot)
                        return log_error_errno(ENOMEM, "Out of memory.");
        }

        return 0;
}

static int append_options(sd_bus_message *m, const VerbArgs *a) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;

        for (size_t i = 0; a->verb->options[i].name; i++) {
                const VerbOption *o = a->verb->options + i;

                if (!o->key || a->counts[i] == 0)
                        continue;
                r = sd_bus_message_append(m, "{sv}", o->key, "b", 1);
                if (r < 0)
                        return r;
        }

        if (arg_memory.file || arg_memory.snapshot) {
                r = sd_bus_message_append(m, "{sv}", "memory", "s", arg_memory.snapshot ?: "external");
                if (r < 0)
                        return r;
        }
        if (arg_memory.file) {
                r = sd_bus_message_append(m, "{sv}", "memory-file", "s", arg_memory.file);
                if (r < 0)
                        return r;
        }

        if (arg_n_disks > 0) {
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                r = sd_bus_message_append(m, "s", "disks");
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(m, 'v', "a(sss)");
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(m, 'a', "(sss)");
                if (r < 0)
                        return r;
                for (size_t i = 0; i < arg_n_disks; i++) {
                        r = sd_bus_message_append(m, "(sss)", arg_disks[i].target, arg_disks[i].snapshot,
                                                  arg_disks[i].file ?: "");
                        if (r < 0)
                                return r;
                }
                for (int k = 0; k < 3; k++) {
                        r = sd_bus_message_close_container(m);
                        if (r < 0)
                                return r;
                }
        }

        if (arg_live_timeout_set) {
                r = sd_bus_message_append(m, "{sv}", "live-timeout", "u", arg_live_timeout);
                if (r < 0)
                        return r;
        }

        return sd_bus_message_close_container(m);
}

/* What the reply means to the user: a new snapshot, or "/" for no-metadata and validate-only. */
static int report_created(sd_bus *bus, sd_bus_message *reply, const char *name_hint,
                          bool validate, bool redefine, const char *from) {
        _cleanup_free_ char *name = NULL;
        const char *path;
        int r;

        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return log_error_errno(r, "Failed to parse the reply: %m");

        if (validate) {
                printf("Domain snapshot%s%s validated; nothing was changed\n",
                       name_hint ? " " : "", name_hint ?: "");
                return 0;
        }

        if (!streq(path, "/")) {
                r = snapshot_name_of(bus, path, &name);
                if (r < 0)
                        return r;
        } else if (name_hint) {
                name = strdup(name_hint);
                if (!name)
                        return log_error_errno(ENOMEM, "Out of memory.");
        }

        printf("Domain snapshot%s%s %s", name ? " " : "", name ?: "", redefine ? "defined" : "created");
        if (from && streq(from, "-"))
                printf(" from standard input");
        else if (from)
                printf(" from '%s'", from);
        putchar('\n');
        return 0;
}

int verb_create_as(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ char *domain_path = NULL;
        const char *domain = a->args[0];
        int r;

        r = bus_get_domain(bus, domain, &domain_path);
        if (r < 0)
                goto finish;

        r = sd_bus_message_new_method_call(bus, &m, SNAPSHOT_BUS_NAME, domain_path,
                                           SNAPSHOT_IFACE_DOMAIN, "CreateSnapshot");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", arg_name ?: "", arg_description ?: "");
        if (r >= 0)
                r = append_options(m, a);
        if (r < 0) {
                log_error_errno(r, "Failed to build the CreateSnapshot call: %m");
                goto finish;
        }

        /* Waits for the whole job, drawing its progress; snapshotd replies once the
         * snapshot exists. */
        r = bus_call_job(bus, m, domain_path, &(JobOptions) {
                                 .no_progress = verb_has(a, "no-progress"),
                                 .abort_on_interrupt = verb_has(a, "abort-on-interrupt") },
                         &error, &reply);
        if (r < 0) {
                log_bus_error(&error, r, "Failed to create snapshot of domain '%s'", domain);
                goto finish;
        }

        r = report_created(bus, reply, arg_name, verb_has(a, "validate"), false, NULL);

finish:
        create_as_args_free();
        return r;
}

/* Snapshot XML is small; anything this big is a mistake (and over D-Bus's message size). */
#define XML_SIZE_MAX (16U * 1024U * 1024U)

static int read_xml(const char *filename, char **ret) {
        _cleanup_free_ char *buf = NULL;
        FILE *f;
        size_t n = 0;
        int r = 0;

        f = streq(filename, "-") ? stdin : fopen(filename, "re");
        if (!f)
                return log_error_errno(errno, "Failed to open '%s': %m", filename);

        buf = malloc(XML_SIZE_MAX + 1);
        if (!buf) {
                r = log_error_errno(ENOMEM, "Out of memory.");
                goto finish;
        }

        n = fread(buf, 1, XML_SIZE_MAX + 1, f);
        if (ferror(f)) {
                r = log_error_errno(EIO, "Failed to read '%s': %m", filename);
                goto finish;
        }
        if (n > XML_SIZE_MAX) {
                r = log_error_errno(EFBIG, "'%s' is larger than %u MiB; not a snapshot description.",
                                    filename, XML_SIZE_MAX / 1024 / 1024);
                goto finish;
        }
        buf[n] = '\0';
        if (strlen(buf) != n) {
                r = log_error_errno(EBADMSG, "'%s' contains NUL bytes; not an XML text.", filename);
                goto finish;
        }

        *ret = TAKE_PTR(buf);

finish:
        if (f != stdin)
                fclose(f);
        return r;
}

int verb_create(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *domain_path = NULL, *xml = NULL;
        const char *domain = a->args[0], *filename = a->args[1];
        uint64_t flags = verb_flags(a);
        int r;

        r = read_xml(filename, &xml);
        if (r < 0)
                return r;

        r = bus_get_domain(bus, domain, &domain_path);
        if (r < 0)
                return r;

        {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;

                r = sd_bus_message_new_method_call(bus, &m, SNAPSHOT_BUS_NAME, domain_path,
                                                   SNAPSHOT_IFACE_DOMAIN, "CreateSnapshotXML");
                if (r >= 0)
                        r = sd_bus_message_append(m, "st", xml, flags);
                if (r >= 0)
                        r = bus_call_job(bus, m, domain_path, &(JobOptions) {
                                                 .no_progress = verb_has(a, "no-progress"),
                                                 .abort_on_interrupt = verb_has(a, "abort-on-interrupt") },
                                         &error, &reply);
        }
        if (r == -EINVAL && !sd_bus_error_is_set(&error))
                /* sd-bus refuses to send a string that is not UTF-8. */
                return log_error_errno(r, "Failed to send '%s': not valid UTF-8?", filename);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to create snapshot of domain '%s' from '%s'", domain, filename);

        return report_created(bus, reply, NULL, flags & SNAPSHOT_CREATE_VALIDATE,
                              flags & SNAPSHOT_CREATE_REDEFINE, filename);
}

const VerbOption redefine_options[] = {
        { "current", NULL, "Make it the current snapshot", SNAPSHOT_CREATE_CURRENT },
        {}
};

/* virsh snapshot-create --redefine: import or edit a record, take nothing. */
int verb_redefine(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *domain_path = NULL, *xml = NULL;
        uint64_t flags = SNAPSHOT_CREATE_REDEFINE | verb_flags(a);
        int r;

        r = read_xml(a->args[1], &xml);
        if (r < 0)
                return r;
        r = bus_get_domain(bus, a->args[0], &domain_path);
        if (r < 0)
                return r;
        r = bus_call_method(bus, domain_path, SNAPSHOT_IFACE_DOMAIN, "CreateSnapshotXML", CALL_TIMEOUT_DEFAULT,
                            &error, &reply, "st", xml, flags);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to redefine a snapshot of domain '%s' from '%s'",
                                     a->args[0], a->args[1]);
        return report_created(bus, reply, NULL, false, true, a->args[1]);
}
