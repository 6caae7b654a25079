/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The domain config directory: parse, refuse, format, save/remove, load_dir. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "domain-config.h"
#include "macro.h"

static int failures;

#define CHECK(cond, ...)                                                        \
        do {                                                                    \
                if (!(cond)) {                                                  \
                        fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
                        fprintf(stderr, __VA_ARGS__);                           \
                        fputc('\n', stderr);                                    \
                        failures++;                                             \
                }                                                               \
        } while (0)

static char tmpdir[] = "/tmp/test-domain-config.XXXXXX";

static int parse(const char *xml, DomainConfig **ret) {
        return domain_config_parse(xml, strlen(xml), ret);
}

static void test_good(void) {
        _cleanup_(domain_config_freep) DomainConfig *c = NULL, *c2 = NULL, *c3 = NULL;
        _cleanup_free_ char *xml = NULL;
        int r;

        r = parse("<?xml version=\"1.0\"?>\n"
                  "<domain name=\"vm1\">\n"
                  "  <qmp socket=\"/run/vm1/qmp.sock\"/>\n"
                  "  <agent socket=\"/run/vm1/qga.sock\"/>          <!-- optional -->\n"
                  "  <images dir=\"/var/lib/snapshotd/images/vm1\"/> <!-- overlays and memory images -->\n"
                  "</domain>\n", &c);
        CHECK(r == 0, "good config: %s", strerror(-r));
        if (r < 0)
                return;
        CHECK(streq_ptr(c->name, "vm1"), "name %s", c->name);
        CHECK(streq_ptr(c->qmp_socket, "/run/vm1/qmp.sock"), "qmp");
        CHECK(streq_ptr(c->agent_socket, "/run/vm1/qga.sock"), "agent");
        CHECK(streq_ptr(c->images_dir, "/var/lib/snapshotd/images/vm1"), "images");

        /* Round trip through format. */
        r = domain_config_format(c, &xml);
        CHECK(r == 0, "format: %d", r);
        if (r == 0) {
                r = parse(xml, &c2);
                CHECK(r == 0 && streq_ptr(c2->name, c->name) && streq_ptr(c2->qmp_socket, c->qmp_socket) &&
                      streq_ptr(c2->agent_socket, c->agent_socket) && streq_ptr(c2->images_dir, c->images_dir),
                      "round trip: %d\n%s", r, xml);
        }

        /* No agent; a managed section and unknown children from a newer version are ignored. */
        r = parse("<domain name='vm-2'>"
                  "<managed><memory unit='MiB'>512</memory><disk target='vda' file='/x.qcow2'/></managed>"
                  "<qmp socket='/run/a &amp; b/qmp.sock' future='yes'/>"
                  "<images dir='/img'/><something-new/>"
                  "</domain>", &c3);
        CHECK(r == 0, "managed/unknown children: %s", strerror(-r));
        if (r == 0) {
                CHECK(!c3->agent_socket, "agent should be NULL");
                CHECK(streq_ptr(c3->qmp_socket, "/run/a & b/qmp.sock"), "qmp %s", c3->qmp_socket);
        }
}

