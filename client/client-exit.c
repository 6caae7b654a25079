/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "client-exit.h"
#include "daemon/macro.h"
#include "snapshot-bus.h"

static const char *const errors_usage[] = {
        SNAPSHOT_ERROR_INVALID_ARGUMENT,
        SD_BUS_ERROR_INVALID_ARGS,
        NULL
};

static const char *const errors_unsupported[] = {
        SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
        NULL
};

static const char *const errors_no_such_object[] = {
        SNAPSHOT_ERROR_NO_SUCH_DOMAIN,
        SNAPSHOT_ERROR_NO_SUCH_SNAPSHOT,
        NULL
};

static const char *const errors_busy[] = {
        SNAPSHOT_ERROR_BUSY,
        NULL
};

static const char *const errors_denied[] = {
        SD_BUS_ERROR_ACCESS_DENIED,
        SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
        NULL
};

const ExitStatusInfo exit_status_table[] = {
        { EXIT_OK,             "Success" },
        { EXIT_FAILED,         "Failed (any other error)" },
        { EXIT_USAGE,          "Invalid command line or argument value",   errors_usage          },
        { EXIT_UNSUPPORTED,    "Operation not supported",                   errors_unsupported    },
        { EXIT_NO_SUCH_OBJECT, "No such domain or snapshot",                errors_no_such_object },
        { EXIT_BUSY,           "Domain busy with another job",              errors_busy           },
        { EXIT_DENIED,         "Not authorized",                            errors_denied         },
        {}
};

static int noted_status = EXIT_OK;

int exit_status_from_bus_error(const sd_bus_error *error) {
        if (!sd_bus_error_is_set(error))
                return EXIT_FAILED;

        for (const ExitStatusInfo *i = exit_status_table; i->meaning; i++)
                for (const char *const *n = i->errors; n && *n; n++)
                        if (sd_bus_error_has_name(error, *n))
                                return i->status;

        return EXIT_FAILED;
}

void exit_status_note(int status) {
        if (noted_status == EXIT_OK)
                noted_status = status;
}

int exit_status_of_failure(void) {
        return noted_status != EXIT_OK ? noted_status : EXIT_FAILED;
}

void exit_status_print_help(FILE *f) {
        fputs("Exit status:\n", f);
        for (const ExitStatusInfo *i = exit_status_table; i->meaning; i++)
                fprintf(f, "  %-4d%s\n", i->status, i->meaning);
}
