/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The create job's state, shared by job-create.c (the flow, disks, undo), job-memory.c (the
 * memory image), job-sync.c (the new files reach the disk) and job-record.c (the record).
 * Nothing else includes this. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "create-options.h"
#include "job-create.h"
#include "macro.h"
#include "qmp.h"
#include "snapshot-rules.h"
#include "snapshot-store.h"
#include "worker.h"
#include "writeback.h"

#define JOB_NAME "snapshot-create"
#define AGENT_FREEZE_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define AGENT_PING_TIMEOUT_USEC (5 * USEC_PER_SEC)

typedef enum MemoryStep {
        MEMORY_SET,             /* capabilities and parameters, pipelined */
        MEMORY_GETFD,
        MEMORY_SETUP_PAUSE,     /* single pass (TCG, QEMU < 9.0): stop before migrate */
        MEMORY_MIGRATE,
        MEMORY_WAIT,            /* until pre-switchover (or failure) */
        MEMORY_CONTINUE,        /* after the disks: migrate-continue, wait for completed */
        MEMORY_WAIT_DONE,
} MemoryStep;

typedef struct DiskPlan {
        char *target;
        SnapshotLocation location;
        char *top_node;         /* the device's top node before the snapshot */
        char *base_file;        /* its image file: the overlay's backing */
        char *base_format;
        uint64_t virtual_size;
        bool read_only;

        char *qom_path;         /* the device (for the disk cache's qom-get) */
        char *overlay;          /* absolute path under the image dir */
        char *file_node;        /* our node names (the file node is the format node's child: */
        char *fmt_node;         /* one blockdev-add opens both, blockdev-del of it drops both) */

        bool file_created;      /* we created the file: unlink it when undoing */
        bool fmt_node_added;
} DiskPlan;

typedef enum Step {
        STEP_INSPECT_BLOCK,
        STEP_VERIFY_CACHE,      /* the domain's disk cache still right? (qom-get per disk) */
        STEP_INSPECT_MEMORY,
        STEP_INSPECT_CPUS,
        STEP_CHECK_AGENT,
        STEP_PREPARE,           /* per disk, sub-steps below */
        STEP_FREEZE,
        STEP_PAUSE,
        STEP_INTERNAL,          /* memory internal: QEMU's snapshot-save job */
        STEP_MEMORY,            /* memory external: migrate to the image, up to pre-switchover */
        STEP_SNAPSHOT,
        STEP_MEMORY_FINISH,     /* the final pass, completed */
        STEP_THAW,
        STEP_RESUME,
        STEP_SYNC,              /* fsync + header commit of the image, off the loop */
        STEP_RESTORE,           /* migration settings back as they were */
        STEP_METADATA,
        STEP_DONE,
} Step;

/* Pipelined QMP calls (job_batch_*): each reply to fn with the tag it was sent with, in
 * order; end after the last. */
typedef void (*batch_reply_fn)(CreateJob *j, size_t tag, json_t *reply, const QmpError *err);
typedef void (*batch_end_fn)(CreateJob *j);

typedef struct BatchCall {
        CreateJob *job;
        size_t index;
} BatchCall;

typedef struct Batch {
        uint64_t *ids;          /* in flight, for cancelling */
        size_t *tags;
        BatchCall *calls;       /* each reply's own slot: not trusted to come in order */
        size_t n, sent, done;
        int send_error;         /* a call could not even be sent: none after it were */
        batch_reply_fn fn;
        batch_end_fn end;
} Batch;

struct CreateJob {
        Domain *domain;
        uint64_t started_usec;          /* for the outcome's log line */
        uint64_t started_qemu_usec;     /* qmp_busy_usec() then */
        sd_bus_message *request;
        CreateRequest req;
        CreatePlan plan;
        char tag[16];           /* random, makes node and job names unique in QEMU */

        DiskPlan *disks;
        size_t n_disks;
        uint64_t memory_kib;
        unsigned vcpus;
        uint64_t creation_usec;
        bool was_running;

