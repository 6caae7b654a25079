/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Running a long call (a create, delete or revert job) the way a person at a terminal wants
 * it: the domain's Progress signals drawn as one line redrawn in place on a TTY (phase,
 * percent, MiB/s, ETA), plain lines otherwise, and Ctrl-C offering to abort the job.
 *
 * Everything happens in one sd-event loop: the call's reply, the Progress signals, SIGINT
 * (a signal source) and the answer to the abort question (an I/O source on /dev/tty), so
 * the bus is served while the question waits and the job may even end meanwhile. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <systemd/sd-event.h>

#include "client-bus.h"
#include "client-job.h"
#include "client-output.h"
#include "daemon/macro.h"
#include "snapshot-bus.h"

#define MIB (1024.0 * 1024.0)
#define BAR_WIDTH 20
/* Plain lines for one phase at most this often; the TTY line is redrawn this often too, so
 * that the elapsed time of a phase without totals moves. */
#define PRINT_INTERVAL_USEC USEC_PER_SEC
/* Rate samples closer than this would make MiB/s jump about. */
#define RATE_SAMPLE_USEC (200 * USEC_PER_MSEC)

typedef struct JobState {
        sd_bus *bus;
        const char *domain_path;
        const JobOptions *opts;
        sd_event *event;
        sd_event_source *tick;          /* TTY only: redraws the line once a second */
        sd_event_source *prompt;        /* the abort question, waiting for a line on tty_fd */
        int tty_fd;

        sd_bus_message *reply;
        sd_bus_error error;
        int result;
        bool done;
        bool tty;
        bool line_drawn;
        bool abort_sent;

        /* The last Progress signal, and what we made of it. */
        char phase[32];
        uint64_t processed, remaining, total;
        uint64_t phase_start_usec;
        uint64_t last_print_usec;
        bool bytes;                     /* processed/total count bytes (memory), not items (disks) */
        uint64_t rate_usec;             /* rate sample: time and bytes */
        uint64_t rate_bytes;
        double rate;                    /* bytes per second, smoothed; 0 when unknown */
} JobState;

unsigned job_progress_percent(uint64_t processed, uint64_t remaining, uint64_t total) {
        uint64_t done;

        if (total == 0)
                return 0;
        /* Nothing sent and nothing known to remain: the phase has just begun. (Zero pages
         * are not sent, so at the end processed may stay well below total.) */
        if (processed == 0 && remaining == 0)
                return 0;
        done = total - (remaining < total ? remaining : total);
        return (unsigned) (done * 100 / total);
}

static int safe_close(int fd) {
        if (fd >= 0)
                (void) close(fd);
        return -1;
}

static void format_duration(char *buf, size_t size, double seconds) {
        unsigned long t = seconds < 0 ? 0 : (unsigned long) (seconds + 0.5);

        if (t >= 3600)
                snprintf(buf, size, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
        else
                snprintf(buf, size, "%lu:%02lu", t / 60, t % 60);
}

static void clear_line(JobState *s) {
        if (!s->line_drawn)
                return;
        fputs("\r\033[K", stderr);
        fflush(stderr);
        s->line_drawn = false;
}

/* The TTY line from the last Progress, e.g.
 *   memory    42% [########------------]   812.3 MiB/s  ETA 0:03
 *   sync     0:02                                               */
static void draw_line(JobState *s) {
        char line[160], t[32];
        struct winsize ws;

        if (!s->tty || s->opts->no_progress || s->prompt || s->done || !s->phase[0])
                return;

        if (s->total > 0) {
                unsigned pct = job_progress_percent(s->processed, s->remaining, s->total);
                char bar[BAR_WIDTH + 1], rate[32] = "", eta[48] = "";

                for (unsigned i = 0; i < BAR_WIDTH; i++)
                        bar[i] = i < pct * BAR_WIDTH / 100 ? '#' : '-';
                bar[BAR_WIDTH] = '\0';

                if (!s->bytes)
                        snprintf(rate, sizeof(rate), "  %" PRIu64 "/%" PRIu64, s->processed, s->total);
                else if (s->rate > 0) {
                        snprintf(rate, sizeof(rate), "  %7.1f MiB/s", s->rate / MIB);
                        if (s->remaining > 0) {
                                format_duration(t, sizeof(t), (double) s->remaining / s->rate);
                                snprintf(eta, sizeof(eta), "  ETA %s", t);
                        }
                }
                snprintf(line, sizeof(line), "%-8s %3u%% [%s]%s%s", s->phase, pct, bar, rate, eta);
        } else {
                format_duration(t, sizeof(t), (double) (now_usec() - s->phase_start_usec) / 1e6);
                snprintf(line, sizeof(line), "%-8s %s", s->phase, t);
        }

        /* A line longer than the terminal would wrap, and \r would only go back to its last
         * row: cut it instead. */
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) >= 0 && ws.ws_col > 1 && strlen(line) >= ws.ws_col)
                line[ws.ws_col - 1] = '\0';

        fprintf(stderr, "\r\033[K%s", line);
        fflush(stderr);
        s->line_drawn = true;
}

