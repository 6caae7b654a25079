/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* macro.h first: jansson >= 2.9 defines its own json_decrefp(), which macro.h must not redefine. */
#include "macro.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "agent.h"
#include "json-stream.h"

#define AGENT_DEFAULT_TIMEOUT_USEC (10 * USEC_PER_SEC)

/* The agent's chardev takes one client at a time, and others (tools, tests) need it too: the
 * connection is made when a call is queued and dropped as soon as no call is left. */
typedef enum AgentState {
        AGENT_IDLE,          /* no connection */
        AGENT_SYNCING,       /* 0xFF + guest-sync-delimited sent, waiting for the matching id */
        AGENT_READY,         /* in sync: commands go out one at a time */
} AgentState;

typedef struct AgentCall AgentCall;
struct AgentCall {
        AgentCall *next;
        uint64_t id;
        char *command;
        json_t *args;
        uint64_t timeout_usec;
        agent_reply_fn cb;
        void *userdata;
};

struct Agent {
        unsigned n_ref;
        bool freeing;
        sd_event *event;
        char *socket_path;
        JsonStream *stream;
        AgentState state;

        AgentCall *queue_head, *queue_tail;
        AgentCall *current;              /* the call whose turn it is */
        bool current_sent;
        sd_event_source *timer;          /* current's timeout, handshake included */
        sd_event_source *defer;          /* starts the next call from the loop */

        uint64_t next_id;
        json_int_t sync_id;
        bool delimiter_seen;
        bool answered;
};

static const QmpError error_canceled = { -ECANCELED, NULL, "Canceled" };
static const QmpError error_timeout = { -ETIMEDOUT, NULL, "The guest agent did not answer in time" };

static void agent_kick(Agent *a);

static Agent *agent_ref(Agent *a) {
        if (a && !a->freeing)
                a->n_ref++;
        return a;
}

static void agent_call_free(AgentCall *c) {
        if (!c)
                return;
        free(c->command);
        json_decref(c->args);
        free(c);
}

static void agent_drop_connection(Agent *a) {
        json_stream_close(a->stream);
        a->state = AGENT_IDLE;
        a->delimiter_seen = false;
}

/* Ends the current call, runs its callback and moves on to the next. Runs from the loop only. */
static void agent_complete(Agent *a, json_t *reply, const QmpError *err, bool drop_connection) {
        AgentCall *c = TAKE_PTR(a->current);

        a->current_sent = false;
        a->timer = sd_event_source_disable_unref(a->timer);
        if (drop_connection)
                agent_drop_connection(a);

        if (!c)
                return;

        agent_ref(a);
        if (c->cb)
                c->cb(a, reply, err, c->userdata);
        agent_call_free(c);
        /* Only ours left: the owner dropped the agent in the callback, nothing more to start. */
        if (!a->freeing && a->n_ref > 1)
                agent_kick(a);
        agent_unref(a);
}

static int agent_send_current(Agent *a) {
        _cleanup_(json_decrefp) json_t *msg = NULL;
        int r;

        msg = json_pack("{s:s}", "execute", a->current->command);
        if (!msg)
                return -ENOMEM;
        if (a->current->args && json_object_set(msg, "arguments", a->current->args) < 0)
                return -ENOMEM;

        r = json_stream_send(a->stream, msg, -1);
        if (r < 0)
                return r;

        a->current_sent = true;
        return 0;
}

static int agent_start_sync(Agent *a) {
        _cleanup_(json_decrefp) json_t *msg = NULL;
        uint32_t rnd;
        int r;

        agent_drop_connection(a);

        /* A random id, so that an answer to some earlier client's sync is never taken for ours. */
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
                rnd = (uint32_t) a->next_id * 2654435761U;
        a->sync_id = (json_int_t) (rnd & 0x7fffffffU);

        msg = json_pack("{s:s, s:{s:I}}", "execute", "guest-sync-delimited", "arguments", "id", a->sync_id);
        if (!msg)
                return -ENOMEM;

        r = json_stream_connect(a->stream, a->socket_path);
        if (r < 0)
                return r;

        a->state = AGENT_SYNCING;

        /* 0xFF first: it resets the agent's parser, whatever a previous client left in it. */
        r = json_stream_send_raw(a->stream, "\xff", 1, -1);
        if (r >= 0)
                r = json_stream_send(a->stream, msg, -1);
        if (r < 0) {
                agent_drop_connection(a);
                return r;
        }

        return 0;
}