        Step step;
        bool cache_checked;     /* the disk cache was verified (or found stale) once */
        bool cache_stale;
        Batch batch;
        char *batch_error;      /* the first failed call of the batch, said in the job's error */
        batch_end_fn batch_then;        /* job_memory_read_settings: what comes after */

        /* what the forward path did, for the undo path */
        bool freeze_sent;
        bool quiesced;
        bool paused;
        bool committed;         /* the transaction succeeded: the guest writes to the overlays */

        /* undo path */
        bool undoing;
        unsigned undo_step;
        size_t undo_cursor;
        int undo_sub;
        sd_bus_error error;

        uint64_t qmp_call;
        uint64_t agent_call;
        void (*cont)(CreateJob *j, json_t *reply, const QmpError *err);

        /* the memory image (job-memory.c) */
        MemoryStep memory_step;
        char *memory_file;
        int memory_fd;
        bool memory_file_created;
        char fdname[32];
        bool fd_added;          /* getfd done, QEMU holds a copy */
        json_t *saved_caps;     /* migration capabilities and parameters we changed */
        json_t *saved_params;
        bool kvm;               /* query-kvm: the guest runs under KVM (not TCG) */
        int qemu_major;         /* query-version (0: unknown) */
        bool settings_read;     /* saved_caps, saved_params, kvm, version read (with the cache check) */
        bool single_pass;       /* live under TCG on QEMU < 9.0: see job-memory.c */
        bool ev_active;         /* single pass: MIGRATION "active" seen, not acted on yet */
        bool migration_changed;
        bool migration_started;
        bool sync_pending, restore_pending;     /* the image syncs while the settings go back */
        int sync_error;
        bool overlay_sync_pending;      /* the new overlays' fdatasync, from job_prepare on */
        int overlay_sync_error;
        Worker *overlay_worker;
        bool adds_late;                 /* a live save: blockdev-adds once migrate is running */
        bool adds_pending;              /* ... and not all answered yet */
        bool tx_pipelined;              /* the transaction went out right behind the adds */
        /* the record, written ahead (job-record.c) */
        StagedRecord *staged_new;       /* this snapshot's record, with the current mark */
        StagedRecord *staged_old;       /* the old current one's, without */
        Snapshot *staged_parent;        /* the current snapshot when they were written */
        bool old_committed;
        /* the state dir's writes run on workers (job-record.c, the journal in job-create.c) */
        Worker *record_worker;          /* staging or committing the record */
        struct RecordIo *record_io;     /* its work, the worker's; read in its done */
        SnapshotDef *record_def;        /* the definition being committed */
        bool metadata_waiting;          /* job_metadata() waits for the staging to end */
        bool finish_waiting;            /* job_finish() (a failed job) waits for it too */
        Worker *journal_worker;         /* the journal's first write, before any change */
        bool at_switchover;     /* pre-switchover: guest stopped, final pass not yet written */
        bool migration_done;
        bool waiting_migration_end;
        bool ev_switchover;     /* MIGRATION events seen, not acted on yet */
        char *ev_ended_early;   /* "failed"/"cancelled" seen while our migrate call was in flight */
        bool ev_completed;
        bool abort_requested;
        bool escalated;         /* live-timeout hit: we paused the guest to finish */
        sd_event_source *progress_timer;
        sd_event_source *live_timer;
        sd_event_source *end_timer;
        sd_event_source *abort_timer;   /* AbortJob: QEMU must say "cancelled" within this */
        sd_event_source *nudge_timer;   /* cancelled, not ended yet: see migration-cancel.c */
        uint64_t nudge_call;
        bool nudged;
        uint64_t progress_call;
        Worker *worker;
        Writeback *writeback;   /* the image's early writeback while QEMU writes it */
        uint64_t stop_usec, resume_usec;  /* from QEMU's STOP/RESUME events */
        bool internal_saved;    /* snapshot-save done: undo with snapshot-delete */
        bool internal_running;
        bool internal_concluded;
        char *internal_job_id;
        char *internal_error;
        unsigned cont_retries;
        struct Journal *journal;        /* what this job did, for recovery after a crash */
        int failpoint_step;
        sd_event_source *retry_timer;
};

