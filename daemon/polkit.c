/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Asynchronous polkit checks without GLib (see polkit.h for how a handler uses them).
 *
 * One PolkitQuery per method call under check, kept in the Manager's registry and found
 * again by the call's message. A query goes UID (bus driver: GetConnectionUnixUser) →
 * POLKIT (polkitd: CheckAuthorization) → DONE; on DONE the verdict is stored in the
 * query, the message is rewound and put back into the bus's read queue, and the
 * re-dispatched handler picks the verdict up and frees the query. A defer source at idle
 * priority frees a verdict that nobody picked up (e.g. the object went away meanwhile and
 * sd-bus answered UnknownObject without calling the handler): the bus dispatches queued
 * messages at normal priority, so it only runs once the re-queued message has been seen. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "polkit.h"

/* polkit's CheckAuthorizationFlags */
#define POLKIT_CHECK_ALLOW_USER_INTERACTION 1u

/* An interactive check waits for a human in an authentication dialog; a plain one takes
 * sd-bus's default timeout (25 s). */
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (5 * 60 * USEC_PER_SEC)

typedef enum QueryState {
        QUERY_UID,              /* asking the bus driver who the caller is */
        QUERY_POLKIT,           /* asking polkitd */
        QUERY_DONE,             /* verdict stored, the call is queued to be dispatched again */
} QueryState;

typedef struct PolkitQuery PolkitQuery;

struct PolkitQuery {
        PolkitRegistry *registry;
        PolkitQuery *prev, *next;

        sd_bus_message *request;        /* the method call under check (ref) */
        char *sender;
        char *action;
        char *domain;
        char *snapshot;

        QueryState state;
        sd_bus_slot *slot;              /* the call in flight (UID, POLKIT) */
        sd_event_source *expire;        /* DONE: drops the verdict nobody picked up */
        sd_bus_error verdict;           /* DONE: unset means allowed */
};

/* The uids of recent callers. A connection's uid is fixed when it authenticates, and the
 * bus never hands a unique name out twice, so an entry cannot go stale: it is only dropped
 * to make room or when its name leaves the bus. Without it every read call cost a round
 * trip to the bus driver (GetConnectionUnixUser) and a second dispatch of the message:
 * half the daemon's CPU time per call under many clients. */
#define UID_CACHE_SIZE 32

typedef struct UidCacheEntry {
        char *sender;           /* unique name, NULL: free slot */
        uint32_t uid;
} UidCacheEntry;

struct PolkitRegistry {
        sd_bus *bus;
        sd_bus_slot *name_owner_changed;
        PolkitQuery *queries;
        size_t n_queries;
        UidCacheEntry uids[UID_CACHE_SIZE];
        size_t uid_next;        /* the slot replaced next (round robin) */
};

static const UidCacheEntry *uid_cache_find(const PolkitRegistry *reg, const char *sender) {
        for (size_t i = 0; i < UID_CACHE_SIZE; i++)
                if (reg->uids[i].sender && streq(reg->uids[i].sender, sender))
                        return &reg->uids[i];
        return NULL;
}

static void uid_cache_add(PolkitRegistry *reg, const char *sender, uint32_t uid) {
        UidCacheEntry *e;
        char *copy;

        /* Only remembered while the NameOwnerChanged match that forgets names is installed. */
        if (!reg->name_owner_changed || uid_cache_find(reg, sender))
                return;
        copy = strdup(sender);
        if (!copy)
                return;         /* a cache: asking again next time is fine */
        e = &reg->uids[reg->uid_next];
        reg->uid_next = (reg->uid_next + 1) % UID_CACHE_SIZE;
        free(e->sender);
        e->sender = copy;
        e->uid = uid;
}

static void uid_cache_forget(PolkitRegistry *reg, const char *sender) {
        for (size_t i = 0; i < UID_CACHE_SIZE; i++)
                if (reg->uids[i].sender && streq(reg->uids[i].sender, sender)) {
                        free(reg->uids[i].sender);
                        reg->uids[i].sender = NULL;
                }
}

