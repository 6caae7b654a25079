/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A job's journal: before a job changes anything it says so here, so that a snapshotd that
 * died mid-job can finish the rollback when it comes back (recovery.c). One small JSON
 * document per domain, <state-dir>/journal/<domain>.json, rewritten atomically (fsync'ed)
 * at every step. Never logs. */
#pragma once

#include <jansson.h>
#include <systemd/sd-event.h>

typedef struct Journal Journal;

/* A new, empty journal for a domain's job; nothing is written until the first set. */
int journal_new(Journal **ret, const char *state_dir, const char *domain, const char *job);
Journal *journal_free(Journal *jn);
static inline void journal_freep(Journal **jn) {
        if (*jn)
                journal_free(*jn);
}

/* Sets key (value taken) in memory only: several puts, then one journal_set or journal_sync,
 * cost one write. */
int journal_put(Journal *jn, const char *key, json_t *value);
int journal_sync(Journal *jn);
/* journal_sync in two halves, for a caller that writes off the event loop: a copy of the
 * journal as it is now (on the caller's thread), then its write (any thread; frees nothing:
 * journal_write_free does). */
typedef struct JournalWrite JournalWrite;
int journal_snapshot(Journal *jn, JournalWrite **ret);
int journal_write_run(void *jw);
void journal_write_free(void *jw);
/* Sets key (value taken) and writes the journal through to disk. */
int journal_set(Journal *jn, const char *key, json_t *value);
/* The job ended (done or rolled back): the journal goes. */
int journal_remove(Journal *jn);
/* The same in two halves: gone from the directory at once, durable after journal_unlink_sync().
 * For a job that replies in between: a journal that comes back after a crash there only
 * has recovery redo what is already done. */
int journal_unlink(Journal *jn);
int journal_unlink_sync(Journal *jn);
/* journal_unlink_sync() on a worker nobody waits for (right here if no thread starts). */
void journal_unlink_sync_later(sd_event *event, Journal *jn);

/* A leftover journal of a domain: -ENOENT when there is none. */
int journal_load(const char *state_dir, const char *domain, json_t **ret);
int journal_delete(const char *state_dir, const char *domain);
