/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "failpoint.h"
#include "macro.h"
#include "snapshot-store.h"
#include "store-batch.h"
#include "xml-util.h"

typedef struct BatchItem {
        char *name;
        const SnapshotDef *def; /* saved, not formatted yet (store_batch_seal) */
        StagedRecord *record;   /* saved and formatted (none if that failed: left alone) */
        bool remove;            /* or removed */
} BatchItem;

struct StoreBatch {
        char *state_dir;
        char *domain;
        BatchItem *items;
        size_t n_items, n_alloc;
};

StoreBatch *store_batch_new(const char *state_dir, const char *domain) {
        StoreBatch *b = calloc(1, sizeof(StoreBatch));

        if (!b)
                return NULL;
        b->state_dir = strdup(state_dir ?: "");
        b->domain = strdup(domain ?: "");
        if (!b->state_dir || !b->domain)
                return store_batch_free(b);
        return b;
}

static void item_clear(BatchItem *it) {
        free(it->name);
        staged_record_free(it->record);
        *it = (BatchItem) {};
}

/* The item for name: the existing one emptied, or a new one. From the end: what replaces
 * an item mostly came right after it. */
static BatchItem *item_for(StoreBatch *b, const char *name) {
        BatchItem *it;

        for (size_t i = b->n_items; i > 0; i--)
                if (streq(b->items[i - 1].name, name)) {
                        it = &b->items[i - 1];
                        it->record = staged_record_free(it->record);
                        it->def = NULL;
                        it->remove = false;
                        return it;
                }
        if (b->n_items == b->n_alloc) {
                size_t n = b->n_alloc ? b->n_alloc * 2 : 8;
                BatchItem *p = reallocarray(b->items, n, sizeof(BatchItem));

                if (!p)
                        return NULL;
                b->items = p;
                b->n_alloc = n;
        }
        it = &b->items[b->n_items];
        *it = (BatchItem) { .name = strdup(name) };
        if (!it->name)
                return NULL;
        b->n_items++;
        return it;
}

int store_batch_save(StoreBatch *b, const SnapshotDef *def) {
        BatchItem *it;

        if (!b || !def || !def->name)
                return -EINVAL;
        it = item_for(b, def->name);
        if (!it)
                return -ENOMEM;
        it->def = def;
        return 0;
}

int store_batch_seal(StoreBatch *b) {
        size_t front = 0;
        int r = 0;

        for (size_t i = 0; b && i < b->n_items; i++) {
                BatchItem *it = &b->items[i];
                bool current;
                int q;

                if (!it->def)
                        continue;
                current = it->def->current;
                q = snapshot_store_prepare(b->state_dir, b->domain, it->def, &it->record);
                it->def = NULL;
                if (q < 0 && r >= 0)
                        r = q;
                /* The marked record moves ahead of the rest: store_batch_run() writes and
                 * renames in this order. */
                if (current && it->record) {
                        BatchItem t = *it;

                        memmove(&b->items[front + 1], &b->items[front], (i - front) * sizeof(BatchItem));
                        b->items[front++] = t;
                }
        }
        return r;
}

int store_batch_remove(StoreBatch *b, const char *name) {
        BatchItem *it;

        if (!b || !name)
                return -EINVAL;
        it = item_for(b, name);
        if (!it)
                return -ENOMEM;
        it->remove = true;
        return 0;
}

bool store_batch_empty(const StoreBatch *b) {
        return !b || b->n_items == 0;
}

static int keep_first(int r, int q) {
        return r < 0 ? r : q;
}

int store_batch_run(StoreBatch *b) {
        int r = 0, q;

        if (store_batch_empty(b))
                return 0;
        /* Unsealed saves are a caller's bug: never read a pointer that may be gone. */
        for (size_t i = 0; i < b->n_items; i++)
                if (b->items[i].def)
                        return -EINVAL;
        q = failpoint_io("store-batch-write");
        if (q < 0)
                return q;
        /* Write every record first (a failure here changes nothing visible); then rename
         * them in, in the order store_batch_seal() left: the marked current one first. */
        for (size_t i = 0; i < b->n_items; i++)
                if (b->items[i].record) {
                        q = staged_record_write(b->items[i].record);
                        if (q < 0)
                                return q;
                }
        for (size_t i = 0; i < b->n_items; i++)
                if (b->items[i].record)
                        r = keep_first(r, staged_record_commit(b->items[i].record));
        for (size_t i = 0; i < b->n_items; i++)
                if (b->items[i].remove) {
                        q = snapshot_store_unlink(b->state_dir, b->domain, b->items[i].name);
                        if (q != -ENOENT)
                                r = keep_first(r, q);
                }
        /* One directory fsync makes the renames and unlinks durable. */
        return keep_first(r, snapshot_store_sync_dir(b->state_dir, b->domain));
}

int store_batch_run_worker(void *b) {
        return store_batch_run(b);
}

void store_batch_free_worker(void *b) {
        store_batch_free(b);
}

StoreBatch *store_batch_free(StoreBatch *b) {
        if (!b)
                return NULL;
        for (size_t i = 0; i < b->n_items; i++)
                item_clear(&b->items[i]);
        free(b->items);
        free(b->state_dir);
        free(b->domain);
        free(b);
        return NULL;
}
