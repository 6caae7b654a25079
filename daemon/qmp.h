/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An asynchronous QMP client on sd-event. Never blocks, never logs: every outcome reaches the
 * caller through a callback with a negative errno and, for QEMU's own errors, QEMU's text. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct Qmp Qmp;

typedef struct QmpError {
        int error;              /* negative errno: -EIO QEMU said error, -ETIMEDOUT, -ECONNRESET gone, -ECANCELED */
        const char *klass;      /* QEMU's error class ("GenericError"), or NULL */
        const char *desc;       /* QEMU's human-readable text, or a short description of the transport error */
} QmpError;

/* reply: the "return" value (borrowed, valid during the call) on success, NULL on error with err set. */
typedef void (*qmp_reply_fn)(Qmp *q, json_t *reply, const QmpError *err, void *userdata);
/* event: name and "data" (borrowed; may be NULL) of an asynchronous event. */
typedef void (*qmp_event_fn)(Qmp *q, const char *event, json_t *data, void *userdata);
/* state: called with true once the greeting and qmp_capabilities (and probing) are done, with false
 * (and the errno) when the connection is lost or could not be made. Pending calls fail with
 * -ECONNRESET before it is called with false. */
typedef void (*qmp_state_fn)(Qmp *q, bool connected, int error, void *userdata);
/* stall: a call timed out (after its callback got -ETIMEDOUT); the connection stays. */
typedef void (*qmp_stall_fn)(Qmp *q, const char *command, void *userdata);

int qmp_new(Qmp **ret, sd_event *event, const char *socket_path);
Qmp *qmp_ref(Qmp *q);
Qmp *qmp_unref(Qmp *q);  /* closes the connection; pending calls get -ECANCELED */
static inline void qmp_unrefp(Qmp **q) {
        if (*q)
                qmp_unref(*q);
}

void qmp_set_handlers(Qmp *q, qmp_state_fn state, qmp_event_fn event, void *userdata);
/* Called with the handlers' userdata. */
void qmp_set_stall_handler(Qmp *q, qmp_stall_fn stall);
/* The timeout of calls made with timeout_usec 0, and of the handshake (0: 30 s). */
void qmp_set_default_timeout(Qmp *q, uint64_t usec);

/* Start connecting (non-blocking). Returns 0 when the attempt started. */
int qmp_connect(Qmp *q);
void qmp_disconnect(Qmp *q);
bool qmp_is_connected(Qmp *q);

/* Send a command. args may be NULL; ownership of args is taken (also on failure).
 * fd >= 0 is passed with SCM_RIGHTS along with the command (for "getfd"/"add-fd"); it is dup'ed.
 * timeout_usec 0 means the client default (30 s). The returned id can be given to qmp_cancel().
 * Callbacks always run from the event loop, never from inside qmp_call(). */
int qmp_call(Qmp *q, const char *command, json_t *args, int fd, uint64_t timeout_usec,
             qmp_reply_fn cb, void *userdata, uint64_t *ret_id);
/* Forget a pending call: its callback is not called. The reply, if it comes, is dropped. */
void qmp_cancel(Qmp *q, uint64_t id);
/* The queued commands go out now (json_stream_flush()). */
void qmp_flush(Qmp *q);

/* How long, in all, at least one command sent was still unanswered: QEMU's share of a job's
 * time is the difference of two readings (the outcome's log line). */
uint64_t qmp_busy_usec(Qmp *q);

/* Probed after connecting with query-commands and query-qmp-schema. */
bool qmp_has_command(Qmp *q, const char *command);
/* Whether "transaction" exists and accepts the given action type (e.g. "blockdev-snapshot"). */
bool qmp_has_transaction_action(Qmp *q, const char *action);
