/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* macro.h first: jansson >= 2.9 defines its own json_decrefp(), which macro.h must not redefine. */
#include "macro.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-stream.h"
#include "qmp.h"

#define QMP_DEFAULT_TIMEOUT_USEC (30 * USEC_PER_SEC)

typedef enum QmpState {
        QMP_DISCONNECTED,
        QMP_CONNECTING,      /* socket being connected */
        QMP_GREETING,        /* waiting for {"QMP": ...} */
        QMP_NEGOTIATING,     /* qmp_capabilities sent */
        QMP_PROBING,         /* query-commands and query-qmp-schema sent */
        QMP_READY,
} QmpState;

typedef struct QmpCall QmpCall;
struct QmpCall {
        QmpCall *prev, *next;
        Qmp *qmp;
        uint64_t id;
        qmp_reply_fn cb;
        void *userdata;
        sd_event_source *timer;
        /* Set when the call has failed and only waits for its callback to run from the loop. */
        int deferred_error;
        char command[64];       /* for the stall handler: what QEMU did not answer */
};

struct Qmp {
        unsigned n_ref;
        bool freeing;
        sd_event *event;
        char *socket_path;
        JsonStream *stream;
        QmpState state;

        qmp_state_fn state_cb;
        qmp_event_fn event_cb;
        qmp_stall_fn stall_cb;
        void *userdata;
        uint64_t default_timeout_usec;   /* 0: QMP_DEFAULT_TIMEOUT_USEC */

        uint64_t next_id;
        QmpCall *calls;
        sd_event_source *defer;          /* runs deferred callbacks */
        sd_event_source *handshake_timer;

        unsigned probes_pending;
        uint64_t busy_usec;              /* time with a command unanswered, summed (qmp_busy_usec) */
        uint64_t busy_since;             /* when the first of the calls now pending went out */
        json_t *commands;                /* object used as a set: command name → true */
        json_t *transaction_actions;     /* likewise for the action types of "transaction" */
};

static const QmpError error_reset = { -ECONNRESET, NULL, "Connection to QEMU lost" };
static const QmpError error_canceled = { -ECANCELED, NULL, "Canceled" };
static const QmpError error_timeout = { -ETIMEDOUT, NULL, "QEMU did not answer in time" };
static const QmpError error_malformed = { -EPROTO, NULL, "Malformed reply from QEMU" };

static const QmpError *transport_error(int error) {
        switch (error) {
        case -ECANCELED:
                return &error_canceled;
        case -ETIMEDOUT:
                return &error_timeout;
        default:
                return &error_reset;
        }
}

static void call_free(QmpCall *c) {
        if (!c)
                return;
        sd_event_source_disable_unref(c->timer);
        free(c);
}

static void call_unlink(Qmp *q, QmpCall *c) {
        if (c->prev)
                c->prev->next = c->next;
        else
                q->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        if (!q->calls)
                q->busy_usec += now_usec() - q->busy_since;
}

static QmpCall *call_find(Qmp *q, uint64_t id) {
        for (QmpCall *c = q->calls; c; c = c->next)
                if (c->id == id)
                        return c;
        return NULL;
}

/* Unlinks c, runs its callback and frees it. The caller holds a reference on q. */
static void call_complete(Qmp *q, QmpCall *c, json_t *reply, const QmpError *err) {
        call_unlink(q, c);
        c->timer = sd_event_source_disable_unref(c->timer);
        if (c->cb)
                c->cb(q, reply, err, c->userdata);
        call_free(c);
}

static void qmp_free(Qmp *q) {
        q->freeing = true;

        json_stream_close(q->stream);
        q->state = QMP_DISCONNECTED;

        /* As the header promises: whoever waits hears about it, even now. */
        while (q->calls) {
                QmpCall *c = q->calls;

                call_complete(q, c, NULL,
                              c->deferred_error != 0 ? transport_error(c->deferred_error) : &error_canceled);
        }

        json_stream_unref(q->stream);
        sd_event_source_disable_unref(q->defer);
        sd_event_source_disable_unref(q->handshake_timer);
        json_decref(q->commands);
        json_decref(q->transaction_actions);
        sd_event_unref(q->event);
        free(q->socket_path);
        free(q);
}

