/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* list-domains */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-bus.h"
#include "client-objects.h"
#include "client-output.h"
#include "snapshot-bus.h"
#include "snapshotctl.h"

const VerbOption list_domains_options[] = {
        { "name", NULL, "Print only the names, one a line (for scripts and shell completion)" },
        {}
};

int check_list_domains(const VerbArgs *a) {
        if (verb_has(a, "name") && arg_json != JSON_OFF)
                return log_usage("--name and --json exclude each other.");
        return 0;
}

static int domain_compare(const void *a, const void *b) {
        const DomainInfo *x = a, *y = b;

        return strcmp(x->name ?: "", y->name ?: "");
}

int verb_list_domains(sd_bus *bus, const VerbArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_strv_free_ char **paths = NULL;
        _cleanup_(table_freep) Table *table = NULL;
        _cleanup_(json_decrefp) json_t *array = NULL;
        bool json = arg_json != JSON_OFF;
        DomainInfo *domains = NULL;
        size_t n = 0;
        int r;

        r = bus_call_method(bus, SNAPSHOT_ROOT_PATH, SNAPSHOT_IFACE_MANAGER, "ListDomains",
                            CALL_TIMEOUT_DEFAULT, &error, &reply, NULL);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to list domains");

        r = bus_read_strv(reply, "ao", &paths);
        if (r < 0)
                return log_error_errno(r, "Failed to parse ListDomains reply: %m");

        for (size_t i = 0; paths[i]; i++)
                n++;
        domains = calloc(n + 1, sizeof(DomainInfo));
        if (!domains)
                return log_error_errno(ENOMEM, "Out of memory.");

        n = 0;
        for (size_t i = 0; paths[i]; i++) {
                r = domain_info_load(bus, paths[i], json, /* missing_ok= */ true, domains + n);
                if (r == -ENOENT)
                        continue;       /* unregistered meanwhile */
                if (r < 0)
                        goto finish;
                n++;
        }

        qsort(domains, n, sizeof(DomainInfo), domain_compare);

        if (json) {
                array = json_array();
                if (!array) {
                        r = log_error_errno(ENOMEM, "Out of memory.");
                        goto finish;
                }
                for (size_t i = 0; i < n; i++)
                        if (json_array_append(array, domains[i].json) < 0) {
                                r = log_error_errno(ENOMEM, "Out of memory.");
                                goto finish;
                        }
                r = json_print(array);
                if (r < 0)
                        log_error_errno(r, "Failed to format JSON: %m");
                goto finish;
        }

        if (verb_has(a, "name")) {
                for (size_t i = 0; i < n; i++)
                        printf("%s\n", domains[i].name ?: "-");
                r = 0;
                goto finish;
        }

        r = table_new(&table, 4, "Name", "State", "Current Snapshot", "Agent");
        if (r < 0) {
                log_error_errno(r, "Out of memory.");
                goto finish;
        }

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *current = NULL;

                r = snapshot_name_of(bus, domains[i].current_snapshot, &current);
                if (r < 0)
                        goto finish;

                r = table_add_row(table, domains[i].name, domains[i].state, current,
                                  domains[i].has_agent ? "yes" : "no");
                if (r < 0) {
                        log_error_errno(r, "Out of memory.");
                        goto finish;
                }
        }

        table_print(table);
        r = 0;

finish:
        for (size_t i = 0; i < n; i++)
                domain_info_done(domains + i);
        free(domains);
        return r;
}