typedef void (*job_reply_fn)(CreateJob *j, json_t *reply, const QmpError *err);

/* job-create.c */
void job_next(CreateJob *j);
void job_finish(CreateJob *j, const char *path);
void job_fail(CreateJob *j, const char *name, const char *fmt, ...) _printf_(3, 4);
void job_fail_qmp(CreateJob *j, const char *what, const QmpError *err);
void job_qmp(CreateJob *j, const char *command, json_t *args, job_reply_fn fn);
void job_qmp_fd(CreateJob *j, const char *command, json_t *args, int fd, job_reply_fn fn);
void job_undo_next(CreateJob *j);
void job_progress(CreateJob *j, const char *phase, uint64_t processed, uint64_t total);

int job_journal_note(CreateJob *j, const char *key, json_t *value);
/* A write of the record or the journal is running on a worker. */
bool job_files_busy(CreateJob *j);

/* job-memory.c */
int job_memory_validate(CreateJob *j, sd_bus_error *error);
void job_memory_next(CreateJob *j);        /* STEP_MEMORY and STEP_MEMORY_FINISH */
void job_internal_next(CreateJob *j);      /* STEP_INTERNAL */
/* Pipelined QMP calls: begin, one call per command, send; see job-create.c. */
int job_batch_begin(CreateJob *j, size_t n, batch_reply_fn fn, batch_end_fn end);
void job_batch_call(CreateJob *j, const char *command, json_t *args, size_t tag);
void job_batch_send(CreateJob *j);
void job_batch_note_error(CreateJob *j, const char *what, const QmpError *err);
int job_adds_send(CreateJob *j, batch_end_fn end);      /* the overlays' blockdev-adds */
int job_adds_failed(CreateJob *j);                      /* fails the job (< 0) if they did */

/* Reads QEMU's migration capabilities and parameters that a save changes (saved_caps,
 * saved_params), then runs then (or fails the job). */
void job_memory_read_settings(CreateJob *j, batch_end_fn then);
/* The same reads riding in another batch (the disk cache's check), tagged from tag_base:
 * replies to job_memory_setting_reply(tag - tag_base), then job_memory_settings_early_end()
 * in the batch's end, after which job_memory_read_settings() has nothing left to ask. */
#define JOB_MEMORY_SETTINGS_CALLS 4
void job_memory_settings_calls(CreateJob *j, size_t tag_base);
void job_memory_setting_reply(CreateJob *j, size_t tag, json_t *reply, const QmpError *err);
void job_memory_settings_early_end(CreateJob *j);
/* job-sync.c */
void job_sync_next(CreateJob *j);          /* STEP_SYNC */
/* job-record.c */
int job_build_def(CreateJob *j, SnapshotDef **ret);
void job_record_stage(CreateJob *j);       /* once the record is final, while QEMU works */
void job_metadata(CreateJob *j);           /* STEP_METADATA */
void job_record_detach(CreateJob *j);      /* the job goes: a running write finishes alone */
int job_overlays_sync_start(CreateJob *j); /* once the overlays are written */
void job_sync_restored(CreateJob *j);      /* the migration settings are back */
bool job_memory_restore_begin(CreateJob *j); /* job-memory.c: false when nothing to put back */
void job_restore_next(CreateJob *j);       /* STEP_RESTORE */
void job_memory_on_event(CreateJob *j, const char *event, json_t *data);
/* Undo of the memory part, one QMP call at a time: returns true when it issued a call (the
 * undo continues from its reply), false when nothing is left to undo. */
bool job_memory_undo_next(CreateJob *j, job_reply_fn next);
void job_memory_clear(CreateJob *j);
