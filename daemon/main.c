/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "errors.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "path-util.h"
#include "snapshot-bus.h"

typedef struct Args {
        const char *bus_address;
        const char *config_dir;
        const char *state_dir;
        const char *runtime_dir;
        uint64_t idle_timeout_usec;
        unsigned max_snapshots;
        unsigned qmp_timeout_sec;
} Args;

static void help(void) {
        printf("snapshotd [OPTIONS...]\n\n"
               "Takes, lists, reverts and deletes snapshots of QEMU virtual machines on the system bus\n"
               "as %s.\n\n"
               "  -h --help               Show this help\n"
               "     --version            Show the version\n"
               "     --bus-address=ADDR   Connect to this bus instead of the system bus\n"
               "     --config-dir=DIR     Domain configs (default: %s)\n"
               "     --state-dir=DIR      Snapshot metadata and default image dirs (default: %s)\n"
               "     --runtime-dir=DIR    Managed domains' sockets and logs (default: /run/snapshotd)\n"
               "     --idle-timeout=SEC   Exit after SEC seconds without calls or jobs (default: 0, never)\n"
               "     --max-snapshots=N    Snapshots one domain may have (default: %u)\n"
               "     --qmp-timeout=SEC    How long QEMU may take to answer a command (default: 30)\n"
               "     --log-level=LEVEL    debug, info, notice, warning or err (default: info)\n"
               "  -v --verbose            Log debug messages (--log-level=debug)\n",
               SNAPSHOT_BUS_NAME, DEFAULT_CONFIG_DIR, DEFAULT_STATE_DIR, MANAGER_MAX_SNAPSHOTS_DEFAULT);
}

static int parse_unsigned(const char *option, const char *s, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end || end == s || s[0] == '-' || v > UINT_MAX) {
                log_error("Invalid %s value '%s'.", option, s);
                return -EINVAL;
        }
        *ret = (unsigned) v;
        return 0;
}

static int parse_args(int argc, char *argv[], Args *a) {
        enum {
                ARG_VERSION = 0x100, ARG_BUS_ADDRESS, ARG_CONFIG_DIR, ARG_STATE_DIR, ARG_RUNTIME_DIR, ARG_IDLE_TIMEOUT,
                ARG_MAX_SNAPSHOTS, ARG_LOG_LEVEL, ARG_QMP_TIMEOUT,
        };
        static const struct option options[] = {
                { "help",         no_argument,       NULL, 'h' },
                { "version",      no_argument,       NULL, ARG_VERSION },
                { "bus-address",  required_argument, NULL, ARG_BUS_ADDRESS },
                { "config-dir",   required_argument, NULL, ARG_CONFIG_DIR },
                { "state-dir",    required_argument, NULL, ARG_STATE_DIR },
                { "runtime-dir",  required_argument, NULL, ARG_RUNTIME_DIR },
                { "idle-timeout", required_argument, NULL, ARG_IDLE_TIMEOUT },
                { "max-snapshots", required_argument, NULL, ARG_MAX_SNAPSHOTS },
                { "log-level",    required_argument, NULL, ARG_LOG_LEVEL },
                { "qmp-timeout",  required_argument, NULL, ARG_QMP_TIMEOUT },
                { "verbose",      no_argument,       NULL, 'v' },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "hv", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("snapshotd %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_BUS_ADDRESS:
                        a->bus_address = optarg;
                        break;
                case ARG_CONFIG_DIR:
                        a->config_dir = optarg;
                        break;
                case ARG_STATE_DIR:
                        a->state_dir = optarg;
                        break;
                case ARG_RUNTIME_DIR:
                        a->runtime_dir = optarg;
                        break;
                case ARG_IDLE_TIMEOUT: {
                        unsigned v;

                        if (parse_unsigned("--idle-timeout", optarg, &v) < 0)
                                return -EINVAL;
                        a->idle_timeout_usec = (uint64_t) v * USEC_PER_SEC;
                        break;
                }
                case ARG_MAX_SNAPSHOTS:
                        if (parse_unsigned("--max-snapshots", optarg, &a->max_snapshots) < 0)
                                return -EINVAL;
                        if (a->max_snapshots == 0) {
                                log_error("--max-snapshots must be at least 1.");
                                return -EINVAL;
                        }
                        break;
                case ARG_QMP_TIMEOUT:
                        if (parse_unsigned("--qmp-timeout", optarg, &a->qmp_timeout_sec) < 0)
                                return -EINVAL;
                        if (a->qmp_timeout_sec == 0) {
                                log_error("--qmp-timeout must be at least 1 second.");
                                return -EINVAL;
                        }
                        break;
                case ARG_LOG_LEVEL: {
                        int l = log_level_from_string(optarg);

                        if (l < 0) {
                                log_error("Invalid --log-level '%s': use debug, info, notice, warning, err or 0-7.", optarg);
                                return -EINVAL;
                        }
                        log_set_max_level(l);
                        break;
                }
                case 'v':
                        log_set_max_level(7);
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                log_error("Unexpected argument '%s'.", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        sd_event *event = NULL;
        Args args = {
                .config_dir = DEFAULT_CONFIG_DIR,
                .state_dir = DEFAULT_STATE_DIR,
                .runtime_dir = "/run/snapshotd",
                .max_snapshots = MANAGER_MAX_SNAPSHOTS_DEFAULT,
        };
        int r;

        /* Under systemd, straight to the journal with structured fields. */
        log_open();

        r = parse_args(argc, argv, &args);
        if (r <= 0)
                return r;

        r = errors_register();
        if (r < 0)
                return log_error_errno(r, "Failed to register error names: %m");

        /* A peer that goes away mid-write must not kill us. */
        (void) signal(SIGPIPE, SIG_IGN);

        r = mkdir_p(args.state_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Failed to create state directory '%s': %m", args.state_dir);

        r = sd_event_default(&event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m");
        r = manager_new(&m, event, args.config_dir, args.state_dir, args.runtime_dir);
        sd_event_unref(event);
        if (r < 0)
                return log_oom();
        m->idle_timeout_usec = args.idle_timeout_usec;
        m->max_snapshots = args.max_snapshots;
        m->qmp_timeout_usec = (uint64_t) args.qmp_timeout_sec * USEC_PER_SEC;

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGCHLD);      /* sd-event reaps managed QEMUs through a signalfd */
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(-errno, "Failed to block signals: %m");
        r = manager_add_signals(m);
        if (r < 0)
                return log_error_errno(r, "Failed to handle signals: %m");

        r = manager_connect_bus(m, args.bus_address);
        if (r < 0)
                return r;
        r = manager_bus_add_objects(m);
        if (r < 0)
                return r;

        r = manager_load_config(m);
        if (r < 0)
                return r;

        /* Claim the name only now that every object answers. */
        r = sd_bus_request_name(m->bus, SNAPSHOT_BUS_NAME, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to acquire bus name %s: %m", SNAPSHOT_BUS_NAME);

        (void) manager_arm_idle(m);
        (void) sd_notify(false, "READY=1\nSTATUS=Serving snapshots.");
        log_info("snapshotd %s serving %s with %zu domain(s).", PACKAGE_VERSION, SNAPSHOT_BUS_NAME, m->n_domains);

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");

        (void) sd_notify(false, "STOPPING=1");
        log_info("snapshotd stopping.");
        return 0;
}

int main(int argc, char *argv[]) {
        return run(argc, argv) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