static void test_bad(void) {
        static const struct {
                const char *what;
                const char *xml;
        } cases[] = {
                { "no name", "<domain><qmp socket='/q'/><images dir='/i'/></domain>" },
                { "empty name", "<domain name=''><qmp socket='/q'/><images dir='/i'/></domain>" },
                { "name with slash", "<domain name='a/b'><qmp socket='/q'/><images dir='/i'/></domain>" },
                { "name with dot", "<domain name='.vm'><qmp socket='/q'/><images dir='/i'/></domain>" },
                { "no qmp", "<domain name='vm'><images dir='/i'/></domain>" },
                { "qmp without socket", "<domain name='vm'><qmp/><images dir='/i'/></domain>" },
                { "no images", "<domain name='vm'><qmp socket='/q'/></domain>" },
                { "relative qmp", "<domain name='vm'><qmp socket='run/q'/><images dir='/i'/></domain>" },
                { "relative agent", "<domain name='vm'><qmp socket='/q'/><agent socket='qga'/><images dir='/i'/></domain>" },
                { "relative images", "<domain name='vm'><qmp socket='/q'/><images dir='./i'/></domain>" },
                { "empty images", "<domain name='vm'><qmp socket='/q'/><images dir=''/></domain>" },
                { "agent without socket", "<domain name='vm'><qmp socket='/q'/><agent/><images dir='/i'/></domain>" },
                { "two qmp", "<domain name='vm'><qmp socket='/q'/><qmp socket='/r'/><images dir='/i'/></domain>" },
                { "wrong root", "<domainsnapshot name='vm'><qmp socket='/q'/><images dir='/i'/></domainsnapshot>" },
                { "malformed", "<domain name='vm'><qmp socket='/q'><images dir='/i'/></domain>" },
                { "entity",
                  "<!DOCTYPE domain [<!ENTITY p SYSTEM 'file:///etc/passwd'>]>"
                  "<domain name='vm'><qmp socket='/q'/><images dir='/i&p;'/></domain>" },
                { "undeclared entity", "<domain name='vm'><qmp socket='/q'/><images dir='/i&p;'/></domain>" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                DomainConfig *c = NULL;
                int r;

                r = parse(cases[i].xml, &c);
                CHECK(r == -EINVAL, "%s: got %d, want -EINVAL", cases[i].what, r);
                domain_config_free(c);
        }

        /* Formatting refuses what parsing would refuse. */
        {
                DomainConfig c = {
                        .name = (char *) "vm", .qmp_socket = (char *) "relative", .images_dir = (char *) "/i",
                };
                char *xml = NULL;

                CHECK(domain_config_format(&c, &xml) == -EINVAL, "format with relative path");
                c.qmp_socket = (char *) "/q";
                c.name = (char *) "../vm";
                CHECK(domain_config_format(&c, &xml) == -EINVAL, "format with bad name");
                free(xml);
        }

        /* Oversized. */
        {
                const size_t size = 10 * 1024 * 1024;
                DomainConfig *c = NULL;
                char *big = malloc(size);

                CHECK(big, "malloc");
                if (big) {
                        memset(big, ' ', size);
                        CHECK(domain_config_parse(big, size, &c) == -EFBIG, "10 MB config");
                        free(big);
                }
        }
}

static void test_managed(void) {
        _cleanup_(domain_config_freep) DomainConfig *c = NULL, *m = NULL, *k = NULL;
        const QemuDef *q;
        int r;

        /* The example in data/ with every element. */
        r = parse("<domain name='vm2' managed='yes'>"
                  "<images dir='/img/vm2'/>"
                  "<agent/>"
                  "<qemu binary='/usr/bin/qemu-system-x86_64'>"
                  "<machine>q35</machine><accel>tcg</accel>"
                  "<memory unit='GiB'>2</memory><vcpus>4</vcpus>"
                  "<disk target='vda' file='root.qcow2' format='qcow2' serial='root'/>"
                  "<disk target='vdb' file='/data/b.raw' format='raw'/>"
                  "<kernel>/boot/vmlinuz</kernel><initrd>initrd.img</initrd><cmdline>console=ttyS0 quiet</cmdline>"
                  "<arg>-serial</arg><arg>file:/tmp/console.log</arg><arg></arg>"
                  "<shutdown timeout='20'/>"
                  "</qemu></domain>", &c);
        CHECK(r == 0, "managed: %s", strerror(-r));
        if (r == 0) {
                q = c->qemu;
                CHECK(q, "qemu section missing");
                CHECK(!c->qmp_socket && !c->agent_socket, "managed sockets are the daemon's");
                CHECK(streq_ptr(c->images_dir, "/img/vm2"), "images %s", c->images_dir);
                CHECK(streq_ptr(q->binary, "/usr/bin/qemu-system-x86_64"), "binary %s", q->binary);
                CHECK(streq_ptr(q->machine, "q35") && streq_ptr(q->accel, "tcg"), "machine/accel");
                CHECK(q->memory_mib == 2048 && q->vcpus == 4, "memory %llu vcpus %u",
                      (unsigned long long) q->memory_mib, q->vcpus);
                CHECK(q->agent, "agent");
                CHECK(q->n_disks == 2, "disks %zu", q->n_disks);
                if (q->n_disks == 2) {
                        CHECK(streq_ptr(q->disks[0].target, "vda") &&
                              streq_ptr(q->disks[0].file, "/img/vm2/root.qcow2") &&
                              streq_ptr(q->disks[0].format, "qcow2") && streq_ptr(q->disks[0].serial, "root"),
                              "disk 0: %s %s", q->disks[0].target, q->disks[0].file);
                        CHECK(streq_ptr(q->disks[1].file, "/data/b.raw") && streq_ptr(q->disks[1].format, "raw") &&
                              !q->disks[1].serial, "disk 1: %s", q->disks[1].file);
                }
                CHECK(streq_ptr(q->kernel, "/boot/vmlinuz"), "kernel %s", q->kernel);
                CHECK(streq_ptr(q->initrd, "/img/vm2/initrd.img"), "relative initrd %s", q->initrd);
                CHECK(streq_ptr(q->cmdline, "console=ttyS0 quiet"), "cmdline %s", q->cmdline);
                CHECK(q->args && streq_ptr(q->args[0], "-serial") && streq_ptr(q->args[1], "file:/tmp/console.log") &&
                      streq_ptr(q->args[2], "") && !q->args[3], "args");
                CHECK(q->shutdown_timeout == 20, "shutdown timeout %u", q->shutdown_timeout);
        }

        /* The defaults: an empty <qemu/> is a diskless 512 MiB, 1-CPU pc with a 60 s stop. */
        r = parse("<domain name='m' managed='yes'><images dir='/i'/><qemu/></domain>", &m);
        CHECK(r == 0, "minimal managed: %s", strerror(-r));
        if (r == 0) {
                q = m->qemu;
                CHECK(streq_ptr(q->binary, "qemu-system-x86_64"), "default binary %s", q->binary);
                CHECK(streq_ptr(q->machine, "pc") && streq_ptr(q->accel, "auto"), "default machine/accel");
                CHECK(q->memory_mib == 512 && q->vcpus == 1, "default memory/vcpus");
                CHECK(q->n_disks == 0 && !q->agent && !q->kernel && !q->initrd && !q->cmdline, "defaults");
                CHECK(q->args && !q->args[0], "no args");
                CHECK(q->shutdown_timeout == 60, "default shutdown timeout %u", q->shutdown_timeout);
        }

        /* Units; a disk without format is qcow2; managed="no" is an attached domain. */
        r = parse("<domain name='k' managed='yes'><images dir='/i'/><qemu><memory unit='KiB'>1048576</memory>"
                  "<disk target='vda' file='a.qcow2'/></qemu></domain>", &k);
        CHECK(r == 0 && k->qemu->memory_mib == 1024 && streq_ptr(k->qemu->disks[0].format, "qcow2"),
              "KiB/default format: %d", r);
        {
                _cleanup_(domain_config_freep) DomainConfig *a = NULL;

                r = parse("<domain name='a' managed='no'><qmp socket='/q'/><images dir='/i'/></domain>", &a);
                CHECK(r == 0 && !a->qemu && streq_ptr(a->qmp_socket, "/q"), "managed=no: %d", r);
        }
}

static void test_managed_bad(void) {
#define M(body) "<domain name='vm' managed='yes'><images dir='/i'/>" body "</domain>"
        static const struct {
                const char *what;
                const char *xml;
        } cases[] = {
                { "no qemu", M("") },
                { "two qemu", M("<qemu/><qemu/>") },
                { "managed with qmp", M("<qmp socket='/q'/><qemu/>") },
                { "no images", "<domain name='vm' managed='yes'><qemu/></domain>" },
                { "managed=maybe", "<domain name='vm' managed='maybe'><qmp socket='/q'/><images dir='/i'/></domain>" },
                { "bad accel", M("<qemu><accel>hvf</accel></qemu>") },
                { "empty machine", M("<qemu><machine></machine></qemu>") },
                { "empty binary", M("<qemu binary=''/>") },
                { "memory zero", M("<qemu><memory>0</memory></qemu>") },
                { "memory junk", M("<qemu><memory>1G</memory></qemu>") },
                { "memory bad unit", M("<qemu><memory unit='bytes'>1024</memory></qemu>") },
                { "memory below 1 MiB", M("<qemu><memory unit='KiB'>512</memory></qemu>") },
                { "negative memory", M("<qemu><memory>-1</memory></qemu>") },
                { "vcpus zero", M("<qemu><vcpus>0</vcpus></qemu>") },
                { "vcpus 1000", M("<qemu><vcpus>1000</vcpus></qemu>") },
                { "shutdown zero", M("<qemu><shutdown timeout='0'/></qemu>") },
                { "shutdown junk", M("<qemu><shutdown timeout='soon'/></qemu>") },
                { "shutdown too long", M("<qemu><shutdown timeout='86400'/></qemu>") },
                { "disk without target", M("<qemu><disk file='a.qcow2'/></qemu>") },
                { "disk without file", M("<qemu><disk target='vda'/></qemu>") },
                { "disk empty file", M("<qemu><disk target='vda' file=''/></qemu>") },
                { "disk target with comma", M("<qemu><disk target='vda,x=y' file='a'/></qemu>") },
                { "disk target with slash", M("<qemu><disk target='a/b' file='a'/></qemu>") },
                { "disk file with comma", M("<qemu><disk target='vda' file='a,b.qcow2'/></qemu>") },
                { "disk format with option", M("<qemu><disk target='vda' file='a' format='qcow2,file.locking=off'/></qemu>") },
                { "disk empty format", M("<qemu><disk target='vda' file='a' format=''/></qemu>") },
                { "disk serial with comma", M("<qemu><disk target='vda' file='a' serial='a,b'/></qemu>") },
                { "duplicate target", M("<qemu><disk target='vda' file='a'/><disk target='vda' file='b'/></qemu>") },
                { "kernel with comma", M("<qemu><kernel>/boot/a,b</kernel></qemu>") },
                { "empty initrd", M("<qemu><initrd></initrd></qemu>") },
        };
#undef M

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                DomainConfig *c = NULL;
                int r;

                r = parse(cases[i].xml, &c);
                CHECK(r == -EINVAL, "%s: got %d, want -EINVAL", cases[i].what, r);
                domain_config_free(c);
        }
}