Qmp *qmp_ref(Qmp *q) {
        if (q && !q->freeing)
                q->n_ref++;
        return q;
}

Qmp *qmp_unref(Qmp *q) {
        if (!q || q->freeing)
                return NULL;
        if (--q->n_ref > 0)
                return NULL;

        qmp_free(q);
        return NULL;
}

static void qmp_reset_probes(Qmp *q) {
        json_decref(q->commands);
        q->commands = NULL;
        json_decref(q->transaction_actions);
        q->transaction_actions = NULL;
        q->probes_pending = 0;
}

/* The connection is gone (or could not be made): every pending call fails, then the owner is told.
 * Runs from the event loop only. */
static void qmp_connection_lost(Qmp *q, int error) {
        if (q->state == QMP_DISCONNECTED)
                return;

        qmp_ref(q);

        json_stream_close(q->stream);
        q->state = QMP_DISCONNECTED;
        q->handshake_timer = sd_event_source_disable_unref(q->handshake_timer);
        qmp_reset_probes(q);

        /* Pop one at a time: a callback may cancel the others. */
        while (q->calls) {
                QmpCall *c = q->calls;

                call_complete(q, c, NULL,
                              c->deferred_error != 0 ? transport_error(c->deferred_error) : &error_reset);
        }

        if (q->state_cb && q->state == QMP_DISCONNECTED)
                q->state_cb(q, false, error, q->userdata);

        qmp_unref(q);
}

static int qmp_on_defer(sd_event_source *source, void *userdata) {
        Qmp *q = qmp_ref(userdata);

        for (;;) {
                QmpCall *c;

                for (c = q->calls; c; c = c->next)
                        if (c->deferred_error != 0)
                                break;
                if (!c)
                        break;

                call_complete(q, c, NULL, transport_error(c->deferred_error));
        }

        qmp_unref(q);
        return 0;
}

static uint64_t qmp_default_timeout(Qmp *q) {
        return q->default_timeout_usec ?: QMP_DEFAULT_TIMEOUT_USEC;
}

void qmp_set_default_timeout(Qmp *q, uint64_t usec) {
        q->default_timeout_usec = usec;
}

void qmp_set_stall_handler(Qmp *q, qmp_stall_fn stall) {
        q->stall_cb = stall;
}

static int qmp_on_call_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        QmpCall *c = userdata;
        Qmp *q = qmp_ref(c->qmp);

        /* The connection stays: a late reply finds no call with its id and is dropped. */
        char command[sizeof(c->command)];

        memcpy(command, c->command, sizeof(command));

        call_complete(q, c, NULL, &error_timeout);
        if (q->stall_cb && q->state == QMP_READY)
                q->stall_cb(q, command, q->userdata);

        qmp_unref(q);
        return 0;
}

static int qmp_send(Qmp *q, const char *command, json_t *args, int fd, uint64_t timeout_usec,
                    qmp_reply_fn cb, void *userdata, uint64_t *ret_id) {
        _cleanup_(json_decrefp) json_t *a = args, *msg = NULL;
        _cleanup_free_ QmpCall *c = NULL;
        int r;

        if (a && !json_is_object(a))
                return -EINVAL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->qmp = q;
        c->id = q->next_id++;
        c->cb = cb;
        snprintf(c->command, sizeof(c->command), "%s", command);
        c->userdata = userdata;

        msg = json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t) c->id);
        if (!msg)
                return -ENOMEM;
        if (a && json_object_set(msg, "arguments", a) < 0)
                return -ENOMEM;

        /* UINT64_MAX: no timer (the handshake's own calls, bounded by the handshake timer). */
        if (timeout_usec != UINT64_MAX) {
                r = sd_event_add_time_relative(q->event, &c->timer, CLOCK_MONOTONIC,
                                               timeout_usec ?: qmp_default_timeout(q),
                                               USEC_PER_MSEC, qmp_on_call_timeout, c);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(c->timer, "qmp-call-timeout");
        }

        r = json_stream_send(q->stream, msg, fd);
        if (r < 0) {
                c->timer = sd_event_source_disable_unref(c->timer);
                return r;
        }

        c->next = q->calls;
        if (q->calls)
                q->calls->prev = c;
        else
                q->busy_since = now_usec();
        q->calls = c;

        if (ret_id)
                *ret_id = c->id;
        TAKE_PTR(c);
        return 0;
}

