/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Running a long call (a create, delete or revert job) the way a person at a terminal wants
 * it: the domain's Progress signals drawn as one line redrawn in place on a TTY (phase,
 * percent, MiB/s, ETA), plain lines otherwise, and Ctrl-C offering to abort the job. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "client-bus.h"
#include "client-job.h"
#include "client-output.h"
#include "daemon/macro.h"
#include "snapshot-bus.h"

typedef struct JobState {
        sd_bus *bus;
        const char *domain_path;
        const JobOptions *opts;
        sd_event *event;
        sd_bus_message *reply;
        sd_bus_error error;
        int result;
        bool done;
        bool tty;
        bool line_drawn;

        char phase[32];
        uint64_t start_usec;
        uint64_t last_print_usec;
        uint64_t rate_usec;             /* rate sample: time and bytes */
        uint64_t rate_bytes;
        double rate;                    /* bytes per second, smoothed */
        bool abort_sent;
} JobState;

static uint64_t now(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static void clear_line(JobState *s) {
        if (s->tty && s->line_drawn) {
                fputs("\r\033[K", stderr);
                fflush(stderr);
                s->line_drawn = false;
        }
}

static void format_eta(char *buf, size_t size, double seconds) {
        unsigned long t = seconds < 0 ? 0 : (unsigned long) (seconds + 0.5);

        if (t >= 3600)
                snprintf(buf, size, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
        else
                snprintf(buf, size, "%lu:%02lu", t / 60, t % 60);
}

static void draw(JobState *s, const char *phase, uint64_t processed, uint64_t remaining, uint64_t total) {
        uint64_t t = now();
        bool changed = strcmp(phase, s->phase) != 0;
        double mib = 1024.0 * 1024.0;

        if (changed) {
                snprintf(s->phase, sizeof(s->phase), "%s", phase);
                s->rate_usec = t;
                s->rate_bytes = processed;
                s->rate = 0;
        } else if (processed > s->rate_bytes && t > s->rate_usec + 200000) {
                double r = (double) (processed - s->rate_bytes) / ((double) (t - s->rate_usec) / 1e6);

                s->rate = s->rate > 0 ? 0.7 * s->rate + 0.3 * r : r;
                s->rate_usec = t;
                s->rate_bytes = processed;
        }

        if (s->tty) {
                char line[160], eta[32] = "";
                int n;

                if (total > 0) {
                        unsigned pct = (unsigned) (processed * 100 / total > 100 ? 100 : processed * 100 / total);
                        char bar[21];
                        unsigned fill = pct / 5;

                        for (unsigned i = 0; i < 20; i++)
                                bar[i] = i < fill ? '#' : '-';
                        bar[20] = 0;
                        if (s->rate > 0 && remaining > 0)
                                format_eta(eta, sizeof(eta), (double) remaining / s->rate);
                        n = snprintf(line, sizeof(line), "%-8s %3u%% [%s] %7.1f MiB/s%s%s", phase, pct, bar,
                                     s->rate / mib, eta[0] ? "  ETA " : "", eta);
                } else {
                        format_eta(eta, sizeof(eta), (double) (t - s->start_usec) / 1e6);
                        n = snprintf(line, sizeof(line), "%-8s %s", phase, eta);
                }
                (void) n;
                fprintf(stderr, "\r\033[K%s", line);
                fflush(stderr);
                s->line_drawn = true;
                return;
        }

        /* Plain lines: each phase once, the memory phase at most once a second. */
        if (!changed && t < s->last_print_usec + 1000000)
                return;
        s->last_print_usec = t;
        if (total > 0)
                fprintf(stderr, "progress: %s %u%% %.0f/%.0f MiB\n", phase,
                        (unsigned) (processed * 100 / total > 100 ? 100 : processed * 100 / total),
                        (double) processed / mib, (double) total / mib);
        else
                fprintf(stderr, "progress: %s\n", phase);
}

static int on_progress(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        JobState *s = userdata;
        const char *job, *phase;
        uint64_t processed, remaining, total;

        if (sd_bus_message_read(m, "ssttt", &job, &phase, &processed, &remaining, &total) < 0)
                return 0;
        if (s->opts->no_progress || s->done)
                return 0;
        if (strcmp(phase, "done") == 0) {
                clear_line(s);
                return 0;
        }
        draw(s, phase, processed, remaining, total);
        return 0;
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        JobState *s = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        s->done = true;
        if (e) {
                (void) sd_bus_error_copy(&s->error, e);
                s->result = -sd_bus_message_get_errno(m) ?: -EIO;
        } else {
                s->reply = sd_bus_message_ref(m);
                s->result = 0;
        }
        return sd_event_exit(s->event, 0);
}

static void send_abort(JobState *s) {
        int r;

        if (s->abort_sent)
                return;
        s->abort_sent = true;
        r = sd_bus_call_method_async(s->bus, NULL, SNAPSHOT_BUS_NAME, s->domain_path, SNAPSHOT_IFACE_DOMAIN,
                                     "AbortJob", NULL, NULL, NULL);
        if (r < 0)
                log_error_errno(r, "Failed to ask for the job to be aborted: %m");
        else
                fprintf(stderr, "Aborting the job...\n");
}

/* Asks at the terminal; the job goes on meanwhile (its messages wait in the socket). */
static bool ask_abort(void) {
        char answer[16] = "";
        int fd;
        ssize_t n;

        fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return false;
        (void) !write(fd, "\r\033[KAbort the snapshot job? [y/N] ", 35);
        n = read(fd, answer, sizeof(answer) - 1);
        close(fd);
        return n > 0 && (answer[0] == 'y' || answer[0] == 'Y');
}

static int on_sigint(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
        JobState *s = userdata;

        if (s->done)
                return 0;
        if (s->opts->abort_on_interrupt || (!s->tty && !s->opts->no_abort_prompt)) {
                clear_line(s);
                send_abort(s);
                return 0;
        }
        if (s->tty) {
                s->line_drawn = true; /* the prompt sits on the progress line */
                if (ask_abort())
                        send_abort(s);
                else
                        fprintf(stderr, "The job goes on.\n");
                s->line_drawn = false;
        }
        return 0;
}

int bus_call_job(sd_bus *bus, sd_bus_message *m, const char *domain_path, const JobOptions *opts,
                 sd_bus_error *error, sd_bus_message **ret_reply) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *match = NULL, *call = NULL;
        JobState s = {
                .bus = bus,
                .domain_path = domain_path,
                .opts = opts,
                .error = SD_BUS_ERROR_NULL,
                .tty = isatty(STDERR_FILENO),
                .start_usec = now(),
        };
        sigset_t mask, old;
        int r;

        r = sd_event_new(&s.event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate an event loop: %m");
        r = sd_bus_attach_event(bus, s.event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                goto finish;
        /* The loop ends with the reply, and the caller goes on using the connection. */
        (void) sd_bus_set_close_on_exit(bus, false);

        /* Subscribe before calling, so no early Progress signal is missed. */
        r = sd_bus_match_signal(bus, &match, SNAPSHOT_BUS_NAME, domain_path, SNAPSHOT_IFACE_DOMAIN, "Progress",
                                on_progress, &s);
        if (r < 0)
                goto finish;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        (void) sigprocmask(SIG_BLOCK, &mask, &old);
        r = sd_event_add_signal(s.event, NULL, SIGINT, on_sigint, &s);
        if (r < 0)
                goto restore;

        r = sd_bus_call_async(bus, &call, m, on_reply, &s, CALL_TIMEOUT_JOB);
        if (r < 0)
                goto restore;

        r = sd_event_loop(s.event);
        if (r >= 0)
                r = s.result;
        clear_line(&s);
        if (r < 0 && sd_bus_error_is_set(&s.error))
                (void) sd_bus_error_copy(error, &s.error);
        else if (r >= 0 && ret_reply)
                *ret_reply = TAKE_PTR(s.reply);

restore:
        (void) sigprocmask(SIG_SETMASK, &old, NULL);
finish:
        (void) sd_bus_detach_event(bus);
        sd_bus_message_unref(s.reply);
        sd_bus_error_free(&s.error);
        sd_event_unref(s.event);
        if (r < 0 && !sd_bus_error_is_set(error))
                return r;
        return r;
}
