/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "snapshot-store.h"
#include "store-batch.h"
#include "xml-util.h"

typedef struct BatchItem {
        char *name;
        StagedRecord *record;   /* NULL: remove the record */
        bool current;
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

/* The item for name: the existing one emptied, or a new one. */
static BatchItem *item_for(StoreBatch *b, const char *name) {
        BatchItem *it;

        for (size_t i = 0; i < b->n_items; i++)
                if (streq(b->items[i].name, name)) {
                        staged_record_free(b->items[i].record);
                        b->items[i].record = NULL;
                        return &b->items[i];
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
        StagedRecord *rec = NULL;
        BatchItem *it;
        int r;

        if (!b || !def || !def->name)
                return -EINVAL;
        r = snapshot_store_prepare(b->state_dir, b->domain, def, &rec);
        if (r < 0)
                return r;
        it = item_for(b, def->name);
        if (!it) {
                staged_record_free(rec);
                return -ENOMEM;
        }
        it->record = rec;
        it->current = def->current;
        return 0;
}

int store_batch_remove(StoreBatch *b, const char *name) {
        BatchItem *it;

        if (!b || !name)
                return -EINVAL;
        it = item_for(b, name);
        if (!it)
                return -ENOMEM;
        it->current = false;
        return 0;
}

bool store_batch_empty(const StoreBatch *b) {
        return !b || b->n_items == 0;
}

static int keep_first(int r, int q) {
        return r < 0 ? r : q;
}

int store_batch_run(StoreBatch *b) {
        const StagedRecord *any = NULL;
        int r = 0, q;

        if (store_batch_empty(b))
                return 0;
        /* Write every record first (a failure here changes nothing visible), the marked
         * current ones ahead of the rest; then rename them in, in the same order. */
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < b->n_items; i++) {
                        BatchItem *it = &b->items[i];

                        if (!it->record || it->current != (pass == 0))
                                continue;
                        q = staged_record_write(it->record);
                        if (q < 0)
                                return q;
                }
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < b->n_items; i++) {
                        BatchItem *it = &b->items[i];

                        if (!it->record || it->current != (pass == 0))
                                continue;
                        r = keep_first(r, staged_record_commit(it->record));
                        any = it->record;
                }
        for (size_t i = 0; i < b->n_items; i++) {
                if (b->items[i].record)
                        continue;
                q = snapshot_store_unlink(b->state_dir, b->domain, b->items[i].name);
                if (q != -ENOENT)
                        r = keep_first(r, q);
        }
        /* One directory fsync makes the renames and unlinks durable. */
        q = any ? staged_record_sync(any) : snapshot_store_sync_dir(b->state_dir, b->domain);
        return keep_first(r, q);
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