/* Without a TTY: each phase once when it begins, and the memory save's bytes again at most
 * once a second. */
static void print_plain(JobState *s, bool changed) {
        uint64_t t = now_usec();

        if (!changed && (!s->bytes || t < s->last_print_usec + PRINT_INTERVAL_USEC))
                return;
        s->last_print_usec = t;

        if (s->total > 0 && s->bytes)
                fprintf(stderr, "progress: %s %u%% %.0f/%.0f MiB\n", s->phase,
                        job_progress_percent(s->processed, s->remaining, s->total),
                        (double) s->processed / MIB, (double) s->total / MIB);
        else if (s->total > 0)
                fprintf(stderr, "progress: %s %" PRIu64 "/%" PRIu64 "\n", s->phase, s->processed, s->total);
        else
                fprintf(stderr, "progress: %s\n", s->phase);
        fflush(stderr);
}

static int on_progress(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        JobState *s = userdata;
        const char *job, *phase;
        uint64_t processed, remaining, total, t = now_usec();
        bool changed;

        /* A malformed signal is not worth failing a job over. */
        if (sd_bus_message_read(m, "ssttt", &job, &phase, &processed, &remaining, &total) < 0)
                return 0;
        if (s->opts->no_progress || s->done)
                return 0;

        if (streq(phase, "done")) {
                clear_line(s);
                return 0;
        }

        changed = !streq(phase, s->phase);
        if (changed) {
                snprintf(s->phase, sizeof(s->phase), "%s", phase);
                s->bytes = streq(phase, "memory");
                s->phase_start_usec = t;
                s->rate_usec = t;
                s->rate_bytes = processed;
                s->rate = 0;
        } else if (s->bytes && processed > s->rate_bytes && t >= s->rate_usec + RATE_SAMPLE_USEC) {
                double r = (double) (processed - s->rate_bytes) / ((double) (t - s->rate_usec) / 1e6);

                s->rate = s->rate > 0 ? 0.7 * s->rate + 0.3 * r : r;
                s->rate_usec = t;
                s->rate_bytes = processed;
        }
        s->processed = processed;
        s->remaining = remaining;
        s->total = total;

        if (s->tty)
                draw_line(s);
        else
                print_plain(s, changed);
        return 0;
}

static int on_tick(sd_event_source *source, uint64_t usec, void *userdata) {
        JobState *s = userdata;

        draw_line(s);
        return sd_event_source_set_time(source, usec + PRINT_INTERVAL_USEC);
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

static int on_abort_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        JobState *s = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        if (!e || s->done)
                return 0;

        /* E.g. the save is past the point of no return: the job finishes normally. Ctrl-C
         * may try again. */
        s->abort_sent = false;
        clear_line(s);
        log_bus_error(e, sd_bus_message_get_errno(m), "Failed to abort the job");
        return 0;
}

static void send_abort(JobState *s) {
        int r;

        if (s->abort_sent)
                return;

        clear_line(s);
        r = sd_bus_call_method_async(s->bus, NULL, SNAPSHOT_BUS_NAME, s->domain_path, SNAPSHOT_IFACE_DOMAIN,
                                     "AbortJob", on_abort_reply, s, NULL);
        if (r < 0) {
                log_error_errno(r, "Failed to ask for the job to be aborted: %m");
                return;
        }
        s->abort_sent = true;
        fputs("Aborting the job...\n", stderr);
        fflush(stderr);
}

/* Ends the question; message (may be NULL) goes on a line of its own below it. */
static void prompt_close(JobState *s, const char *message) {
        if (!s->prompt)
                return;
        s->prompt = sd_event_source_disable_unref(s->prompt);
        s->tty_fd = safe_close(s->tty_fd);
        fprintf(stderr, "\n%s%s", strempty(message), message ? "\n" : "");
        fflush(stderr);
        draw_line(s);
}

static int on_prompt_input(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        JobState *s = userdata;
        char buf[64];
        bool yes = false, first = true;
        ssize_t n;

        /* The terminal is normally line-buffered, so this is the whole answer; read what
         * else was typed too, or it would go to the shell after us. */
        for (;;) {
                n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (first) {
                        size_t i = strspn(buf, " \t");

                        yes = i < (size_t) n && (buf[i] == 'y' || buf[i] == 'Y');
                        first = false;
                }
                if (memchr(buf, '\n', (size_t) n))
                        break;
        }

        /* The answer's newline already moved the cursor: no extra line. */
        s->prompt = sd_event_source_disable_unref(s->prompt);
        s->tty_fd = safe_close(s->tty_fd);
        if (yes)
                send_abort(s);
        else {
                fputs("The job goes on.\n", stderr);
                fflush(stderr);
                draw_line(s);
        }
        return 0;
}