static void qmp_probe_done(Qmp *q) {
        if (q->state != QMP_PROBING || --q->probes_pending > 0)
                return;

        q->state = QMP_READY;
        q->handshake_timer = sd_event_source_disable_unref(q->handshake_timer);
        if (q->state_cb)
                q->state_cb(q, true, 0, q->userdata);
}

static int qmp_store_commands(Qmp *q, json_t *reply) {
        size_t i;
        json_t *e;

        if (!json_is_array(reply))
                return -EPROTO;

        q->commands = json_object();
        if (!q->commands)
                return -ENOMEM;

        json_array_foreach(reply, i, e) {
                const char *name = json_string_value(json_object_get(e, "name"));

                if (name && json_object_set_new(q->commands, name, json_true()) < 0)
                        return -ENOMEM;
        }

        return 0;
}

static void qmp_on_query_commands(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        int r;

        if (q->state != QMP_PROBING)
                return;

        r = reply ? qmp_store_commands(q, reply) : err->error;
        if (r < 0) {
                qmp_connection_lost(q, r);
                return;
        }

        qmp_probe_done(q);
}

static json_t *schema_lookup(json_t *index, json_t *name, const char *meta_type) {
        json_t *t;

        if (!json_is_string(name))
                return NULL;
        t = json_object_get(index, json_string_value(name));
        if (!t || !streq_ptr(json_string_value(json_object_get(t, "meta-type")), meta_type))
                return NULL;
        return t;
}

static json_t *schema_member_type(json_t *object_type, const char *member) {
        size_t i;
        json_t *m;

        json_array_foreach(json_object_get(object_type, "members"), i, m)
                if (streq_ptr(json_string_value(json_object_get(m, "name")), member))
                        return json_object_get(m, "type");
        return NULL;
}

/* Finds the action types "transaction" accepts. Types may carry numbers for names (QEMU hides its
 * internal type names from the schema), so follow the references: the command's arg-type, its
 * "actions" member (an array), the array's element type (a union), then the union's variants, or
 * failing that the enum of its tag member. */
static int schema_transaction_actions(json_t *schema, json_t **ret) {
        _cleanup_(json_decrefp) json_t *index = NULL, *actions = NULL;
        json_t *e, *cmd, *args, *array, *element, *tag_enum;
        size_t i;

        index = json_object();
        actions = json_object();
        if (!index || !actions)
                return -ENOMEM;

        json_array_foreach(schema, i, e) {
                const char *name = json_string_value(json_object_get(e, "name"));

                if (name && json_object_set(index, name, e) < 0)
                        return -ENOMEM;
        }

        cmd = json_object_get(index, "transaction");
        if (!cmd || !streq_ptr(json_string_value(json_object_get(cmd, "meta-type")), "command"))
                goto done;

        args = schema_lookup(index, json_object_get(cmd, "arg-type"), "object");
        array = schema_lookup(index, schema_member_type(args, "actions"), "array");
        element = schema_lookup(index, json_object_get(array, "element-type"), "object");
        if (!element)
                goto done;

        json_array_foreach(json_object_get(element, "variants"), i, e) {
                const char *c = json_string_value(json_object_get(e, "case"));

                if (c && json_object_set_new(actions, c, json_true()) < 0)
                        return -ENOMEM;
        }

        if (json_object_size(actions) == 0) {
                const char *tag = json_string_value(json_object_get(element, "tag"));

                tag_enum = tag ? schema_lookup(index, schema_member_type(element, tag), "enum") : NULL;
                json_array_foreach(json_object_get(tag_enum, "values"), i, e)
                        if (json_is_string(e) &&
                            json_object_set_new(actions, json_string_value(e), json_true()) < 0)
                                return -ENOMEM;
        }

done:
        *ret = TAKE_PTR(actions);
        return 0;
}

