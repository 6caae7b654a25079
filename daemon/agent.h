/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An asynchronous client for the QEMU guest agent, on the same machinery as the QMP client.
 * The agent may be absent (nothing reads the channel) or hung: every call has a timeout.
 * Calls are serialized; each new connection (and each connection after a timeout) first
 * resynchronizes with guest-sync-delimited. Never logs. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "qmp.h"

typedef struct Agent Agent;

/* reply: "return" value (borrowed) or NULL with err set (err->error: -ETIMEDOUT when the agent did
 * not answer, -ENOTCONN/-ECONNREFUSED when the socket is absent, -EIO for an agent error with
 * err->desc the agent's text). */
typedef void (*agent_reply_fn)(Agent *a, json_t *reply, const QmpError *err, void *userdata);

int agent_new(Agent **ret, sd_event *event, const char *socket_path);
Agent *agent_unref(Agent *a);  /* pending calls get -ECANCELED */
static inline void agent_unrefp(Agent **a) {
        if (*a)
                agent_unref(*a);
}

/* timeout_usec 0 means the default (10 s). The handshake counts against the same timeout. */
int agent_call(Agent *a, const char *command, json_t *args, uint64_t timeout_usec,
               agent_reply_fn cb, void *userdata, uint64_t *ret_id);
void agent_cancel(Agent *a, uint64_t id);

/* True when the last exchange with the agent succeeded. */
bool agent_answered(Agent *a);
