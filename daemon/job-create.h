/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The snapshot-create job: an asynchronous state machine over QMP and the guest agent that
 * either completes a snapshot or undoes every step it took (DESIGN.md rules 4-8). */
#pragma once

#include <jansson.h>
#include <systemd/sd-bus.h>

#include "create-options.h"

typedef struct Domain Domain;
typedef struct CreateJob CreateJob;

/* Starts the job on d; the reply to m (the method call) is sent when it ends. req is taken
 * (cleared) on success. Returns < 0 with error set when it cannot even start. */
int create_job_start(Domain *d, sd_bus_message *m, CreateRequest *req, sd_bus_error *error);

/* Drops the job without replying (daemon shutdown): best-effort undo is not attempted. */
CreateJob *create_job_free(CreateJob *j);

/* QMP events of the domain, forwarded while the job runs (block job status changes). */
void create_job_on_event(CreateJob *j, const char *event, json_t *data);

/* QEMU went away: a job waiting for QEMU's events fails (and rolls back what it can). */
void create_job_on_disconnect(CreateJob *j);

/* AbortJob: cancels a running memory save (migrate_cancel); the job then rolls back and its
 * caller gets Aborted. OperationInvalid when the job is past the point where it can stop. */
int create_job_abort(CreateJob *j, sd_bus_error *error);
