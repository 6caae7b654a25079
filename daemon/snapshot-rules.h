/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* DESIGN.md's creation rules 1-7 as pure functions: whether a request may run, and what the
 * job must do (pause, resume, transaction). No I/O, no bus: unit-tested over a table. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "snapshot-def.h"

typedef enum DomainState {
        DOMAIN_STATE_UNKNOWN,
        DOMAIN_STATE_RUNNING,
        DOMAIN_STATE_PAUSED,
        DOMAIN_STATE_SHUTOFF,
        _DOMAIN_STATE_MAX,
} DomainState;

const char *domain_state_to_string(DomainState s);

typedef struct CreateCheck {
        uint64_t flags;                 /* SNAPSHOT_CREATE_* */
        SnapshotLocation memory;        /* as asked; DEFAULT when not said */
        DomainState state;
        bool agent_configured;
        bool quiesce_best_effort;       /* go on unquiesced when the agent cannot freeze */
        bool can_transaction;           /* QEMU has "transaction" with the action we use */
        unsigned n_disks;               /* disks that will be snapshotted */
} CreateCheck;

typedef struct CreatePlan {
        SnapshotLocation memory;        /* resolved: NO for disk-only */
        bool disk_only;                 /* memory NO: flags DISK_ONLY, or memory="no" */
        bool quiesce;
        bool pause;                     /* the daemon itself pauses (rule 5) */
        bool resume;                    /* cont afterwards (rule 6) */
        bool halt;
        bool use_transaction;           /* rule 7 */
        bool validate_only;
} CreatePlan;

/* Rules 1-3 and the flag checks alone, which need nothing but the request (and the state,
 * for LIVE on a shut-off domain): run before anything else so a conflict is named first. */
int snapshot_rules_check_flags(uint64_t flags, SnapshotLocation memory, DomainState state, sd_bus_error *error);

/* Checks the rules. On a violation fills error (OperationUnsupported naming the conflicting
 * options, OperationInvalid for the domain's state, InvalidArgs for unknown flag bits) and
 * returns its negative errno; else fills *ret and returns 0. */
int snapshot_rules_check_create(const CreateCheck *c, CreatePlan *ret, sd_bus_error *error);
