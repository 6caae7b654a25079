/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The a{sv} decoder of CreateSnapshot, on messages built without any bus daemon. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "create-options.h"
#include "errors.h"
#include "macro.h"
#include "snapshot-bus.h"
#include "unit-test.h"

static sd_bus *bus;

/* Builds a sealed message holding a single a{sv} from an "append" callback, then decodes it. */
typedef int (*append_fn)(sd_bus_message *m);

static int decode(append_fn fill, CreateRequest *req, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, "org.example.Snapshot1", "/", "org.example.Test", "Test");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        r = fill(m);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        r = sd_bus_message_seal(m, 1, 0);
        if (r < 0)
                return r;
        r = sd_bus_message_rewind(m, true);
        if (r < 0)
                return r;
        return create_options_read(m, req, error);
}

static int fill_full(sd_bus_message *m) {
        return sd_bus_message_append(m, "{sv}{sv}{sv}{sv}{sv}{sv}",
                                     "disk-only", "b", 1,
                                     "atomic", "b", 1,
                                     "quiesce", "b", 1,
                                     "quiesce-best-effort", "b", 1,
                                     "live-timeout", "u", 30,
                                     "disks", "a(sss)", 2, "vda", "external", "a.qcow2", "vdb", "no", "");
}

static int fill_unknown(sd_bus_message *m) {
        return sd_bus_message_append(m, "{sv}", "frobnicate", "b", 1);
}

static int fill_wrong_type(sd_bus_message *m) {
        return sd_bus_message_append(m, "{sv}", "atomic", "s", "yes");
}

static int fill_bad_memory(sd_bus_message *m) {
        return sd_bus_message_append(m, "{sv}", "memory", "s", "External");
}

static int fill_memfile(sd_bus_message *m) {
        return sd_bus_message_append(m, "{sv}{sv}", "live", "b", 1, "memory-file", "s", "x.mem");
}

static int fill_dup_disk(sd_bus_message *m) {
        return sd_bus_message_append(m, "{sv}", "disks", "a(sss)", 2, "vda", "external", "", "vda", "no", "");
}

static int fill_bad_kind(sd_bus_message *m) {
        return sd_bus_message_append(m, "{sv}", "disks", "a(sss)", 1, "vda", "sideways", "");
}

static int fill_file_on_no(sd_bus_message *m) {
        return sd_bus_message_append(m, "{sv}", "disks", "a(sss)", 1, "vda", "no", "x.qcow2");
}

static int fill_false(sd_bus_message *m) {
        return sd_bus_message_append(m, "{sv}{sv}", "halt", "b", 1, "halt", "b", 0);
}

static void expect_error(append_fn fill, const char *name, const char *what) {
        _cleanup_(create_request_clear) CreateRequest req = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = decode(fill, &req, &error);

        CHECK(r < 0 && sd_bus_error_has_name(&error, name), "%s: want %s, got %d %s (%s)", what, name, r,
              error.name ?: "", error.message ?: "");
        sd_bus_error_free(&error);
}

int main(void) {
        _cleanup_(create_request_clear) CreateRequest req = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        (void) errors_register();
        /* Messages need a started bus; one end of a socketpair that nobody answers will do. */
        int fds[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
        r = sd_bus_new(&bus);
        CHECK(r >= 0, "sd_bus_new: %d", r);
        r = sd_bus_set_fd(bus, fds[0], fds[0]);
        CHECK(r >= 0, "sd_bus_set_fd: %d", r);
        r = sd_bus_start(bus);
        CHECK(r >= 0, "sd_bus_start: %d", r);

        r = decode(fill_full, &req, &error);
        CHECK(r >= 0, "full decode: %d %s", r, error.message ?: "");
        CHECK(req.flags == (SNAPSHOT_CREATE_DISK_ONLY | SNAPSHOT_CREATE_ATOMIC | SNAPSHOT_CREATE_QUIESCE),
              "flags 0x%llx", (unsigned long long) req.flags);
        CHECK(req.quiesce_best_effort && req.live_timeout == 30, "best effort, timeout");
        CHECK(req.n_disks == 2, "disks %zu", req.n_disks);
        if (req.n_disks == 2) {
                CHECK_STREQ(req.disks[0].target, "vda");
                CHECK(req.disks[0].location == SNAPSHOT_LOCATION_EXTERNAL, "vda external");
                CHECK_STREQ(req.disks[0].file, "a.qcow2");
                CHECK(req.disks[1].location == SNAPSHOT_LOCATION_NO, "vdb no");
        }
        create_request_clear(&req);

        r = decode(fill_memfile, &req, &error);
        CHECK(r >= 0 && req.memory == SNAPSHOT_LOCATION_EXTERNAL && (req.flags & SNAPSHOT_CREATE_LIVE),
              "memory-file implies external");
        create_request_clear(&req);

        r = decode(fill_false, &req, &error);
        CHECK(r >= 0 && req.flags == 0, "a later false clears the flag");
        create_request_clear(&req);

        expect_error(fill_unknown, SD_BUS_ERROR_INVALID_ARGS, "unknown key");
        expect_error(fill_wrong_type, SD_BUS_ERROR_INVALID_ARGS, "wrong variant type");
        expect_error(fill_bad_memory, SNAPSHOT_ERROR_INVALID_ARGUMENT, "values are case-sensitive");
        expect_error(fill_dup_disk, SNAPSHOT_ERROR_INVALID_ARGUMENT, "duplicate disk");
        expect_error(fill_bad_kind, SNAPSHOT_ERROR_INVALID_ARGUMENT, "unknown disk kind");
        expect_error(fill_file_on_no, SNAPSHOT_ERROR_INVALID_ARGUMENT, "file with snapshot=no");

        sd_bus_close_unref(bus);
        close(fds[1]);
        return unit_done("test-create-options");
}