static PolkitQuery *query_free(PolkitQuery *q) {
        if (!q)
                return NULL;

        if (q->registry) {
                if (q->prev)
                        q->prev->next = q->next;
                else
                        q->registry->queries = q->next;
                if (q->next)
                        q->next->prev = q->prev;
                q->registry->n_queries--;
        }
        /* Unref'ing the slot of a call in flight drops its reply callback: cancelled. */
        sd_bus_slot_unref(q->slot);
        sd_event_source_disable_unref(q->expire);
        sd_bus_message_unref(q->request);
        sd_bus_error_free(&q->verdict);
        free(q->sender);
        free(q->action);
        free(q->domain);
        free(q->snapshot);
        free(q);
        return NULL;
}

static inline void query_freep(PolkitQuery **q) {
        query_free(*q);
}

PolkitRegistry *polkit_registry_free(PolkitRegistry *reg) {
        if (!reg)
                return NULL;

        /* The calls under check get no answer: the daemon is going away. */
        while (reg->queries)
                query_free(reg->queries);
        sd_bus_slot_unref(reg->name_owner_changed);
        sd_bus_unref(reg->bus);
        for (size_t i = 0; i < UID_CACHE_SIZE; i++)
                free(reg->uids[i].sender);
        free(reg);
        return NULL;
}

size_t polkit_registry_n_pending(const PolkitRegistry *reg) {
        size_t n = 0;

        if (!reg)
                return 0;
        for (const PolkitQuery *q = reg->queries; q; q = q->next)
                if (q->state != QUERY_DONE)
                        n++;
        return n;
}

static int on_expire(sd_event_source *s, void *userdata) {
        query_free(userdata);
        return 0;
}

/* Stores the verdict (name NULL: allowed) and has sd-bus dispatch the call again. */
_printf_(3, 4)
static void query_decide(PolkitQuery *q, const char *name, const char *fmt, ...) {
        sd_bus *bus = sd_bus_message_get_bus(q->request);
        sd_event *event = sd_bus_get_event(bus);
        int r;

        q->state = QUERY_DONE;
        q->slot = sd_bus_slot_unref(q->slot);

        if (name) {
                _cleanup_free_ char *text = NULL;
                va_list ap;

                va_start(ap, fmt);
                r = vasprintf(&text, fmt, ap);
                va_end(ap);
                if (r < 0)
                        text = NULL;
                /* Without memory for the message the name alone still denies. */
                (void) sd_bus_error_set(&q->verdict, name, text);
        }

        r = sd_bus_message_rewind(q->request, true);
        if (r >= 0)
                r = event ? 0 : -ENXIO;
        if (r >= 0)
                r = sd_event_add_defer(event, &q->expire, on_expire, q);
        if (r >= 0)
                r = sd_event_source_set_priority(q->expire, SD_EVENT_PRIORITY_IDLE);
        if (r >= 0)
                r = sd_bus_enqueue_for_read(bus, q->request);
        if (r < 0) {
                /* Cannot run the handler again: answer the call here, never with a yes. */
                if (sd_bus_error_is_set(&q->verdict))
                        (void) sd_bus_reply_method_error(q->request, &q->verdict);
                else
                        (void) sd_bus_reply_method_errnof(q->request, r, "Cannot resume the call after authorization: %m");
                query_free(q);
        }
}

static int on_check_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitQuery *q = userdata;
        const sd_bus_error *e;
        int authorized, challenge;
        int r;

        e = sd_bus_message_get_error(reply);
        if (e) {
                /* polkitd not running, killed during the check, or failing: fail closed. */
                query_decide(q, SD_BUS_ERROR_ACCESS_DENIED,
                             "Not authorized to perform '%s': polkit could not be asked (%s: %s)",
                             q->action, e->name, e->message ?: "no message");
                return 0;
        }

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r > 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r <= 0) {
                query_decide(q, SD_BUS_ERROR_ACCESS_DENIED,
                             "Not authorized to perform '%s': polkit could not be asked (unreadable answer: %s)",
                             q->action, r < 0 ? strerror(-r) : "empty");
                return 0;
        }

        if (authorized)
                query_decide(q, NULL, NULL);
        else if (challenge)
                query_decide(q, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                             "Interactive authentication required to perform '%s'", q->action);
        else
                query_decide(q, SD_BUS_ERROR_ACCESS_DENIED, "Not authorized to perform '%s'", q->action);
        return 0;
}