/* Returns 0 when the question is up, < 0 when there is no terminal to ask on. */
static int prompt_open(JobState *s) {
        int r;

        s->tty_fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (s->tty_fd < 0)
                return -errno;

        r = sd_event_add_io(s->event, &s->prompt, s->tty_fd, EPOLLIN, on_prompt_input, s);
        if (r < 0) {
                s->tty_fd = safe_close(s->tty_fd);
                return r;
        }

        /* Over the progress line (and the "^C" the terminal echoed). */
        s->line_drawn = false;
        fputs("\r\033[KAbort the snapshot job? [y/N] ", stderr);
        fflush(stderr);
        return 0;
}

static int on_sigint(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata) {
        JobState *s = userdata;

        if (s->done)
                return 0;

        if (s->opts->not_abortable) {
                clear_line(s);
                fputs("Not waiting any longer; the job goes on in snapshotd.\n", stderr);
                s->done = true;
                s->result = -ECANCELED;
                return sd_event_exit(s->event, 0);
        }

        /* A second Ctrl-C while asking means "no". */
        if (s->prompt) {
                prompt_close(s, "The job goes on.");
                return 0;
        }

        if (s->abort_sent) {
                clear_line(s);
                fputs("Waiting for the job to be rolled back...\n", stderr);
                fflush(stderr);
                return 0;
        }

        if (s->tty && !s->opts->abort_on_interrupt && prompt_open(s) >= 0)
                return 0;

        /* A script (or --abort-on-interrupt): abort, as virsh does. */
        send_abort(s);
        return 0;
}

int bus_call_job(sd_bus *bus, sd_bus_message *m, const char *domain_path, const JobOptions *opts,
                 sd_bus_error *error, sd_bus_message **ret_reply) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *match = NULL, *call = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *sigint = NULL;
        JobState s = {
                .bus = bus,
                .domain_path = domain_path,
                .opts = opts,
                .tty_fd = -1,
                .error = SD_BUS_ERROR_NULL,
                .tty = isatty(STDERR_FILENO),
        };
        sigset_t mask, old;
        bool blocked = false;
        int r;

        r = sd_event_new(&s.event);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, s.event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                goto finish;
        /* The loop ends with the reply, and the caller goes on using the connection. */
        (void) sd_bus_set_close_on_exit(bus, false);

        /* Subscribe before calling, so that no early Progress signal is missed. This waits
         * for the bus to confirm the match. */
        if (!opts->no_progress) {
                r = sd_bus_match_signal(bus, &match, SNAPSHOT_BUS_NAME, domain_path, SNAPSHOT_IFACE_DOMAIN,
                                        "Progress", on_progress, &s);
                if (r < 0)
                        goto finish;
        }

        if (s.tty && !opts->no_progress) {
                r = sd_event_add_time_relative(s.event, &s.tick, CLOCK_MONOTONIC, PRINT_INTERVAL_USEC, 0,
                                               on_tick, &s);
                if (r < 0)
                        goto finish;
        }

        /* sd-event takes SIGINT through a signalfd, which needs it blocked. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, &old) < 0) {
                r = -errno;
                goto finish;
        }
        blocked = true;
        r = sd_event_add_signal(s.event, &sigint, SIGINT, on_sigint, &s);
        if (r < 0)
                goto finish;

        r = sd_bus_call_async(bus, &call, m, on_reply, &s, CALL_TIMEOUT_JOB);
        if (r < 0)
                goto finish;

        r = sd_event_loop(s.event);
        if (r >= 0)
                r = s.result;
        if (s.prompt)
                prompt_close(&s, NULL);
        clear_line(&s);
        if (r < 0 && sd_bus_error_is_set(&s.error))
                (void) sd_bus_error_copy(error, &s.error);
        else if (r >= 0 && ret_reply)
                *ret_reply = TAKE_PTR(s.reply);

finish:
        sigint = sd_event_source_disable_unref(sigint);
        if (blocked) {
                /* A Ctrl-C that came with the reply must not kill us before the result is
                 * printed: the job is over either way. */
                while (sigtimedwait(&mask, NULL, &(struct timespec) {}) == SIGINT)
                        ;
                (void) sigprocmask(SIG_SETMASK, &old, NULL);
        }
        sd_event_source_disable_unref(s.tick);
        sd_event_source_disable_unref(s.prompt);
        safe_close(s.tty_fd);
        /* Leaves the connection as it was: the caller may go on with blocking calls. */
        (void) sd_bus_detach_event(bus);
        sd_bus_message_unref(s.reply);
        sd_bus_error_free(&s.error);
        sd_event_unref(s.event);
        return r;
}