static void qmp_on_query_schema(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        int r;

        if (q->state != QMP_PROBING)
                return;

        /* A QEMU without a schema still works; it just does not get transactions. */
        if (json_is_array(reply))
                r = schema_transaction_actions(reply, &q->transaction_actions);
        else
                r = err && err->error != -EIO ? err->error : 0;
        if (r < 0) {
                qmp_connection_lost(q, r);
                return;
        }

        qmp_probe_done(q);
}

static void qmp_on_capabilities(Qmp *q, json_t *reply, const QmpError *err, void *userdata) {
        int r;

        if (q->state != QMP_NEGOTIATING)
                return;
        if (!reply) {
                qmp_connection_lost(q, err->error == -EIO ? -EPROTO : err->error);
                return;
        }

        q->state = QMP_PROBING;
        q->probes_pending = 2;

        /* The handshake timer bounds these; no timers of their own. */
        r = qmp_send(q, "query-commands", NULL, -1, UINT64_MAX, qmp_on_query_commands, NULL, NULL);
        if (r >= 0)
                r = qmp_send(q, "query-qmp-schema", NULL, -1, UINT64_MAX, qmp_on_query_schema, NULL, NULL);
        if (r < 0)
                qmp_connection_lost(q, r);
}

static void qmp_on_greeting(Qmp *q, json_t *message) {
        int r;

        if (!json_is_object(json_object_get(message, "QMP"))) {
                qmp_connection_lost(q, -EPROTO);
                return;
        }

        q->state = QMP_NEGOTIATING;
        r = qmp_send(q, "qmp_capabilities", NULL, -1, UINT64_MAX, qmp_on_capabilities, NULL, NULL);
        if (r < 0)
                qmp_connection_lost(q, r);
}

static void qmp_on_reply(Qmp *q, json_t *message) {
        json_t *id, *ret, *error;
        QmpCall *c;

        id = json_object_get(message, "id");
        if (!json_is_integer(id))
                return;  /* not ours: we always send a numeric id */

        c = call_find(q, (uint64_t) json_integer_value(id));
        if (!c || c->deferred_error != 0)
                return;  /* timed out or canceled before: drop */

        ret = json_object_get(message, "return");
        error = json_object_get(message, "error");
        if (ret)
                call_complete(q, c, ret, NULL);
        else if (json_is_object(error)) {
                const char *desc = json_string_value(json_object_get(error, "desc"));

                call_complete(q, c, NULL, &(QmpError) {
                        .error = -EIO,
                        .klass = json_string_value(json_object_get(error, "class")),
                        .desc = desc ?: "QEMU reported an error without a description",
                });
        } else
                call_complete(q, c, NULL, &error_malformed);
}

static void qmp_on_stream_connected(JsonStream *s, void *userdata) {
        Qmp *q = userdata;

        q->state = QMP_GREETING;
}

static void qmp_on_stream_message(JsonStream *s, json_t *message, int error, void *userdata) {
        Qmp *q = qmp_ref(userdata);
        json_t *event;

        if (!json_is_object(message))
                qmp_connection_lost(q, error < 0 ? error : -EPROTO);
        else if (q->state == QMP_GREETING)
                qmp_on_greeting(q, message);
        else if ((event = json_object_get(message, "event"))) {
                if (q->event_cb && json_is_string(event))
                        q->event_cb(q, json_string_value(event), json_object_get(message, "data"), q->userdata);
        } else
                qmp_on_reply(q, message);

        qmp_unref(q);
}

static void qmp_on_stream_disconnected(JsonStream *s, int error, void *userdata) {
        qmp_connection_lost(userdata, error);
}

static int qmp_on_handshake_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        Qmp *q = userdata;

        q->handshake_timer = sd_event_source_disable_unref(q->handshake_timer);
        qmp_connection_lost(q, -ETIMEDOUT);
        return 0;
}

