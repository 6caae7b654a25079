/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: create_options_read(), the a{sv} decoder of CreateSnapshot.
 *
 * sd-bus has no public way to turn a marshalled blob into a message, so the input is a small
 * program that builds one with the public append calls: for each dictionary entry, a key
 * (mostly one of the real option names) and a variant whose type and contents come from the
 * input, mostly the types the decoder expects and sometimes any type at all. The message is
 * sealed and rewound, as one that came off the bus, and handed to the decoder. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <systemd/sd-bus.h>

#include "create-options.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Input {
        const uint8_t *data;
        size_t size;
} Input;

static uint8_t next(Input *in) {
        uint8_t b;

        if (in->size == 0)
                return 0;
        b = in->data[0];
        in->data++;
        in->size--;
        return b;
}

static const char *const keys[] = {
        "live", "disk-only", "quiesce", "atomic", "halt", "reuse-external", "no-metadata",
        "validate-only", "quiesce-best-effort", "memory", "memory-file", "live-timeout", "disks",
        "", "name", "description",
};

static const char *const words[] = {
        "", "no", "internal", "external", "vda", "vdb", "a.qcow2", "/tmp/x.mem", "x.mem",
        "External", "default", "../escape", "vda ", "sda",
};

/* A string: one of the words above, or up to 31 printable ASCII bytes from the input (sd-bus
 * refuses invalid UTF-8 before our decoder could see it). */
static void next_string(Input *in, char buf[static 32]) {
        uint8_t b = next(in);
        size_t n;

        if (b < 0xc0) {
                strcpy(buf, words[b % ELEMENTSOF(words)]);
                return;
        }
        n = b & 31;
        for (size_t i = 0; i < n; i++)
                buf[i] = 0x20 + next(in) % 0x5f;
        buf[n] = 0;
}

/* A complete type: the ones the decoder knows first, then anything up to depth 3. */
static int next_type(Input *in, char *sig, size_t max, unsigned depth) {
        static const char basic[] = "bsuybnqixtdog";
        static const char *const common[] = { "b", "s", "u", "a(sss)", "as", "a(ss)", "(sss)", "v", "a{sv}" };
        uint8_t b = next(in);
        size_t l = strlen(sig);

        if (l + 8 >= max)
                return -E2BIG;
        if (b < 0x80 || depth >= 3) {
                const char *t = common[b % ELEMENTSOF(common)];

                if (depth >= 3 && strcmp(t, "b") != 0 && strcmp(t, "s") != 0 && strcmp(t, "u") != 0)
                        t = "s";
                if (l + strlen(t) >= max)
                        return -E2BIG;
                strcat(sig, t);
                return 0;
        }
        switch (b % 4) {
        case 0:
                sig[l] = basic[(b >> 2) % (sizeof(basic) - 1)];
                sig[l + 1] = 0;
                return 0;
        case 1:
                strcat(sig, "a");
                return next_type(in, sig, max, depth + 1);
        case 2: {
                unsigned n = 1 + (b >> 2) % 3;
                int r;

                strcat(sig, "(");
                for (unsigned i = 0; i < n; i++) {
                        r = next_type(in, sig, max, depth + 1);
                        if (r < 0)
                                return r;
                }
                if (strlen(sig) + 2 >= max)
                        return -E2BIG;
                strcat(sig, ")");
                return 0;
        }
        default:
                sig[l] = 'a';
                sig[l + 1] = '{';
                sig[l + 2] = basic[(b >> 2) % (sizeof(basic) - 1)];
                sig[l + 3] = 0;
                if (next_type(in, sig, max, depth + 1) < 0 || strlen(sig) + 2 >= max)
                        return -E2BIG;
                strcat(sig, "}");
                return 0;
        }
}

/* Length of the single complete type at the start of sig. */
static size_t type_len(const char *sig) {
        size_t n = 0;
        int depth = 0;

        do {
                while (sig[n] == 'a')
                        n++;
                if (sig[n] == '(' || sig[n] == '{')
                        depth++;
                else if (sig[n] == ')' || sig[n] == '}')
                        depth--;
                n++;
        } while (depth > 0);
        return n;
}

