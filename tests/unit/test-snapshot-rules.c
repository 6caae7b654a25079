/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Walks every combination of the ten create flags × memory kinds × domain states × agent ×
 * transaction support through snapshot_rules_check_create() and compares the verdict with an
 * oracle written independently, as a list of prohibitions in DESIGN.md's words. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "snapshot-bus.h"
#include "snapshot-rules.h"
#include "unit-test.h"

typedef struct Verdict {
        const char *error;              /* NULL: allowed */
        const char *must_mention[3];    /* words the message must name */
} Verdict;

#define F(x) (flags & SNAPSHOT_CREATE_##x)

static Verdict oracle(uint64_t flags, SnapshotLocation mem, DomainState st, bool agent, bool tx) {
        bool image = mem == SNAPSHOT_LOCATION_INTERNAL || mem == SNAPSHOT_LOCATION_EXTERNAL;
        bool disk_only = F(DISK_ONLY) || mem == SNAPSHOT_LOCATION_NO;
        const char *unsup = SNAPSHOT_ERROR_OPERATION_UNSUPPORTED;

        if (F(LIVE) && F(REDEFINE))
                return (Verdict) { unsup, { "live", "redefine" } };
        if (F(REDEFINE))
                return (Verdict) { unsup, { "redefine" } };
        if (F(CURRENT))
                return (Verdict) { unsup, { "current", "redefine" } };
        if (F(DISK_ONLY) && F(LIVE))
                return (Verdict) { unsup, { "live", "disk-only" } };
        if (F(DISK_ONLY) && image)
                return (Verdict) { unsup, { "disk-only", "memory" } };
        if (F(QUIESCE) && image)
                return (Verdict) { unsup, { "quiesce", "memory" } };
        if (F(QUIESCE) && F(LIVE))
                return (Verdict) { unsup, { "quiesce", "live" } };
        if (F(QUIESCE) && !F(DISK_ONLY))
                return (Verdict) { unsup, { "quiesce", "disk-only" } };
        if (F(LIVE) && mem != SNAPSHOT_LOCATION_EXTERNAL)
                return (Verdict) { unsup, { "live", "memory" } };
        if (F(LIVE) && st == DOMAIN_STATE_SHUTOFF)
                return (Verdict) { unsup, { "live", "shut off" } };
        if (F(QUIESCE) && !agent)
                return (Verdict) { unsup, { "quiesce", "agent" } };
        if (st != DOMAIN_STATE_RUNNING && st != DOMAIN_STATE_PAUSED)
                return (Verdict) { SNAPSHOT_ERROR_OPERATION_INVALID, { "Domain is" } };
        if (F(ATOMIC) && !tx)
                return (Verdict) { unsup, { "atomic", "transaction" } };
        (void) disk_only;
        return (Verdict) {};
}

static void walk(void) {
        static const SnapshotLocation mems[] = {
                SNAPSHOT_LOCATION_DEFAULT, SNAPSHOT_LOCATION_NO, SNAPSHOT_LOCATION_INTERNAL, SNAPSHOT_LOCATION_EXTERNAL,
        };
        static const DomainState states[] = { DOMAIN_STATE_RUNNING, DOMAIN_STATE_PAUSED, DOMAIN_STATE_SHUTOFF };
        unsigned n_cases = 0, n_allowed = 0;

        for (uint64_t flags = 0; flags < 1024; flags++)
                for (size_t mi = 0; mi < 4; mi++)
                        for (size_t si = 0; si < 3; si++)
                                for (int agent = 0; agent < 2; agent++)
                                        for (int tx = 0; tx < 2; tx++) {
                                                sd_bus_error error = SD_BUS_ERROR_NULL;
                                                CreateCheck c = {
                                                        .flags = flags, .memory = mems[mi], .state = states[si],
                                                        .agent_configured = agent, .can_transaction = tx, .n_disks = 2,
                                                };
                                                CreatePlan p = {};
                                                Verdict v = oracle(flags, mems[mi], states[si], agent, tx);
                                                int r = snapshot_rules_check_create(&c, &p, &error);

                                                n_cases++;
                                                if (!v.error) {
                                                        n_allowed++;
                                                        CHECK(r == 0, "flags=0x%llx mem=%zu state=%zu agent=%d tx=%d: refused: %s",
                                                              (unsigned long long) flags, mi, si, agent, tx, error.message);
                                                } else {
                                                        CHECK(r < 0 && sd_bus_error_has_name(&error, v.error),
                                                              "flags=0x%llx mem=%zu state=%zu agent=%d tx=%d: want %s, got %s (%s)",
                                                              (unsigned long long) flags, mi, si, agent, tx, v.error,
                                                              error.name ?: "success", error.message ?: "");
                                                        for (size_t w = 0; r < 0 && w < 3 && v.must_mention[w]; w++)
                                                                CHECK(error.message && strstr(error.message, v.must_mention[w]),
                                                                      "flags=0x%llx: message '%s' does not mention '%s'",
                                                                      (unsigned long long) flags, error.message, v.must_mention[w]);
                                                }
                                                sd_bus_error_free(&error);
                                        }
        printf("# walked %u combinations, %u allowed\n", n_cases, n_allowed);
}