static int agent_on_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        Agent *a = userdata;

        /* Whatever the agent says later would be out of step: resync on a fresh connection. */
        a->answered = false;
        agent_complete(a, NULL, &error_timeout, true);
        return 0;
}

/* Starts the next queued call, or drops the connection when there is none. */
static void agent_kick(Agent *a) {
        AgentCall *c;
        int r;

        while (!a->current) {
                c = a->queue_head;
                if (!c) {
                        agent_drop_connection(a);
                        return;
                }
                a->queue_head = c->next;
                if (!a->queue_head)
                        a->queue_tail = NULL;
                c->next = NULL;
                a->current = c;

                r = sd_event_add_time_relative(a->event, &a->timer, CLOCK_MONOTONIC,
                                               c->timeout_usec, USEC_PER_MSEC, agent_on_timeout, a);
                if (r >= 0) {
                        (void) sd_event_source_set_description(a->timer, "agent-call-timeout");
                        if (a->state == AGENT_READY && json_stream_is_open(a->stream))
                                r = agent_send_current(a);
                        else
                                r = agent_start_sync(a);
                }
                if (r < 0) {
                        a->answered = false;
                        agent_complete(a, NULL, &(QmpError) { r, NULL, "Could not talk to the guest agent" }, true);
                        return;  /* agent_complete() kicked again */
                }
        }
}

static int agent_on_defer(sd_event_source *source, void *userdata) {
        Agent *a = userdata;

        agent_ref(a);
        agent_kick(a);
        agent_unref(a);
        return 0;
}

static void agent_on_delimiter(JsonStream *s, void *userdata) {
        Agent *a = userdata;

        if (a->state == AGENT_SYNCING)
                a->delimiter_seen = true;
}

static void agent_on_message(JsonStream *s, json_t *message, int error, void *userdata) {
        Agent *a = userdata;
        json_t *ret, *err;
        int r;

        if (!json_is_object(message) || !a->current)
                return;  /* noise, or a reply nobody waits for any more */

        ret = json_object_get(message, "return");
        err = json_object_get(message, "error");

        if (a->state == AGENT_SYNCING) {
                /* Everything before the delimiter is left over from before: the answer to a
                 * command whose caller gave up, or the agent's complaint about the 0xFF. */
                if (!a->delimiter_seen || !json_is_integer(ret) || json_integer_value(ret) != a->sync_id)
                        return;

                a->state = AGENT_READY;
                r = agent_send_current(a);
                if (r < 0) {
                        a->answered = false;
                        agent_complete(a, NULL, &(QmpError) { r, NULL, "Could not talk to the guest agent" }, true);
                }
                return;
        }

        if (a->state != AGENT_READY || !a->current_sent)
                return;

        a->answered = true;
        if (ret)
                agent_complete(a, ret, NULL, false);
        else if (json_is_object(err)) {
                const char *desc = json_string_value(json_object_get(err, "desc"));

                agent_complete(a, NULL, &(QmpError) {
                        .error = -EIO,
                        .klass = json_string_value(json_object_get(err, "class")),
                        .desc = desc ?: "The guest agent reported an error without a description",
                }, false);
        } else
                agent_complete(a, NULL, &(QmpError) { -EPROTO, NULL, "Malformed reply from the guest agent" }, true);
}