static int query_ask_polkit(PolkitQuery *q) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        sd_bus *bus = sd_bus_message_get_bus(q->request);
        bool interactive;
        int r;

        interactive = sd_bus_message_get_allow_interactive_authorization(q->request) > 0;

        r = sd_bus_message_new_method_call(bus, &call, "org.freedesktop.PolicyKit1",
                                           "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        if (r < 0)
                return r;
        /* Subject: the caller's unique bus name, which polkitd resolves to its process and
         * user itself (a pid could be reused; the name cannot). */
        r = sd_bus_message_append(call, "(sa{sv})s", "system-bus-name", 1, "name", "s", q->sender, q->action);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(call, 'a', "{ss}");
        if (r < 0)
                return r;
        if (q->domain) {
                r = sd_bus_message_append(call, "{ss}", "domain", q->domain);
                if (r < 0)
                        return r;
        }
        if (q->snapshot) {
                r = sd_bus_message_append(call, "{ss}", "snapshot", q->snapshot);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(call);
        if (r < 0)
                return r;
        r = sd_bus_message_append(call, "us", interactive ? POLKIT_CHECK_ALLOW_USER_INTERACTION : 0u, "");
        if (r < 0)
                return r;

        r = sd_bus_call_async(bus, &q->slot, call, on_check_reply, q,
                              interactive ? POLKIT_INTERACTIVE_TIMEOUT_USEC : 0);
        if (r < 0)
                return r;
        q->state = QUERY_POLKIT;
        return 0;
}

static int on_uid_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitQuery *q = userdata;
        const sd_bus_error *e;
        uint32_t uid;
        int r;

        q->slot = sd_bus_slot_unref(q->slot);

        e = sd_bus_message_get_error(reply);
        if (e) {
                query_decide(q, SD_BUS_ERROR_ACCESS_DENIED, "Cannot identify the caller to authorize '%s': %s",
                             q->action, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_read(reply, "u", &uid);
        if (r <= 0) {
                query_decide(q, SD_BUS_ERROR_ACCESS_DENIED, "Cannot identify the caller to authorize '%s'",
                             q->action);
                return 0;
        }

        if (q->registry)
                uid_cache_add(q->registry, q->sender, uid);

        /* As systemd's services do: root may do anything, also with polkitd down. */
        if (uid == 0) {
                query_decide(q, NULL, NULL);
                return 0;
        }

        r = query_ask_polkit(q);
        if (r < 0)
                query_decide(q, SD_BUS_ERROR_ACCESS_DENIED,
                             "Not authorized to perform '%s': polkit could not be asked (%s)",
                             q->action, strerror(-r));
        return 0;
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        PolkitRegistry *reg = userdata;
        const char *name, *old_owner, *new_owner;
        PolkitQuery *next;
        int r;

        r = sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner);
        if (r < 0 || name[0] != ':' || !isempty(new_owner))
                return 0;

        uid_cache_forget(reg, name);

        /* A caller went away: its checks in flight are of no use to anyone. Decided ones are
         * already queued for dispatch and are freed there (or by their expire source). */
        for (PolkitQuery *q = reg->queries; q; q = next) {
                next = q->next;
                if (q->state != QUERY_DONE && streq(q->sender, name))
                        query_free(q);
        }
        return 0;
}

static int registry_get(PolkitRegistry **registry, sd_bus *bus, PolkitRegistry **ret) {
        PolkitRegistry *reg = *registry;
        int r;

        if (!reg) {
                reg = calloc(1, sizeof(PolkitRegistry));
                if (!reg)
                        return -ENOMEM;
                reg->bus = sd_bus_ref(bus);
                *registry = reg;
        }

        if (!reg->name_owner_changed) {
                /* Installed without waiting for the driver's answer. If it fails, checks of
                 * callers that left still end, just later: polkitd cannot resolve a name
                 * that is gone and answers with an error. */
                r = sd_bus_match_signal_async(bus, &reg->name_owner_changed, "org.freedesktop.DBus",
                                              "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                              "NameOwnerChanged", on_name_owner_changed, NULL, reg);
                if (r < 0)
                        reg->name_owner_changed = NULL;
        }

        *ret = reg;
        return 0;
}

static bool query_is_for(const PolkitQuery *q, const char *action, const char *domain, const char *snapshot) {
        return streq(q->action, action) && streq_ptr(q->domain, domain) && streq_ptr(q->snapshot, snapshot);
}

int bus_authorize(sd_bus_message *m, const char *action, const char *domain, const char *snapshot,
                  PolkitRegistry **registry, sd_bus_error *error) {
        _cleanup_(query_freep) PolkitQuery *q = NULL;
        const UidCacheEntry *uid;
        PolkitRegistry *reg;
        const char *sender;
        size_t n_sender = 0;
        int r;

        /* Called again for a call whose check has ended? */
        for (PolkitQuery *i = *registry ? (*registry)->queries : NULL; i; i = i->next) {
                if (i->request != m)
                        continue;
                if (i->state != QUERY_DONE)
                        return 0;       /* still being decided */
                q = i;
                break;
        }
        if (q) {
                if (query_is_for(q, action, domain, snapshot)) {
                        if (!sd_bus_error_is_set(&q->verdict))
                                return 1;
                        return sd_bus_error_copy(error, &q->verdict);
                }
                /* The handler asks for something else this time: decide that afresh. */
                q = query_free(q);
        }

        sender = sd_bus_message_get_sender(m);
        if (!sender)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Cannot authorize '%s' for a caller without a bus name", action);

        r = registry_get(registry, sd_bus_message_get_bus(m), &reg);
        if (r < 0)
                return r;

        for (PolkitQuery *i = reg->queries; i; i = i->next)
                if (streq(i->sender, sender))
                        n_sender++;
        if (n_sender >= POLKIT_PENDING_PER_CALLER_MAX || reg->n_queries >= POLKIT_PENDING_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "Too many authorization checks in progress%s; try again later",
                                         n_sender >= POLKIT_PENDING_PER_CALLER_MAX ? " for this caller" : "");

        uid = uid_cache_find(reg, sender);
        /* As systemd's services do: root may do anything, also with polkitd down. */
        if (uid && uid->uid == 0)
                return 1;

        q = calloc(1, sizeof(PolkitQuery));
        if (!q)
                return -ENOMEM;
        q->request = sd_bus_message_ref(m);
        q->sender = strdup(sender);
        q->action = strdup(action);
        q->domain = domain ? strdup(domain) : NULL;
        q->snapshot = snapshot ? strdup(snapshot) : NULL;
        if (!q->sender || !q->action || (domain && !q->domain) || (snapshot && !q->snapshot))
                return -ENOMEM;

        if (uid) {
                /* A known caller who is not root: straight to polkitd. */
                r = query_ask_polkit(q);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Not authorized to perform '%s': polkit could not be asked (%s)",
                                                 action, strerror(-r));
        } else {
                /* The bus driver knows the uid the caller connected with. Asked asynchronously,
                 * as everything here: the daemon never waits for another process. */
                r = sd_bus_call_method_async(reg->bus, &q->slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                             "org.freedesktop.DBus", "GetConnectionUnixUser", on_uid_reply, q,
                                             "s", sender);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Cannot identify the caller to authorize '%s': %s", action,
                                                 strerror(-r));
                q->state = QUERY_UID;
        }

        q->registry = reg;
        q->next = reg->queries;
        if (reg->queries)
                reg->queries->prev = q;
        reg->queries = q;
        reg->n_queries++;
        TAKE_PTR(q);
        return 0;
}
