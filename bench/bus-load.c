/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-load: one client of bench/run's "calls per second" item. It makes one kind of read call
 * to snapshotd in a loop, each waiting for its reply, from START to END (CLOCK_REALTIME,
 * seconds), and prints "<calls> <cpu-us>": how many it made and the CPU it spent itself.
 *
 * Written in C because the Python (Gio) clients it replaces spent ~250-320 us of CPU a call,
 * against the daemon's 20-40 us: four of them on two cores measured Python, not snapshotd.
 *
 *   bus-load ADDRESS METHOD DOMAIN-PATH START END [--each[=MS]]
 *
 * METHOD is one of ListSnapshots, LookupSnapshot, GetXMLDesc, GetAll, Ping. SIGTERM ends the
 * loop early. With --each, every call is printed first as "<start> <seconds>", and with
 * --each=MS a call starts every MS milliseconds instead of right after the last one. That is
 * the responsiveness item's probe: in its own process (a thread of the Python harness waited
 * for the interpreter's lock, up to its 5 ms switch interval and more), and paced like a
 * client that polls, so the probe does not itself keep two cores busy.
 */

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#define BUS_NAME "org.example.Snapshot1"
#define MANAGER_PATH "/org/example/Snapshot1"
#define DOMAIN_IFACE "org.example.Snapshot1.Domain"
#define SNAPSHOT_IFACE "org.example.Snapshot1.Snapshot"

typedef struct Target {
        const char *domain;
        char **paths;           /* the domain's snapshots, from one ListSnapshots */
        size_t n_paths;
        unsigned seed;
} Target;

static volatile sig_atomic_t stop;

static void on_term(int sig) {
        (void) sig;
        stop = 1;
}

static double realtime(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int list_paths(sd_bus *bus, Target *t) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *p;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, t->domain, DOMAIN_IFACE, "ListSnapshots", &error,
                               &reply, "t", (uint64_t) 0);
        if (r < 0) {
                fprintf(stderr, "bus-load: ListSnapshots: %s\n", error.message ?: strerror(-r));
                sd_bus_error_free(&error);
                return r;
        }
        r = sd_bus_message_enter_container(reply, 'a', "o");
        while (r >= 0 && (r = sd_bus_message_read(reply, "o", &p)) > 0) {
                char **np = realloc(t->paths, (t->n_paths + 1) * sizeof(char *));

                if (!np || !(np[t->n_paths] = strdup(p))) {
                        free(np ? np : t->paths);
                        t->paths = NULL;
                        r = -ENOMEM;
                        break;
                }
                t->paths = np;
                t->n_paths++;
        }
        sd_bus_message_unref(reply);
        if (r < 0)
                return r;
        return t->n_paths > 0 ? 0 : -ENOENT;
}

/* One call of the kind asked for; the reply is read back the way a client would use it. */
static int one_call(sd_bus *bus, const char *method, Target *t) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path = t->paths[(size_t) rand_r(&t->seed) % t->n_paths];
        int r;

        if (strcmp(method, "ListSnapshots") == 0)
                r = sd_bus_call_method(bus, BUS_NAME, t->domain, DOMAIN_IFACE, method, &error,
                                       &reply, "t", (uint64_t) 0);
        else if (strcmp(method, "LookupSnapshot") == 0) {
                char name[32];

                snprintf(name, sizeof(name), "b%04zu", (size_t) rand_r(&t->seed) % t->n_paths);
                r = sd_bus_call_method(bus, BUS_NAME, t->domain, DOMAIN_IFACE, method, &error,
                                       &reply, "s", name);
        } else if (strcmp(method, "GetXMLDesc") == 0)
                r = sd_bus_call_method(bus, BUS_NAME, path, SNAPSHOT_IFACE, method, &error,
                                       &reply, "t", (uint64_t) 0);
        else if (strcmp(method, "GetAll") == 0)
                r = sd_bus_call_method(bus, BUS_NAME, path, "org.freedesktop.DBus.Properties",
                                       method, &error, &reply, "s", SNAPSHOT_IFACE);
        else if (strcmp(method, "Ping") == 0)
                r = sd_bus_call_method(bus, BUS_NAME, MANAGER_PATH, "org.freedesktop.DBus.Peer",
                                       method, &error, &reply, NULL);
        else
                r = -EINVAL;
        if (r < 0 && !stop)
                fprintf(stderr, "bus-load: %s: %s\n", method, error.message ?: strerror(-r));
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r;
}

int main(int argc, char **argv) {
        Target t = {};
        sd_bus *bus = NULL;
        struct rusage ru;
        double start, end, interval = 0, next, *each = NULL;
        bool print_each;
        size_t calls = 0, n_each = 0;
        int r;

        print_each = argc == 7 && strncmp(argv[6], "--each", 6) == 0;
        if (print_each && argv[6][6] == '=')
                interval = strtod(argv[6] + 7, NULL) / 1000.0;
        if ((argc != 6 && !print_each) || interval < 0 || (print_each && argv[6][6] && !interval)) {
                fprintf(stderr, "usage: bus-load ADDRESS METHOD DOMAIN-PATH START END [--each[=MS]]\n");
                return 2;
        }
        t.domain = argv[3];
        t.seed = (unsigned) getpid();
        start = strtod(argv[4], NULL);
        end = strtod(argv[5], NULL);
        signal(SIGTERM, on_term);

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, argv[1]);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0) {
                fprintf(stderr, "bus-load: connecting to %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        if (list_paths(bus, &t) < 0)
                return 1;

        while (!stop && realtime() < start)
                usleep(500);
        next = realtime();
        while (!stop) {
                double t0 = realtime();

                if (t0 >= end)
                        break;
                if (interval > 0) {
                        if (t0 < next) {
                                usleep((useconds_t) ((next - t0) * 1e6));
                                continue;
                        }
                        /* A late call does not bunch up the ones behind it. */
                        next = (t0 - next > interval ? t0 : next) + interval;
                }
                r = one_call(bus, argv[2], &t);
                if (r < 0 && stop)
                        break;          /* SIGTERM interrupted the call: not counted */
                if (r < 0)
                        return 1;
                calls++;
                if (print_each) {
                        if (n_each % 4096 == 0) {
                                double *ne = realloc(each, (n_each + 4096) * 2 * sizeof(double));

                                if (!ne)
                                        return 1;
                                each = ne;
                        }
                        each[2 * n_each] = t0;
                        each[2 * n_each + 1] = realtime() - t0;
                        n_each++;
                }
        }
        getrusage(RUSAGE_SELF, &ru);
        for (size_t i = 0; i < n_each; i++)
                printf("%.6f %.6f\n", each[2 * i], each[2 * i + 1]);
        printf("%zu %ld\n", calls,
               (long) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L +
                       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
        free(each);
        for (size_t i = 0; i < t.n_paths; i++)
                free(t.paths[i]);
        free(t.paths);
        sd_bus_flush_close_unref(bus);
        return 0;
}