static void write_file(const char *dir, const char *name, const char *content) {
        char path[8192];
        FILE *f;

        (void) snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        CHECK(f, "cannot create %s: %m", path);
        if (!f)
                return;
        fputs(content, f);
        fclose(f);
}

static bool strv_contains(char **l, const char *s) {
        for (char **i = l; i && *i; i++)
                if (streq(*i, s))
                        return true;
        return false;
}

static void free_list(DomainConfig **l, size_t n) {
        for (size_t i = 0; i < n; i++)
                domain_config_free(l[i]);
        free(l);
}

static void test_dir(void) {
        char dir[4096], path[8192];
        DomainConfig **list = NULL;
        _cleanup_strv_free_ char **bad = NULL;
        size_t n = 0;
        struct stat st;
        int r;

        (void) snprintf(dir, sizeof(dir), "%s/domains.d", tmpdir);

        /* A missing directory is an empty list. */
        r = domain_config_load_dir(dir, &list, &n, &bad);
        CHECK(r == 0 && n == 0 && bad && !bad[0], "missing dir: %d", r);
        free_list(list, n);
        strv_free(bad);
        bad = NULL;

        {
                DomainConfig c = {
                        .name = (char *) "vm1",
                        .qmp_socket = (char *) "/run/vm1/qmp.sock",
                        .agent_socket = (char *) "/run/vm1/qga.sock",
                        .images_dir = (char *) "/var/lib/snapshotd/images/vm1",
                };

                r = domain_config_save(dir, &c);
                CHECK(r == 0, "save vm1: %s", strerror(-r));
                c.name = (char *) "vm2";
                c.agent_socket = NULL;
                r = domain_config_save(dir, &c);
                CHECK(r == 0, "save vm2: %s", strerror(-r));
                c.name = (char *) "a/b";
                CHECK(domain_config_save(dir, &c) == -EINVAL, "save a/b");
        }
        (void) snprintf(path, sizeof(path), "%s/vm1.xml", dir);
        CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600, "file mode %o", st.st_mode & 07777);

        write_file(dir, "broken.xml", "<domain name='broken'><qmp socket='/q'/>");
        write_file(dir, "relative.xml", "<domain name='relative'><qmp socket='q'/><images dir='/i'/></domain>");
        write_file(dir, "misnamed.xml", "<domain name='other'><qmp socket='/q'/><images dir='/i'/></domain>");
        write_file(dir, "vm3.xml", "<domain name='vm3'><qmp socket='/run/vm3/qmp.sock'/><images dir='/img/vm3'/><managed/></domain>");
        write_file(dir, "README", "not a config");
        write_file(dir, ".vm4.xml.swp", "garbage");

        r = domain_config_load_dir(dir, &list, &n, &bad);
        CHECK(r == 0, "load_dir: %s", strerror(-r));
        CHECK(n == 3, "loaded %zu, want 3 (vm1, vm2, vm3)", n);
        CHECK(bad && strv_contains(bad, "broken.xml") && strv_contains(bad, "relative.xml") &&
              strv_contains(bad, "misnamed.xml") && !bad[3] ? true : false,
              "bad files not reported as expected");
        for (size_t i = 0; i < n; i++) {
                if (streq(list[i]->name, "vm1"))
                        CHECK(streq_ptr(list[i]->agent_socket, "/run/vm1/qga.sock") &&
                              streq_ptr(list[i]->images_dir, "/var/lib/snapshotd/images/vm1"), "vm1 fields");
                else if (streq(list[i]->name, "vm2"))
                        CHECK(!list[i]->agent_socket, "vm2 agent");
                else
                        CHECK(streq(list[i]->name, "vm3"), "unexpected %s", list[i]->name);
        }
        free_list(list, n);
        strv_free(bad);
        bad = NULL;

        /* The caller may not care about bad files. */
        r = domain_config_load_dir(dir, &list, &n, NULL);
        CHECK(r == 0 && n == 3, "load_dir without bad list: %d", r);
        free_list(list, n);

        r = domain_config_remove(dir, "vm2");
        CHECK(r == 0, "remove: %d", r);
        CHECK(domain_config_remove(dir, "vm2") == -ENOENT, "remove twice");
        CHECK(domain_config_remove(dir, "../vm1") == -EINVAL, "remove ../vm1");
        r = domain_config_load_dir(dir, &list, &n, NULL);
        CHECK(r == 0 && n == 2, "after remove: %d %zu", r, n);
        free_list(list, n);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

int main(void) {
        if (!mkdtemp(tmpdir)) {
                fprintf(stderr, "mkdtemp: %m\n");
                return 1;
        }

        test_good();
        test_bad();
        test_managed();
        test_managed_bad();
        test_dir();

        (void) nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);

        if (failures > 0) {
                fprintf(stderr, "%d check(s) failed\n", failures);
                return 1;
        }
        printf("all domain config tests passed\n");
        return 0;
}