static CreatePlan plan_for(uint64_t flags, SnapshotLocation mem, DomainState st, bool tx, unsigned n_disks) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        CreateCheck c = { .flags = flags, .memory = mem, .state = st, .agent_configured = true,
                          .can_transaction = tx, .n_disks = n_disks };
        CreatePlan p = {};
        int r = snapshot_rules_check_create(&c, &p, &error);

        CHECK(r == 0, "plan refused: %s", error.message);
        sd_bus_error_free(&error);
        return p;
}

static void plans(void) {
        CreatePlan p;

        /* Disk-only with a transaction: never paused by us (rule 5), nothing to resume. */
        p = plan_for(SNAPSHOT_CREATE_DISK_ONLY | SNAPSHOT_CREATE_ATOMIC, SNAPSHOT_LOCATION_DEFAULT,
                     DOMAIN_STATE_RUNNING, true, 2);
        CHECK(p.disk_only && !p.pause && !p.resume && p.use_transaction && p.memory == SNAPSHOT_LOCATION_NO, "disk-only tx");

        /* Disk-only, two disks, no transaction: pause, and resume a running guest (rules 5, 6). */
        p = plan_for(SNAPSHOT_CREATE_DISK_ONLY, SNAPSHOT_LOCATION_DEFAULT, DOMAIN_STATE_RUNNING, false, 2);
        CHECK(p.pause && p.resume, "disk-only without tx pauses");
        p = plan_for(SNAPSHOT_CREATE_DISK_ONLY, SNAPSHOT_LOCATION_DEFAULT, DOMAIN_STATE_RUNNING, false, 1);
        CHECK(!p.pause, "one disk needs no pause");
        p = plan_for(SNAPSHOT_CREATE_DISK_ONLY, SNAPSHOT_LOCATION_DEFAULT, DOMAIN_STATE_PAUSED, false, 2);
        CHECK(p.pause && !p.resume, "a paused guest stays paused");

        /* Memory without live: pause; with live: QEMU pauses, we resume. */
        p = plan_for(0, SNAPSHOT_LOCATION_EXTERNAL, DOMAIN_STATE_RUNNING, true, 2);
        CHECK(p.pause && p.resume && !p.disk_only, "paused external checkpoint");
        p = plan_for(SNAPSHOT_CREATE_LIVE, SNAPSHOT_LOCATION_EXTERNAL, DOMAIN_STATE_RUNNING, true, 2);
        CHECK(!p.pause && p.resume, "live checkpoint");
        p = plan_for(SNAPSHOT_CREATE_LIVE | SNAPSHOT_CREATE_HALT, SNAPSHOT_LOCATION_EXTERNAL, DOMAIN_STATE_RUNNING, true, 2);
        CHECK(!p.resume && p.halt, "halt never resumes");

        /* memory="no" is a disk-only snapshot; the default memory of a running guest is internal. */
        p = plan_for(0, SNAPSHOT_LOCATION_NO, DOMAIN_STATE_RUNNING, true, 1);
        CHECK(p.disk_only && p.memory == SNAPSHOT_LOCATION_NO, "memory no");
        p = plan_for(0, SNAPSHOT_LOCATION_DEFAULT, DOMAIN_STATE_RUNNING, true, 1);
        CHECK(!p.disk_only && p.memory == SNAPSHOT_LOCATION_INTERNAL, "default memory");

        p = plan_for(SNAPSHOT_CREATE_DISK_ONLY | SNAPSHOT_CREATE_VALIDATE, SNAPSHOT_LOCATION_DEFAULT,
                     DOMAIN_STATE_RUNNING, true, 1);
        CHECK(p.validate_only, "validate");
}

static void edge_cases(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        CreateCheck c = { .flags = 1 << 10, .state = DOMAIN_STATE_RUNNING, .n_disks = 1 };
        CreatePlan p;

        CHECK(snapshot_rules_check_create(&c, &p, &error) < 0 &&
              sd_bus_error_has_name(&error, SD_BUS_ERROR_INVALID_ARGS), "unknown flag bit");
        sd_bus_error_free(&error);

        c = (CreateCheck) { .flags = SNAPSHOT_CREATE_DISK_ONLY, .state = DOMAIN_STATE_RUNNING, .n_disks = 0 };
        CHECK(snapshot_rules_check_create(&c, &p, &error) < 0 &&
              sd_bus_error_has_name(&error, SNAPSHOT_ERROR_INVALID_ARGUMENT), "no disks");
        sd_bus_error_free(&error);

        /* quiesce-best-effort lets a quiesced snapshot go ahead without an agent. */
        c = (CreateCheck) { .flags = SNAPSHOT_CREATE_DISK_ONLY | SNAPSHOT_CREATE_QUIESCE, .state = DOMAIN_STATE_RUNNING,
                            .n_disks = 1, .quiesce_best_effort = true };
        CHECK(snapshot_rules_check_create(&c, &p, &error) == 0, "best effort: %s", error.message);
        sd_bus_error_free(&error);

        CHECK_STREQ(domain_state_to_string(DOMAIN_STATE_SHUTOFF), "shutoff");
        CHECK(domain_state_to_string(_DOMAIN_STATE_MAX) == NULL, "state table bound");
}

int main(void) {
        (void) errors_register();
        walk();
        plans();
        edge_cases();
        return unit_done("test-snapshot-rules");
}
