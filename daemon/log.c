/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = 6;
static bool to_journal = false;

static const char *const level_names[] = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" };

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

int log_level_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';
        if (strcmp(s, "error") == 0)
                return 3;
        for (int i = 0; i < (int) ELEMENTSOF(level_names); i++)
                if (strcmp(s, level_names[i]) == 0)
                        return i;
        return -EINVAL;
}

void log_set_journal(bool journal) {
        to_journal = journal;
}

void log_open(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        /* systemd sets JOURNAL_STREAM=<dev>:<ino> of the stream it gave us; stderr may have been
         * redirected since (a shell, a test), so it counts only while it is that stream. */
        to_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) >= 0 &&
                     (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

/* "Domain 'vm1': ..." -> "vm1" (copied into buf), or NULL. */
static const char *domain_of(const char *msg, char *buf, size_t size) {
        const char *p = "Domain '", *end;
        size_t n;

        if (strncmp(msg, p, strlen(p)) != 0)
                return NULL;
        msg += strlen(p);
        end = strstr(msg, "': ");
        if (!end || (n = (size_t) (end - msg)) >= size)
                return NULL;
        memcpy(buf, msg, n);
        buf[n] = '\0';
        return buf;
}

/* fields: "KEY=value" strings, NULL entries skipped. */
static void log_write(int level, const char *msg, const char *const *fields, size_t n_fields) {
        char prio[16], domain[300], *dom_field = NULL, *msg_field = NULL;
        struct iovec iov[16];
        size_t n = 0;
        const char *d;

        if (to_journal) {
                d = domain_of(msg, domain, sizeof(domain));
                snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
                if (asprintf(&msg_field, "MESSAGE=%s", msg) >= 0 &&
                    (!d || asprintf(&dom_field, "SNAPSHOTD_DOMAIN=%s", d) >= 0)) {
                        iov[n++] = (struct iovec) { prio, strlen(prio) };
                        iov[n++] = (struct iovec) { msg_field, strlen(msg_field) };
                        iov[n++] = (struct iovec) { (char *) "SYSLOG_IDENTIFIER=snapshotd", strlen("SYSLOG_IDENTIFIER=snapshotd") };
                        if (dom_field)
                                iov[n++] = (struct iovec) { dom_field, strlen(dom_field) };
                        for (size_t i = 0; i < n_fields && n < ELEMENTSOF(iov); i++)
                                if (fields[i])
                                        iov[n++] = (struct iovec) { (char *) fields[i], strlen(fields[i]) };
                        if (sd_journal_sendv(iov, (int) n) >= 0) {
                                free(msg_field);
                                free(dom_field);
                                return;
                        }
                }
                free(msg_field);
                free(dom_field);
                /* journald is not there after all: stderr still reaches it with a prefix. */
                fprintf(stderr, "<%d>%s\n", level, msg);
                return;
        }
        fprintf(stderr, "%s\n", msg);
}

int log_internal(int level, int error, const char *format, ...) {
        char buf[2048];
        va_list ap;

        if (error > 0)
                error = -error;
        if (level > max_level)
                return error;

        /* %m means the error passed in, not whatever errno happens to be now. */
        errno = -error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        log_write(level, buf, NULL, 0);
        return error;
}

void log_job_outcome(const char *domain, const char *job, const char *snapshot, const char *error_name,
                     const char *error_message, uint64_t duration_usec, uint64_t qemu_usec) {
        char buf[2048], *f_snap = NULL, *f_job = NULL, *f_result = NULL, *f_dur = NULL, *f_qemu = NULL;
        const char *dot = error_name ? strrchr(error_name, '.') : NULL;
        const char *result = !error_name ? "done" : dot ? dot + 1 : error_name;
        int level = error_name ? 4 : 6;

        if (level > max_level)
                return;
        if (error_name)
                snprintf(buf, sizeof(buf), "Domain '%s': %s of '%s' failed after %.4f s (QEMU %.4f s): %s (%s)", domain,
                         job, snapshot ?: "", duration_usec / 1e6, qemu_usec / 1e6, error_message ?: "", error_name);
        else
                snprintf(buf, sizeof(buf), "Domain '%s': %s of '%s' done in %.4f s (QEMU %.4f s).", domain, job,
                         snapshot ?: "", duration_usec / 1e6, qemu_usec / 1e6);
        if (to_journal) {
                const char *fields[5];

                if (asprintf(&f_snap, "SNAPSHOTD_SNAPSHOT=%s", snapshot ?: "") < 0)
                        f_snap = NULL;
                if (asprintf(&f_job, "SNAPSHOTD_JOB=%s", job) < 0)
                        f_job = NULL;
                if (asprintf(&f_result, "SNAPSHOTD_RESULT=%s", result ?: "") < 0)
                        f_result = NULL;
                if (asprintf(&f_dur, "SNAPSHOTD_DURATION_USEC=%llu", (unsigned long long) duration_usec) < 0)
                        f_dur = NULL;
                if (asprintf(&f_qemu, "SNAPSHOTD_QEMU_USEC=%llu", (unsigned long long) qemu_usec) < 0)
                        f_qemu = NULL;
                fields[0] = f_snap;
                fields[1] = f_job;
                fields[2] = f_result;
                fields[3] = f_dur;
                fields[4] = f_qemu;
                log_write(level, buf, fields, ELEMENTSOF(fields));
                free(f_snap);
                free(f_job);
                free(f_result);
                free(f_dur);
                free(f_qemu);
                return;
        }
        log_write(level, buf, NULL, 0);
}