static void agent_on_disconnected(JsonStream *s, int error, void *userdata) {
        Agent *a = userdata;
        const char *desc;

        a->state = AGENT_IDLE;
        a->delimiter_seen = false;
        if (!a->current)
                return;

        a->answered = false;
        if (IN_SET2(error, -ENOENT, -ENOTDIR))
                error = -ENOTCONN;
        desc = IN_SET2(error, -ENOTCONN, -ECONNREFUSED) ? "The guest agent socket is not available" :
                                                          "Connection to the guest agent lost";

        agent_complete(a, NULL, &(QmpError) { error, NULL, desc }, true);
}

int agent_new(Agent **ret, sd_event *event, const char *socket_path) {
        static const JsonStreamHandlers handlers = {
                .message = agent_on_message,
                .delimiter = agent_on_delimiter,
                .disconnected = agent_on_disconnected,
        };
        _cleanup_(agent_unrefp) Agent *a = NULL;
        int r;

        if (!ret || !event || isempty(socket_path))
                return -EINVAL;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->n_ref = 1;
        a->next_id = 1;
        a->event = sd_event_ref(event);

        a->socket_path = strdup(socket_path);
        if (!a->socket_path)
                return -ENOMEM;

        r = json_stream_new(&a->stream, event, &handlers, a);
        if (r < 0)
                return r;

        r = sd_event_add_defer(event, &a->defer, agent_on_defer, a);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(a->defer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->defer, "agent-defer");

        *ret = TAKE_PTR(a);
        return 0;
}

Agent *agent_unref(Agent *a) {
        if (!a || a->freeing || --a->n_ref > 0)
                return NULL;

        a->freeing = true;
        agent_drop_connection(a);

        /* As the header promises: whoever waits hears about it, even now. */
        agent_complete(a, NULL, &error_canceled, false);
        while (a->queue_head) {
                AgentCall *c = a->queue_head;

                a->queue_head = c->next;
                if (c->cb)
                        c->cb(a, NULL, &error_canceled, c->userdata);
                agent_call_free(c);
        }

        sd_event_source_disable_unref(a->timer);
        sd_event_source_disable_unref(a->defer);
        json_stream_unref(a->stream);
        sd_event_unref(a->event);
        free(a->socket_path);
        free(a);
        return NULL;
}

int agent_call(Agent *a, const char *command, json_t *args, uint64_t timeout_usec,
               agent_reply_fn cb, void *userdata, uint64_t *ret_id) {
        _cleanup_(json_decrefp) json_t *owned = args;
        AgentCall *c;
        int r;

        if (!a || a->freeing || isempty(command) || (args && !json_is_object(args)))
                return -EINVAL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->command = strdup(command);
        if (!c->command) {
                free(c);
                return -ENOMEM;
        }
        c->id = a->next_id++;
        c->args = TAKE_PTR(owned);
        c->timeout_usec = timeout_usec ?: AGENT_DEFAULT_TIMEOUT_USEC;
        c->cb = cb;
        c->userdata = userdata;

        /* Started from the loop, so that no callback ever runs inside agent_call(). */
        r = sd_event_source_set_enabled(a->defer, SD_EVENT_ONESHOT);
        if (r < 0) {
                agent_call_free(c);
                return r;
        }

        if (a->queue_tail)
                a->queue_tail->next = c;
        else
                a->queue_head = c;
        a->queue_tail = c;

        if (ret_id)
                *ret_id = c->id;
        return 0;
}

void agent_cancel(Agent *a, uint64_t id) {
        AgentCall *prev = NULL;

        if (!a)
                return;

        /* The current call keeps its place, so that its reply is still consumed in step. */
        if (a->current && a->current->id == id) {
                a->current->cb = NULL;
                return;
        }

        for (AgentCall *c = a->queue_head; c; prev = c, c = c->next) {
                if (c->id != id)
                        continue;
                if (prev)
                        prev->next = c->next;
                else
                        a->queue_head = c->next;
                if (a->queue_tail == c)
                        a->queue_tail = prev;
                agent_call_free(c);
                return;
        }
}

bool agent_answered(Agent *a) {
        return a && a->answered;
}