static int append_value(sd_bus_message *m, Input *in, const char *sig, size_t len) {
        char buf[32], inner[64];
        int r;

        switch (sig[0]) {
        case 'b': {
                int v = next(in) & 1;
                return sd_bus_message_append_basic(m, 'b', &v);
        }
        case 's':
                next_string(in, buf);
                return sd_bus_message_append_basic(m, 's', buf);
        case 'o':
                return sd_bus_message_append_basic(m, 'o', next(in) & 1 ? "/org/example" : "/");
        case 'g':
                return sd_bus_message_append_basic(m, 'g', next(in) & 1 ? "a(sss)" : "");
        case 'y': case 'n': case 'q': case 'i': case 'u': case 'x': case 't': case 'd': {
                uint64_t v = 0;

                for (unsigned i = 0; i < 8; i++)
                        v = v << 8 | next(in);
                if (sig[0] == 'd') {
                        double d = (double) v;
                        return sd_bus_message_append_basic(m, 'd', &d);
                }
                if (sig[0] == 'u' || sig[0] == 'i') {
                        uint32_t w = (uint32_t) v;
                        return sd_bus_message_append_basic(m, sig[0], &w);
                }
                if (sig[0] == 'q' || sig[0] == 'n') {
                        uint16_t w = (uint16_t) v;
                        return sd_bus_message_append_basic(m, sig[0], &w);
                }
                if (sig[0] == 'y') {
                        uint8_t w = (uint8_t) v;
                        return sd_bus_message_append_basic(m, 'y', &w);
                }
                return sd_bus_message_append_basic(m, sig[0], &v);
        }
        case 'v':
                inner[0] = 0;
                r = next_type(in, inner, sizeof(inner), 2);
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(m, 'v', inner);
                if (r < 0)
                        return r;
                r = append_value(m, in, inner, strlen(inner));
                if (r < 0)
                        return r;
                return sd_bus_message_close_container(m);
        case 'a': {
                char elem[64];
                size_t el = type_len(sig + 1);
                unsigned n = next(in) % 4;
                bool dict = sig[1] == '{';

                if (el >= sizeof(elem))
                        return -E2BIG;
                snprintf(elem, sizeof(elem), "%.*s", (int) el, sig + 1);
                /* A dict entry is opened with its contents, without the braces. */
                snprintf(inner, sizeof(inner), "%.*s", dict ? (int) el - 2 : (int) el, dict ? elem + 1 : elem);
                r = sd_bus_message_open_container(m, 'a', elem);
                if (r < 0)
                        return r;
                for (unsigned i = 0; i < n; i++) {
                        if (dict) {
                                r = sd_bus_message_open_container(m, 'e', inner);
                                if (r < 0)
                                        return r;
                                r = append_value(m, in, inner, 1);
                                if (r < 0)
                                        return r;
                                r = append_value(m, in, inner + 1, strlen(inner + 1));
                                if (r < 0)
                                        return r;
                                r = sd_bus_message_close_container(m);
                        } else
                                r = append_value(m, in, inner, el);
                        if (r < 0)
                                return r;
                }
                return sd_bus_message_close_container(m);
        }
        case '(': {
                size_t l = type_len(sig);

                snprintf(inner, sizeof(inner), "%.*s", (int) l - 2, sig + 1);
                r = sd_bus_message_open_container(m, 'r', inner);
                if (r < 0)
                        return r;
                for (const char *p = inner; *p; p += type_len(p)) {
                        r = append_value(m, in, p, type_len(p));
                        if (r < 0)
                                return r;
                }
                return sd_bus_message_close_container(m);
        }
        default:
                return -EINVAL;
        }
}

static sd_bus *bus_get(void) {
        static sd_bus *bus;
        int fds[2];

        if (bus)
                return bus;
        /* Messages need a started bus; one end of a socketpair that nobody answers will do. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0 ||
            sd_bus_new(&bus) < 0 || sd_bus_set_fd(bus, fds[0], fds[0]) < 0 || sd_bus_start(bus) < 0)
                abort();
        return bus;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(create_request_clear) CreateRequest req = {};
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        Input in = { data, size };
        int r;

        r = sd_bus_message_new_method_call(bus_get(), &m, "org.example.Snapshot1", "/", "org.example.Test", "Test");
        if (r < 0)
                abort();
        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                abort();

        for (unsigned n = 0; in.size > 0 && n < 32; n++) {
                uint8_t k = next(&in);
                char key[32], sig[64] = "";

                if (k < 0xf0)
                        strcpy(key, keys[k % ELEMENTSOF(keys)]);
                else
                        next_string(&in, key);
                if (next_type(&in, sig, sizeof(sig), 0) < 0)
                        return 0;

                /* A message the builder refuses never reaches the decoder: nothing to test. */
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append_basic(m, 's', key);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', sig);
                if (r >= 0)
                        r = append_value(m, &in, sig, strlen(sig));
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r < 0)
                        return 0;
        }

        r = sd_bus_message_close_container(m);
        if (r < 0)
                return 0;
        r = sd_bus_message_seal(m, 1, 0);
        if (r < 0)
                abort();
        r = sd_bus_message_rewind(m, true);
        if (r < 0)
                abort();

        r = create_options_read(m, &req, &error);
        if (r < 0)
                return 0;

        /* What the decoder accepted must hold its promises. */
        if (!isempty(req.memory_file) && req.memory != SNAPSHOT_LOCATION_EXTERNAL)
                abort();
        for (size_t i = 0; i < req.n_disks; i++) {
                if (isempty(req.disks[i].target))
                        abort();
                for (size_t j = 0; j < i; j++)
                        if (streq(req.disks[i].target, req.disks[j].target))
                                abort();
        }
        return 0;
}