int qmp_new(Qmp **ret, sd_event *event, const char *socket_path) {
        static const JsonStreamHandlers handlers = {
                .connected = qmp_on_stream_connected,
                .message = qmp_on_stream_message,
                .disconnected = qmp_on_stream_disconnected,
        };
        _cleanup_(qmp_unrefp) Qmp *q = NULL;
        int r;

        if (!ret || !event || isempty(socket_path))
                return -EINVAL;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->n_ref = 1;
        q->next_id = 1;
        q->event = sd_event_ref(event);

        q->socket_path = strdup(socket_path);
        if (!q->socket_path)
                return -ENOMEM;

        r = json_stream_new(&q->stream, event, &handlers, q);
        if (r < 0)
                return r;

        r = sd_event_add_defer(event, &q->defer, qmp_on_defer, q);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(q->defer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(q->defer, "qmp-defer");

        *ret = TAKE_PTR(q);
        return 0;
}

void qmp_set_handlers(Qmp *q, qmp_state_fn state, qmp_event_fn event, void *userdata) {
        if (!q)
                return;
        q->state_cb = state;
        q->event_cb = event;
        q->userdata = userdata;
}

int qmp_connect(Qmp *q) {
        int r;

        if (!q)
                return -EINVAL;
        if (q->state == QMP_READY)
                return -EISCONN;
        if (q->state != QMP_DISCONNECTED)
                return -EALREADY;

        qmp_reset_probes(q);

        r = sd_event_add_time_relative(q->event, &q->handshake_timer, CLOCK_MONOTONIC,
                                       qmp_default_timeout(q), USEC_PER_MSEC,
                                       qmp_on_handshake_timeout, q);
        if (r < 0)
                return r;

        r = json_stream_connect(q->stream, q->socket_path);
        if (r < 0) {
                q->handshake_timer = sd_event_source_disable_unref(q->handshake_timer);
                return r;
        }

        q->state = QMP_CONNECTING;
        return 0;
}

void qmp_disconnect(Qmp *q) {
        if (!q || q->state == QMP_DISCONNECTED)
                return;

        json_stream_close(q->stream);
        q->state = QMP_DISCONNECTED;
        q->handshake_timer = sd_event_source_disable_unref(q->handshake_timer);
        qmp_reset_probes(q);

        /* Callbacks run from the loop: the caller may well be inside one of them right now. */
        for (QmpCall *c = q->calls; c; c = c->next) {
                c->timer = sd_event_source_disable_unref(c->timer);
                if (c->deferred_error == 0)
                        c->deferred_error = -ECANCELED;
        }
        if (q->calls)
                (void) sd_event_source_set_enabled(q->defer, SD_EVENT_ONESHOT);
}

bool qmp_is_connected(Qmp *q) {
        return q && q->state == QMP_READY;
}

int qmp_call(Qmp *q, const char *command, json_t *args, int fd, uint64_t timeout_usec,
             qmp_reply_fn cb, void *userdata, uint64_t *ret_id) {
        if (!q || isempty(command)) {
                json_decref(args);
                return -EINVAL;
        }
        if (q->state != QMP_READY) {
                json_decref(args);
                return -ENOTCONN;
        }
        return qmp_send(q, command, args, fd, timeout_usec, cb, userdata, ret_id);
}

void qmp_flush(Qmp *q) {
        if (q)
                json_stream_flush(q->stream);
}

void qmp_cancel(Qmp *q, uint64_t id) {
        QmpCall *c;

        if (!q)
                return;
        c = call_find(q, id);
        if (!c)
                return;

        call_unlink(q, c);
        call_free(c);
}

bool qmp_has_command(Qmp *q, const char *command) {
        return q && command && q->state == QMP_READY && json_object_get(q->commands, command);
}

bool qmp_has_transaction_action(Qmp *q, const char *action) {
        return qmp_has_command(q, "transaction") && json_object_get(q->transaction_actions, action);
}

uint64_t qmp_busy_usec(Qmp *q) {
        if (!q)
                return 0;
        return q->busy_usec + (q->calls ? now_usec() - q->busy_since : 0);
}
