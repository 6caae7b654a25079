/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Cancelling a memory save, and QEMU's lost wake-up.
 *
 * With pause-before-switchover, QEMU's migration thread stops the guest ("finish-migrate"),
 * checks the save is not being cancelled, drops the big lock, and only then moves to
 * "pre-switchover" and sleeps until migrate-continue or migrate_cancel wakes it. A
 * migrate_cancel that lands in that gap (QEMU 7.2 here; fixed upstream in 2025 by setting
 * the state before the lock is dropped) sees "active", so it wakes nobody; the thread's move
 * to "pre-switchover" then fails against "cancelling" and it sleeps anyway. The save never
 * ends: state "cancelling", guest stopped, and every later migration command refused. It
 * happens only when an AbortJob meets the moment a save converges: rare, but the soak
 * test's aborts met it in CI.
 *
 * migrate-continue wakes that same sleep, and takes the state the save is in as its
 * argument: sent with "cancelling" it frees the thread, which sees the cancel and ends the
 * save, restarting the guest. When the thread is not asleep the wake-up is left over; QEMU
 * discards left-over ones before it next pauses at switchover, so it never lets a later
 * save skip its pause. */
#include "migration-cancel.h"

int migration_cancel(Qmp *q) {
        return qmp_call(q, "migrate_cancel", NULL, -1, 0, NULL, NULL, NULL);
}

int migration_cancel_nudge(Qmp *q, qmp_reply_fn cb, void *userdata, uint64_t *ret_id) {
        return qmp_call(q, "migrate-continue", json_pack("{s:s}", "state", "cancelling"), -1, 0, cb, userdata, ret_id);
}
