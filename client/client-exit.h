/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* snapshotctl's exit statuses: one table, the D-Bus error names that lead to each, and the
 * status a failed run ends with. */
#pragma once

#include <stdio.h>
#include <systemd/sd-bus.h>

/* LSB's values where LSB has one (2 invalid argument, 3 unimplemented feature), systemctl's
 * "no such unit" (4) for an object that does not exist, and the BSD sysexits values for the
 * two that LSB has no free number for: EX_TEMPFAIL (try again later) and EX_NOPERM.
 * Scripts rely on these: never renumber, only add. */
enum {
        EXIT_OK                 = 0,
        EXIT_FAILED             = 1,    /* anything else: QEMU, I/O, the bus, aborted jobs */
        EXIT_USAGE              = 2,    /* a command line or argument value not understood */
        EXIT_UNSUPPORTED        = 3,    /* not possible with these options or this domain */
        EXIT_NO_SUCH_OBJECT     = 4,    /* no such domain or snapshot */
        EXIT_BUSY               = 75,   /* the domain runs another job: try again later */
        EXIT_DENIED             = 77,   /* not authorized (polkit or the bus policy) */
};

typedef struct ExitStatusInfo {
        int status;
        const char *meaning;
        const char *const *errors;      /* D-Bus error names that give this status; NULL-terminated */
} ExitStatusInfo;

/* The table, in ascending order, terminated by an entry with meaning == NULL. */
extern const ExitStatusInfo exit_status_table[];

/* The status a failed call ends the program with: the one of its D-Bus error, or
 * EXIT_FAILED for names not in the table (and for no error at all). */
int exit_status_from_bus_error(const sd_bus_error *error);

/* Remembers why the run failed; the first status noted wins, since the first failure is
 * the one a verb stops at. */
void exit_status_note(int status);

/* What main() returns for a verb that failed: the noted status, else EXIT_FAILED. */
int exit_status_of_failure(void);

/* The table as text for --help. */
void exit_status_print_help(FILE *f);
