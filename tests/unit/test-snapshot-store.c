/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Snapshot XML: round trip, libvirt input, refusal of hostile documents, libvirt schema
 * validation, and the on-disk store. */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libxml/tree.h>

#include "xml-util.h"
#include "macro.h"
#include "snapshot-store.h"
#include "store-batch.h"

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

#define S(x) ((char *) (x))

static DomainDiskDef dom_disks_two[] = {
        { S("vda"), S("/var/lib/images/vm1/base.qcow2"), S("qcow2"), S("#block123") },
        { S("vdb"), S("/var/lib/images/vm1/data.raw"), S("raw"), S("drive-vdb") },
};
static DomainDiskDef dom_disks_three[] = {
        { S("vda"), S("/img/a.qcow2"), S("qcow2"), NULL },
        { S("vdb"), S("/img/b.qcow2"), NULL, S("nb") },
        { S("vdc"), NULL, NULL, NULL },
};
static SnapshotDiskDef snap_disks_two[] = {
        { S("vda"), SNAPSHOT_LOCATION_EXTERNAL, S("/var/lib/images/vm1/s3.vda.qcow2"), S("qcow2") },
        { S("vdb"), SNAPSHOT_LOCATION_EXTERNAL, S("/var/lib/images/vm1/s3.vdb.qcow2"), S("qcow2") },
};
static SnapshotDiskDef snap_disks_three[] = {
        { S("vda"), SNAPSHOT_LOCATION_EXTERNAL, S("/img/s4.vda.qcow2"), S("qcow2") },
        { S("vdb"), SNAPSHOT_LOCATION_NO, NULL, NULL },
        { S("vdc"), SNAPSHOT_LOCATION_INTERNAL, NULL, NULL },
};

static const SnapshotDef defs[] = {
        /* A root, nothing else said. */
        {
                .name = S("s1"),
                .creation_usec = 1700000000123456ULL,
                .state = S("shutoff"),
        },
        /* With a parent, a description full of markup characters and UTF-8, current. */
        {
                .name = S("s2 größe ✓"),
                .description = S("<tag attr=\"v\"> & 'quotes' ]]> 日本語\r\n\ttab"),
                .parent = S("s1"),
                .creation_usec = 1700000001000000ULL,
                .state = S("running"),
                .memory = SNAPSHOT_LOCATION_INTERNAL,
                .current = true,
                .domain = { S("vm1"), 1048576, 2, NULL, 0 },
        },
        /* External memory, two external disks, domain section with node names. */
        {
                .name = S("s3"),
                .description = S("  leading and trailing space  \n"),
                .parent = S("s2 größe ✓"),
                .creation_usec = 1700000002999999ULL,
                .state = S("running"),
                .memory = SNAPSHOT_LOCATION_EXTERNAL,
                .memory_file = S("/var/lib/images/vm1/s3.mem"),
                .disks = snap_disks_two,
                .n_disks = ELEMENTSOF(snap_disks_two),
                .domain = { S("vm1"), 2097152, 4, dom_disks_two, ELEMENTSOF(dom_disks_two) },
        },
        /* Disk-only, quiesced, mixed disk locations, empty description. */
        {
                .name = S("s4"),
                .description = S(""),
                .parent = S("s3"),
                .creation_usec = 5,
                .state = S("disk-snapshot"),
                .memory = SNAPSHOT_LOCATION_NO,
                .disks = snap_disks_three,
                .n_disks = ELEMENTSOF(snap_disks_three),
                .quiesced = true,
                .current = true,
                .domain = { S("vm-1"), 0, 1, dom_disks_three, ELEMENTSOF(dom_disks_three) },
        },
        /* Whitespace-only description (must not be dropped as "blank"), memory file without
         * a location as libvirt allows, paused. */
        {
                .name = S("s5"),
                .description = S("   \n  "),
                .creation_usec = 999999,
                .state = S("paused"),
                .memory_file = S("/img/s5.mem"),
        },
};

static char tmpdir[] = "/tmp/test-snapshot-store.XXXXXX";
static const char *validator;

static const char *find_in_path(const char *prog) {
        static char buf[4096];
        const char *path = getenv("PATH");
        _cleanup_free_ char *copy = NULL;

        copy = strdup(path ? path : "/usr/bin:/bin");
        if (!copy)
                return NULL;
        for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
                (void) snprintf(buf, sizeof(buf), "%s/%s", dir, prog);
                if (access(buf, X_OK) == 0)
                        return buf;
        }
        return NULL;
}

static void validate(const char *xml, const char *what) {
        char path[4096], log[4096], cmd[3 * 4096];
        FILE *f;
        int r;

        if (!validator)
                return;
        (void) snprintf(path, sizeof(path), "%s/validate.xml", tmpdir);
        (void) snprintf(log, sizeof(log), "%s/validate.log", tmpdir);
        f = fopen(path, "we");
        if (!f) {
                CHECK(false, "cannot write %s: %m", path);
                return;
        }
        fputs(xml, f);
        fclose(f);
        (void) snprintf(cmd, sizeof(cmd), "'%s' '%s' domainsnapshot >'%s' 2>&1", validator, path, log);
        r = system(cmd);
        if (r != 0) {
                CHECK(false, "virt-xml-validate rejects %s (status %d):\n%s", what, r, xml);
                (void) snprintf(cmd, sizeof(cmd), "cat '%s' >&2", log);
                (void) system(cmd);
        }
}

static void test_round_trip(void) {
        for (size_t i = 0; i < ELEMENTSOF(defs); i++) {
                _cleanup_(snapshot_def_freep) SnapshotDef *parsed = NULL, *copy = NULL;
                _cleanup_free_ char *xml = NULL, *xml2 = NULL;
                int r;

                r = snapshot_def_copy(&defs[i], &copy);
                CHECK(r == 0, "copy def %zu: %d", i, r);
                CHECK(copy && snapshot_def_equal(copy, &defs[i]), "copy of def %zu differs", i);

                r = snapshot_xml_format(&defs[i], &xml);
                CHECK(r == 0, "format def %zu: %s", i, strerror(-r));
                if (r < 0)
                        continue;
                r = snapshot_xml_parse(xml, strlen(xml), &parsed);
                CHECK(r == 0, "parse def %zu: %s\n%s", i, strerror(-r), xml);
                if (r < 0)
                        continue;
                CHECK(snapshot_def_equal(parsed, &defs[i]), "round trip of def %zu differs:\n%s", i, xml);
                r = snapshot_xml_format(parsed, &xml2);
                CHECK(r == 0 && streq(xml, xml2), "second format of def %zu differs", i);
                validate(xml, defs[i].name);
        }

        /* equal() must notice differences, or the round trip proves nothing. */
        {
                _cleanup_(snapshot_def_freep) SnapshotDef *c = NULL;

                CHECK(snapshot_def_copy(&defs[2], &c) == 0, "copy");
                c->domain.disks[1].node_name[0] = 'X';
                CHECK(!snapshot_def_equal(c, &defs[2]), "equal ignores node names");
                c->domain.disks[1].node_name[0] = 'd';
                CHECK(snapshot_def_equal(c, &defs[2]), "equal after restore");
                c->creation_usec++;
                CHECK(!snapshot_def_equal(c, &defs[2]), "equal ignores creation time");
        }

        /* Strings XML cannot carry are refused rather than written unparseable. */
        {
                SnapshotDef bad = defs[0];
                char *xml = NULL;

                bad.description = S("bell\a");
                CHECK(snapshot_xml_format(&bad, &xml) == -EINVAL, "control character accepted");
                bad.description = S("\xff\xfe");
                CHECK(snapshot_xml_format(&bad, &xml) == -EINVAL, "invalid UTF-8 accepted");
                bad.description = NULL;
                bad.state = S("sleepy");
                CHECK(snapshot_xml_format(&bad, &xml) == -EINVAL, "unknown state accepted");
                free(xml);
        }
}

static void test_location_table(void) {
        for (SnapshotLocation l = 0; l < _SNAPSHOT_LOCATION_MAX; l++) {
                const char *s = snapshot_location_to_string(l);
                CHECK(s && snapshot_location_from_string(s) == l, "location %d", l);
        }
        CHECK(snapshot_location_from_string("external") == SNAPSHOT_LOCATION_EXTERNAL, "external");
        CHECK(snapshot_location_from_string("") == SNAPSHOT_LOCATION_DEFAULT, "empty");
        CHECK(snapshot_location_from_string("External") == -EINVAL, "case-sensitive");
        CHECK(snapshot_location_from_string("manual") == -EINVAL, "manual");
        CHECK(snapshot_location_to_string(_SNAPSHOT_LOCATION_MAX) == NULL, "out of range");
}

/* Hand-written after libvirt's formatsnapshot documentation: no cookie, a memory size
 * with a unit, a CD-ROM, a <uuid>, pretty-printing whitespace. */
static const char libvirt_sample[] =
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<domainsnapshot>\n"
        "  <name>os-updates</name>\n"
        "  <description>Snapshot of OS install and updates</description>\n"
        "  <state>running</state>\n"
        "  <creationTime>1270477159</creationTime>\n"
        "  <parent>\n"
        "    <name>bare-os-install</name>\n"
        "  </parent>\n"
        "  <memory snapshot='no'/>\n"
        "  <disks>\n"
        "    <disk name='vda' snapshot='external'>\n"
        "      <driver type='qcow2'/>\n"
        "      <source file='/path/to/new'/>\n"
        "    </disk>\n"
        "    <disk name='vdb' snapshot='no'/>\n"
        "  </disks>\n"
        "  <active>1</active>\n"
        "  <domain type='kvm'>\n"
        "    <name>fedora</name>\n"
        "    <uuid>93a5c045-6457-2c09-e56c-927cdf34e178</uuid>\n"
        "    <memory unit='GiB'>1</memory>\n"
        "    <currentMemory unit='KiB'>1048576</currentMemory>\n"
        "    <vcpu placement='static'>2</vcpu>\n"
        "    <os><type arch='x86_64' machine='pc'>hvm</type></os>\n"
        "    <devices>\n"
        "      <disk type='file' device='disk'>\n"
        "        <driver name='qemu' type='raw'/>\n"
        "        <source file='/path/to/old'/>\n"
        "        <target dev='vda' bus='virtio'/>\n"
        "      </disk>\n"
        "      <disk type='block' device='disk'>\n"
        "        <driver name='qemu' type='raw'/>\n"
        "        <source dev='/dev/sdb'/>\n"
        "        <target dev='vdb' bus='virtio'/>\n"
        "      </disk>\n"
        "      <disk type='file' device='cdrom'>\n"
        "        <source file='/iso/boot.iso'/>\n"
        "        <target dev='hdc' bus='ide'/>\n"
        "      </disk>\n"
        "    </devices>\n"
        "  </domain>\n"
        "  <cookie>\n"
        "    <cpu mode='custom' match='exact'><model>qemu64</model></cpu>\n"
        "  </cookie>\n"
        "</domainsnapshot>\n";

static void test_libvirt_sample(void) {
        _cleanup_(snapshot_def_freep) SnapshotDef *d = NULL;
        int r;

        r = snapshot_xml_parse(libvirt_sample, strlen(libvirt_sample), &d);
        CHECK(r == 0, "libvirt sample: %s", strerror(-r));
        if (r < 0)
                return;
        CHECK(streq_ptr(d->name, "os-updates"), "name %s", d->name);
        CHECK(streq_ptr(d->description, "Snapshot of OS install and updates"), "description");
        CHECK(streq_ptr(d->state, "running"), "state");
        CHECK(streq_ptr(d->parent, "bare-os-install"), "parent");
        CHECK(d->creation_usec == 1270477159ULL * 1000000ULL, "creation %" PRIu64, d->creation_usec);
        CHECK(d->memory == SNAPSHOT_LOCATION_NO && !d->memory_file, "memory");
        CHECK(d->current, "active");
        CHECK(!d->quiesced, "quiesced");
        CHECK(d->n_disks == 2, "n_disks %zu", d->n_disks);
        if (d->n_disks == 2) {
                CHECK(streq_ptr(d->disks[0].target, "vda"), "disk 0 target");
                CHECK(d->disks[0].location == SNAPSHOT_LOCATION_EXTERNAL, "disk 0 location");
                CHECK(streq_ptr(d->disks[0].file, "/path/to/new"), "disk 0 file");
                CHECK(streq_ptr(d->disks[0].format, "qcow2"), "disk 0 format");
                CHECK(streq_ptr(d->disks[1].target, "vdb") && d->disks[1].location == SNAPSHOT_LOCATION_NO &&
                      !d->disks[1].file && !d->disks[1].format, "disk 1");
        }
        CHECK(streq_ptr(d->domain.name, "fedora"), "domain name");
        CHECK(d->domain.memory_kib == 1048576, "memory %" PRIu64, d->domain.memory_kib);
        CHECK(d->domain.vcpus == 2, "vcpus %u", d->domain.vcpus);
        CHECK(d->domain.n_disks == 2, "domain disks %zu (CD-ROM must be skipped)", d->domain.n_disks);
        if (d->domain.n_disks == 2) {
                CHECK(streq_ptr(d->domain.disks[0].file, "/path/to/old") &&
                      streq_ptr(d->domain.disks[0].format, "raw") &&
                      streq_ptr(d->domain.disks[0].target, "vda") &&
                      !d->domain.disks[0].node_name, "domain disk 0");
                CHECK(streq_ptr(d->domain.disks[1].file, "/dev/sdb"), "domain disk 1 (block)");
        }
        validate(libvirt_sample, "the libvirt sample");

        /* What we make of it validates too. */
        {
                _cleanup_free_ char *xml = NULL;

                r = snapshot_xml_format(d, &xml);
                CHECK(r == 0, "format libvirt sample: %d", r);
                if (r == 0)
                        validate(xml, "the reformatted libvirt sample");
        }

        /* Units: KB is 1000, k is 1024, bytes round up to whole KiB. */
        {
                static const struct {
                        const char *unit;
                        const char *value;
                        uint64_t kib;
                } units[] = {
                        { "KiB", "7", 7 },
                        { "k", "7", 7 },
                        { "KB", "2048", 2000 },
                        { "MiB", "2", 2048 },
                        { "G", "1", 1048576 },
                        { "bytes", "1025", 2 },
                        { "b", "0", 0 },
                        { "TiB", "1", 1073741824ULL },
                };

                for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                        _cleanup_(snapshot_def_freep) SnapshotDef *u = NULL;
                        char xml[512];

                        (void) snprintf(xml, sizeof(xml),
                                        "<domainsnapshot><domain><name>x</name><memory unit='%s'>%s</memory>"
                                        "</domain></domainsnapshot>", units[i].unit, units[i].value);
                        r = snapshot_xml_parse(xml, strlen(xml), &u);
                        CHECK(r == 0 && u->domain.memory_kib == units[i].kib, "unit %s: r=%d kib=%" PRIu64,
                              units[i].unit, r, u ? u->domain.memory_kib : 0);
                }
        }

        /* <domain> with only a <uuid>: no domain section for us. */
        {
                _cleanup_(snapshot_def_freep) SnapshotDef *u = NULL;
                static const char xml[] = "<domainsnapshot><name>a</name><domain><uuid>93a5c045-6457-2c09-e56c-927cdf34e178</uuid></domain></domainsnapshot>";

                r = snapshot_xml_parse(xml, strlen(xml), &u);
                CHECK(r == 0 && u && !u->domain.name && u->creation_usec == 0, "uuid-only domain: %d", r);
        }
}

static void test_refusals(void) {
        static const struct {
                const char *what;
                const char *xml;
                int error;
        } cases[] = {
                { "billion laughs",
                  "<?xml version='1.0'?>\n"
                  "<!DOCTYPE lolz [\n"
                  " <!ENTITY lol \"lol\">\n"
                  " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
                  " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
                  " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
                  " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
                  " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
                  " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
                  " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
                  " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
                  " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
                  "]>\n"
                  "<domainsnapshot><name>&lol9;</name></domainsnapshot>\n", -EINVAL },
                { "external entity",
                  "<?xml version='1.0'?>\n"
                  "<!DOCTYPE domainsnapshot [ <!ENTITY xxe SYSTEM \"file:///etc/passwd\"> ]>\n"
                  "<domainsnapshot><name>&xxe;</name></domainsnapshot>\n", -EINVAL },
                { "external DTD",
                  "<!DOCTYPE domainsnapshot SYSTEM \"http://example.org/evil.dtd\">\n"
                  "<domainsnapshot><name>x</name></domainsnapshot>\n", -EINVAL },
                { "parameter entity",
                  "<!DOCTYPE d [ <!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p; ]>\n"
                  "<domainsnapshot/>\n", -EINVAL },
                { "empty internal subset", "<!DOCTYPE domainsnapshot []><domainsnapshot/>", -EINVAL },
                { "undeclared entity", "<domainsnapshot><name>&foo;</name></domainsnapshot>", -EINVAL },
                { "unclosed element", "<domainsnapshot><name>x</domainsnapshot>", -EINVAL },
                { "truncated", "<domainsnapshot><name>x</name>", -EINVAL },
                { "empty", "", -EINVAL },
                { "not XML", "{\"name\": \"x\"}", -EINVAL },
                { "two roots", "<domainsnapshot/><domainsnapshot/>", -EINVAL },
                { "wrong root", "<domain><name>x</name></domain>", -EINVAL },
                { "namespaced root", "<domainsnapshot xmlns='urn:x'/>", -EINVAL },
                { "invalid UTF-8", "<domainsnapshot><name>\xff\xfe</name></domainsnapshot>", -EINVAL },
                { "unknown state", "<domainsnapshot><state>sleepy</state></domainsnapshot>", -EINVAL },
                { "bad creationTime", "<domainsnapshot><creationTime>12x</creationTime></domainsnapshot>", -EINVAL },
                { "negative creationTime", "<domainsnapshot><creationTime>-1</creationTime></domainsnapshot>", -EINVAL },
                { "huge creationTime", "<domainsnapshot><creationTime>99999999999999999999</creationTime></domainsnapshot>", -EINVAL },
                { "bad memory location", "<domainsnapshot><memory snapshot='sideways'/></domainsnapshot>", -EINVAL },
                { "empty memory location", "<domainsnapshot><memory snapshot=''/></domainsnapshot>", -EINVAL },
                { "disk without name", "<domainsnapshot><disks><disk snapshot='no'/></disks></domainsnapshot>", -EINVAL },
                { "bad active", "<domainsnapshot><active>yes</active></domainsnapshot>", -EINVAL },
                { "parent without name", "<domainsnapshot><parent/></domainsnapshot>", -EINVAL },
                { "bad memory unit", "<domainsnapshot><domain><name>x</name><memory unit='parsec'>1</memory></domain></domainsnapshot>", -EINVAL },
                { "bad cookie quiesced",
                  "<domainsnapshot><cookie><snapshotd xmlns='" SNAPSHOTD_XML_NS "'><quiesced>maybe</quiesced></snapshotd></cookie></domainsnapshot>",
                  -EINVAL },
        };
        char errpath[4096];
        _cleanup_free_ char *big = NULL;
        struct stat st;
        int saved_stderr, fd;

        /* libxml2 must not print anything: send stderr to a file and look at it after. */
        (void) snprintf(errpath, sizeof(errpath), "%s/stderr.log", tmpdir);
        fflush(stderr);
        saved_stderr = dup(STDERR_FILENO);
        fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (saved_stderr < 0 || fd < 0) {
                CHECK(false, "cannot redirect stderr: %m");
                return;
        }
        (void) dup2(fd, STDERR_FILENO);
        close(fd);

        int results[ELEMENTSOF(cases)];
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                SnapshotDef *d = NULL;

                results[i] = snapshot_xml_parse(cases[i].xml, strlen(cases[i].xml), &d);
                snapshot_def_free(d);
        }

        fflush(stderr);
        (void) dup2(saved_stderr, STDERR_FILENO);
        close(saved_stderr);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                CHECK(results[i] == cases[i].error, "%s: got %d, want %d", cases[i].what, results[i], cases[i].error);
        CHECK(stat(errpath, &st) == 0 && st.st_size == 0, "libxml2 wrote %lld bytes to stderr",
              (long long) st.st_size);
        if (st.st_size > 0) {
                char cmd[4200];
                (void) snprintf(cmd, sizeof(cmd), "head -c 2000 '%s' >&2", errpath);
                (void) system(cmd);
        }

        /* 10 MB: refused on size alone, before parsing. */
        {
                const size_t size = 10 * 1024 * 1024;
                const char *head = "<domainsnapshot><description>";
                const char *tail = "</description></domainsnapshot>";
                SnapshotDef *d = NULL;
                int r;

                big = malloc(size + 1);
                CHECK(big, "malloc");
                if (!big)
                        return;
                memset(big, 'a', size);
                memcpy(big, head, strlen(head));
                memcpy(big + size - strlen(tail), tail, strlen(tail));
                big[size] = 0;
                r = snapshot_xml_parse(big, size, &d);
                CHECK(r == -EFBIG, "10 MB document: got %d", r);
                snapshot_def_free(d);
        }

        /* Just under the bound still parses. */
        {
                const size_t size = SNAPSHOT_XML_MAX_SIZE;
                const char *head = "<domainsnapshot><description>";
                const char *tail = "</description></domainsnapshot>";
                _cleanup_(snapshot_def_freep) SnapshotDef *d = NULL;
                int r;

                memset(big, 'b', size);
                memcpy(big, head, strlen(head));
                memcpy(big + size - strlen(tail), tail, strlen(tail));
                r = snapshot_xml_parse(big, size, &d);
                CHECK(r == 0 && d->description && strlen(d->description) == size - strlen(head) - strlen(tail),
                      "1 MiB document: got %d", r);
        }

        /* The predefined entities and character references are fine. */
        {
                _cleanup_(snapshot_def_freep) SnapshotDef *d = NULL;
                static const char xml[] = "<domainsnapshot><description>&lt;&amp;&gt;&quot;&apos;&#x263A;</description></domainsnapshot>";
                int r;

                r = snapshot_xml_parse(xml, strlen(xml), &d);
                CHECK(r == 0 && streq_ptr(d->description, "<&>\"'\xe2\x98\xba"), "predefined entities: %d", r);
        }
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void write_file(const char *path, const char *content) {
        FILE *f = fopen(path, "we");

        CHECK(f, "cannot create %s: %m", path);
        if (!f)
                return;
        fputs(content, f);
        fclose(f);
}

static SnapshotDef *find_def(SnapshotDef **l, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq_ptr(l[i]->name, name))
                        return l[i];
        return NULL;
}

static void free_list(SnapshotDef **l, size_t n) {
        for (size_t i = 0; i < n; i++)
                snapshot_def_free(l[i]);
        free(l);
}

/* The writer against what libxml2's serializer printed for the same definition (taken from
 * the tree-building formatter this replaced): every escape, empty and self-closed form. */
static const char golden_xml[] =
        "<domainsnapshot>\n"
        "  <name>caf\xc3" "\xa9" "-\xf0" "\x9f" "\x98" "\x80" "</name>\n"
        "  <description>line1\n"
        "line2&#13;\n"
        "&lt;b&gt;&amp;amp;&lt;/b&gt; ]]&gt; \"q\" 'a'\t</description>\n"
        "  <state>running</state>\n"
        "  <parent>\n"
        "    <name>p&amp;q</name>\n"
        "  </parent>\n"
        "  <creationTime>1700000000</creationTime>\n"
        "  <memory snapshot=\"external\" file=\"/img/m&quot;em.mem\"/>\n"
        "  <disks>\n"
        "    <disk name=\"vda\" snapshot=\"external\" type=\"file\">\n"
        "      <driver type=\"qcow2\"/>\n"
        "      <source file=\"/img/a&amp;b&lt;c&gt;d&quot;e'f&#9;g&#10;h&#13;i.qcow2\"/>\n"
        "    </disk>\n"
        "    <disk name=\"vdb\" snapshot=\"internal\"/>\n"
        "    <disk name=\"vdc\">\n"
        "      <driver type=\"qcow2\"/>\n"
        "    </disk>\n"
        "    <disk name=\"vdd\" snapshot=\"no\"/>\n"
        "  </disks>\n"
        "  <active>1</active>\n"
        "  <domain type=\"qemu\">\n"
        "    <name>vm&lt;1&gt;</name>\n"
        "    <memory unit=\"KiB\">1048576</memory>\n"
        "    <vcpu>2</vcpu>\n"
        "    <os>\n"
        "      <type arch=\"x86_64\">hvm</type>\n"
        "    </os>\n"
        "    <devices>\n"
        "      <disk type=\"file\" device=\"disk\">\n"
        "        <driver name=\"qemu\" type=\"qcow2\"/>\n"
        "        <source file=\"/img/caf\xc3" "\xa9" " \xe2" "\x82" "\xac" ".qcow2\"/>\n"
        "        <target dev=\"vda\" bus=\"virtio\"/>\n"
        "      </disk>\n"
        "      <disk type=\"file\" device=\"disk\">\n"
        "        <driver name=\"qemu\"/>\n"
        "        <target dev=\"vdb\" bus=\"virtio\"/>\n"
        "      </disk>\n"
        "    </devices>\n"
        "  </domain>\n"
        "  <cookie>\n"
        "    <snapshotd xmlns=\"https://example.org/snapshotd/1\">\n"
        "      <creation-time>1700000000123456</creation-time>\n"
        "      <quiesced>yes</quiesced>\n"
        "      <disk index=\"0\" target=\"vda\" node-name=\"n&amp;1\"/>\n"
        "    </snapshotd>\n"
        "  </cookie>\n"
        "</domainsnapshot>\n";

static void test_format_golden(void) {
        SnapshotDiskDef disks[] = {
                { .target = S("vda"), .location = SNAPSHOT_LOCATION_EXTERNAL,
                  .file = S("/img/a&b<c>d\"e'f\tg\nh\ri.qcow2"), .format = S("qcow2") },
                { .target = S("vdb"), .location = SNAPSHOT_LOCATION_INTERNAL },
                { .target = S("vdc"), .location = SNAPSHOT_LOCATION_DEFAULT, .format = S("qcow2") },
                { .target = S("vdd"), .location = SNAPSHOT_LOCATION_NO },
        };
        DomainDiskDef ddisks[] = {
                { .target = S("vda"), .file = S("/img/caf\xc3\xa9 \xe2\x82\xac.qcow2"), .format = S("qcow2"),
                  .node_name = S("n&1") },
                { .target = S("vdb") },
        };
        SnapshotDef d = {
                .name = S("caf\xc3\xa9-\xf0\x9f\x98\x80"),
                .description = S("line1\nline2\r\n<b>&amp;</b> ]]> \"q\" 'a'\t"),
                .parent = S("p&q"), .state = S("running"), .creation_usec = 1700000000123456ULL,
                .memory = SNAPSHOT_LOCATION_EXTERNAL, .memory_file = S("/img/m\"em.mem"),
                .disks = disks, .n_disks = 4, .current = true, .quiesced = true,
                .domain = { .name = S("vm<1>"), .memory_kib = 1048576, .vcpus = 2, .disks = ddisks, .n_disks = 2 },
        };
        _cleanup_free_ char *xml = NULL;
        int r;

        r = snapshot_xml_format(&d, &xml);
        CHECK(r == 0 && streq(xml, golden_xml), "format differs from libxml2's:\n%s", xml ?: "(none)");
}

/* Packed definitions (what the loader keeps): equal to their source, and their strings can
 * still be replaced and the whole freed (under ASan/valgrind this catches a free() of a
 * string inside the pack). */
static void test_pack(void) {
        for (size_t i = 0; i < ELEMENTSOF(defs); i++) {
                _cleanup_(snapshot_def_freep) SnapshotDef *p = NULL, *c = NULL;
                int r;

                r = snapshot_def_pack(&defs[i], &p);
                CHECK(r == 0 && p && p->pack_end, "pack def %zu: %d", i, r);
                if (r < 0)
                        continue;
                CHECK(snapshot_def_equal(p, &defs[i]), "packed def %zu differs", i);

                CHECK(snapshot_def_copy(p, &c) == 0 && !c->pack_end, "copy of a packed def is not packed");
                CHECK(snapshot_def_set_string(p, &p->parent, "new-parent") == 0, "set parent");
                CHECK(snapshot_def_set_string(c, &c->parent, "new-parent") == 0, "set parent of copy");
                if (p->domain.n_disks > 0) {
                        CHECK(snapshot_def_set_string(p, &p->domain.disks[0].file, "/new/base.qcow2") == 0, "set file");
                        CHECK(snapshot_def_set_string(c, &c->domain.disks[0].file, "/new/base.qcow2") == 0, "set file");
                }
                CHECK(snapshot_def_equal(p, c), "packed def %zu after set_string differs from its copy", i);
                /* Replacing a string that was already replaced frees the first replacement. */
                CHECK(snapshot_def_set_string(p, &p->parent, NULL) == 0 && !p->parent, "set parent NULL");
        }
}

/* A directory big enough for the loader to split between two threads, bad files among the
 * good ones in both halves. */
static void test_store_many(void) {
        char state[4096], path[8400];
        SnapshotDef **list = NULL;
        size_t n = 0, n_bad = 0, n_packed = 0;
        int r;

        (void) snprintf(state, sizeof(state), "%s/state", tmpdir);
        for (size_t i = 0; i < 150; i++) {
                SnapshotDef d = defs[i % ELEMENTSOF(defs)];
                char name[32];

                (void) snprintf(name, sizeof(name), "bulk%03zu", i);
                d.name = name;
                r = snapshot_store_save(state, "many", &d);
                CHECK(r == 0, "save %s: %d", name, r);
        }
        for (size_t i = 0; i < 6; i++) {
                (void) snprintf(path, sizeof(path), "%s/snapshots/many/junk%zu.xml", state, i);
                write_file(path, "<domainsnapshot><name>junk</name");
        }

        r = snapshot_store_load(state, "many", &list, &n, &n_bad);
        CHECK(r == 0 && n == 150 && n_bad == 6, "load many: r=%d n=%zu bad=%zu", r, n, n_bad);
        for (size_t i = 0; i < 150; i++) {
                SnapshotDef want = defs[i % ELEMENTSOF(defs)], *got;
                char name[32];

                (void) snprintf(name, sizeof(name), "bulk%03zu", i);
                want.name = name;
                got = find_def(list, n, name);
                CHECK(got && snapshot_def_equal(got, &want), "loaded %s differs", name);
        }
        for (size_t i = 0; i < n; i++)
                n_packed += list[i]->pack_end != NULL;
        CHECK(n_packed == n, "%zu of %zu loaded definitions packed", n_packed, n);
        free_list(list, n);
}

static size_t count_tmp(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        while (d && (de = readdir(d)))
                n += strncmp(de->d_name, ".tmp-", 5) == 0;
        if (d)
                closedir(d);
        return n;
}

static void test_store(void) {
        char state[4096], dir[8192], path[16384];
        SnapshotDef **list = NULL;
        size_t n = 0, n_bad = 0;
        struct stat st;
        int r;

        (void) snprintf(state, sizeof(state), "%s/state", tmpdir);
        (void) snprintf(dir, sizeof(dir), "%s/snapshots/vm1", state);

        /* Nothing saved yet: an empty list, not an error. */
        r = snapshot_store_load(state, "vm1", &list, &n, &n_bad);
        CHECK(r == 0 && n == 0 && n_bad == 0, "load of missing dir: %d", r);
        free_list(list, n);

        for (size_t i = 0; i < ELEMENTSOF(defs); i++) {
                r = snapshot_store_save(state, "vm1", &defs[i]);
                CHECK(r == 0, "save %s: %s", defs[i].name, strerror(-r));
        }
        /* Saving again replaces. */
        r = snapshot_store_save(state, "vm1", &defs[0]);
        CHECK(r == 0, "re-save: %d", r);

        CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700, "dir mode %o", st.st_mode & 07777);
        (void) snprintf(path, sizeof(path), "%s/s1.xml", dir);
        CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600 && S_ISREG(st.st_mode),
              "file mode %o", st.st_mode & 07777);

        /* Junk the loader must skip (counted) or ignore (not counted). */
        (void) snprintf(path, sizeof(path), "%s/corrupt.xml", dir);
        write_file(path, "<domainsnapshot><name>corrupt</name");
        (void) snprintf(path, sizeof(path), "%s/renamed.xml", dir);
        write_file(path, "<domainsnapshot><name>other</name></domainsnapshot>");
        (void) snprintf(path, sizeof(path), "%s/evil.xml", dir);
        write_file(path, "<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><domainsnapshot><name>evil</name></domainsnapshot>");
        (void) snprintf(path, sizeof(path), "%s/.tmp-abcdef", dir);
        write_file(path, "<domainsnapshot><name>.tmp-abcdef</name");
        (void) snprintf(path, sizeof(path), "%s/.hidden.xml", dir);
        write_file(path, "garbage");
        (void) snprintf(path, sizeof(path), "%s/notes.txt", dir);
        write_file(path, "garbage");
        (void) snprintf(path, sizeof(path), "%s/fifo.xml", dir);
        CHECK(mkfifo(path, 0600) == 0, "mkfifo: %m");
        (void) snprintf(path, sizeof(path), "%s/link.xml", dir);
        CHECK(symlink("s1.xml", path) == 0, "symlink: %m");

        r = snapshot_store_load(state, "vm1", &list, &n, &n_bad);
        CHECK(r == 0, "load: %s", strerror(-r));
        CHECK(n == ELEMENTSOF(defs), "loaded %zu, want %zu", n, ELEMENTSOF(defs));
        CHECK(n_bad == 5, "bad %zu, want 5 (corrupt, renamed, evil, fifo, symlink)", n_bad);
        for (size_t i = 0; i < ELEMENTSOF(defs); i++) {
                SnapshotDef *d = find_def(list, n, defs[i].name);
                CHECK(d && snapshot_def_equal(d, &defs[i]), "loaded %s differs", defs[i].name);
        }
        free_list(list, n);
        /* A crash's temporary file went with the load; other hidden files are not ours. */
        (void) snprintf(path, sizeof(path), "%s/.tmp-abcdef", dir);
        CHECK(access(path, F_OK) < 0 && errno == ENOENT, "load left %s", path);
        (void) snprintf(path, sizeof(path), "%s/.hidden.xml", dir);
        CHECK(access(path, F_OK) == 0, "load removed %s", path);

        r = snapshot_store_remove(state, "vm1", "s3");
        CHECK(r == 0, "remove: %d", r);
        r = snapshot_store_remove(state, "vm1", "s3");
        CHECK(r == -ENOENT, "remove twice: %d", r);
        r = snapshot_store_load(state, "vm1", &list, &n, NULL);
        CHECK(r == 0 && n == ELEMENTSOF(defs) - 1 && !find_def(list, n, "s3"), "load after remove: %d %zu", r, n);
        free_list(list, n);

        /* Other domains are separate. */
        r = snapshot_store_load(state, "vm2", &list, &n, &n_bad);
        CHECK(r == 0 && n == 0, "other domain: %d %zu", r, n);
        free_list(list, n);

        /* Names that would escape the directory or not fit a file name. */
        {
                SnapshotDef d = defs[0];
                char longname[256];

                d.name = S("../escape");
                CHECK(snapshot_store_save(state, "vm1", &d) == -EINVAL, "../ accepted");
                d.name = S(".hidden");
                CHECK(snapshot_store_save(state, "vm1", &d) == -EINVAL, "leading dot accepted");
                d.name = NULL;
                CHECK(snapshot_store_save(state, "vm1", &d) == -EINVAL, "no name accepted");
                CHECK(snapshot_store_save(state, "../x", &defs[0]) == -EINVAL, "bad domain accepted");
                CHECK(snapshot_store_remove(state, "vm1", "a/b") == -EINVAL, "remove a/b");
                memset(longname, 'n', 252);
                longname[252] = 0;
                d.name = longname;
                CHECK(snapshot_store_save(state, "vm1", &d) == -ENAMETOOLONG, "252-byte name");
                longname[251] = 0;
                CHECK(snapshot_store_save(state, "vm1", &d) == 0, "251-byte name");
        }

        /* No temporary file left behind. */
        CHECK(count_tmp(dir) == 0, "temporary files left in %s", dir);
}

/* Staged records: invisible to the loader until committed, gone if dropped. */
static void test_staged(void) {
        char state[4096], dir[8192];
        StagedRecord *a = NULL, *b = NULL;
        SnapshotDef **list = NULL;
        size_t n = 0;
        int r;

        (void) snprintf(state, sizeof(state), "%s/staged", tmpdir);
        (void) snprintf(dir, sizeof(dir), "%s/snapshots/vm1", state);

        r = snapshot_store_stage(state, "vm1", &defs[0], &a);
        CHECK(r == 0 && a, "stage: %d", r);
        r = snapshot_store_stage(state, "vm1", &defs[1], &b);
        CHECK(r == 0 && b, "stage: %d", r);
        CHECK(count_tmp(dir) == 2, "two temporary files");
        r = snapshot_store_load(state, "vm1", &list, &n, NULL);
        free_list(list, n);
        /* (the load, as after a crash, removed them: stage again) */
        CHECK(r == 0 && n == 0 && count_tmp(dir) == 0, "staged records loaded: %d %zu", r, n);
        a = staged_record_free(a);
        b = staged_record_free(b);

        CHECK(snapshot_store_stage(state, "vm1", &defs[0], &a) == 0, "stage again");
        CHECK(snapshot_store_stage(state, "vm1", &defs[1], &b) == 0, "stage again");
        CHECK(staged_record_commit(a) == 0, "commit");
        CHECK(staged_record_commit(a) == -EINVAL, "commit twice");
        CHECK(staged_record_sync(a) == 0, "sync");
        a = staged_record_free(a);
        b = staged_record_free(b);      /* dropped: its file goes */
        CHECK(count_tmp(dir) == 0, "a dropped record left its file");
        r = snapshot_store_load(state, "vm1", &list, &n, NULL);
        CHECK(r == 0 && n == 1 && snapshot_def_equal(list[0], &defs[0]), "after commit: %d %zu", r, n);
        free_list(list, n);

        CHECK(snapshot_store_stage(state, "../x", &defs[0], &a) == -EINVAL && !a, "bad domain staged");
}

/* store-batch.c: the end state of several changes written as one. */
static void test_batch(void) {
        char state[4096], dir[8192];
        SnapshotDef two = defs[1];
        SnapshotDef **list = NULL;
        StoreBatch *b;
        size_t n = 0;
        int r;

        (void) snprintf(state, sizeof(state), "%s/batch", tmpdir);
        (void) snprintf(dir, sizeof(dir), "%s/snapshots/vm1", state);
        CHECK(snapshot_store_save(state, "vm1", &defs[0]) == 0, "save s1");
        CHECK(snapshot_store_save(state, "vm1", &defs[1]) == 0, "save s2");

        /* s2 moves to the root (its parent forgotten); s1 is saved, then removed: the
         * removal wins; a record that is not there is no error. */
        two.parent = NULL;
        b = store_batch_new(state, "vm1");
        CHECK(b && store_batch_empty(b), "new batch is empty");
        CHECK(store_batch_run(b) == 0, "empty batch runs");
        CHECK(store_batch_save(b, &defs[1]) == 0, "queue s2 as it was");
        CHECK(store_batch_save(b, &two) == 0, "queue s2 re-parented: replaces");
        CHECK(store_batch_save(b, &defs[0]) == 0, "queue s1");
        CHECK(store_batch_remove(b, "s1") == 0, "remove s1");
        CHECK(store_batch_remove(b, "never-there") == 0, "remove a missing one");
        CHECK(!store_batch_empty(b), "not empty");
        CHECK(store_batch_run(b) == -EINVAL, "not sealed: refused");
        CHECK(store_batch_seal(b) == 0, "seal");
        r = store_batch_run(b);
        CHECK(r == 0, "run: %d", r);
        b = store_batch_free(b);
        CHECK(count_tmp(dir) == 0, "no temporary file left");
        r = snapshot_store_load(state, "vm1", &list, &n, NULL);
        CHECK(r == 0 && n == 1 && snapshot_def_equal(list[0], &two), "after the batch: %d %zu", r, n);
        free_list(list, n);

        /* A record it cannot write (a bad name) fails the run before anything changes. */
        b = store_batch_new(state, "vm1");
        CHECK(store_batch_remove(b, two.name) == 0, "remove s2");
        CHECK(store_batch_save(b, &(SnapshotDef) { .name = (char *) "../x" }) == 0, "a bad name, queued");
        CHECK(store_batch_seal(b) < 0, "a bad name fails the seal");
        CHECK(store_batch_run(b) == 0, "the rest runs; the bad one is left alone");
        b = store_batch_free(b);
        r = snapshot_store_load(state, "vm1", &list, &n, NULL);
        CHECK(r == 0 && n == 0, "all gone: %d %zu", r, n);
        free_list(list, n);
}

/* xml_file_read_into(): one buffer over files of different sizes, and what it refuses. */
static void test_read_into(void) {
        char dir[512], path[600], big[9000];
        XmlReadBuffer b = {};
        int dfd, r;

        snprintf(dir, sizeof(dir), "%s/read-into", tmpdir);
        CHECK(mkdir(dir, 0700) == 0, "mkdir: %m");
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(dfd >= 0, "open: %m");
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        (void) snprintf(path, sizeof(path), "%s/big", dir);
        write_file(path, big);
        (void) snprintf(path, sizeof(path), "%s/small", dir);
        write_file(path, "<a/>");
        (void) snprintf(path, sizeof(path), "%s/empty", dir);
        write_file(path, "");
        CHECK(mkfifoat(dfd, "fifo", 0600) == 0, "mkfifo: %m");
        CHECK(mkdirat(dfd, "sub", 0700) == 0, "mkdirat: %m");

        r = xml_file_read_into(dfd, "small", 100, &b);
        CHECK(r == 0 && b.size == 4 && streq(b.data, "<a/>"), "small: %d %zu", r, b.size);
        r = xml_file_read_into(dfd, "big", sizeof(big), &b);
        CHECK(r == 0 && b.size == sizeof(big) - 1 && streq(b.data, big), "big: %d %zu", r, b.size);
        /* back to a small file in the grown buffer: its own size, not the last one's */
        r = xml_file_read_into(dfd, "small", 100, &b);
        CHECK(r == 0 && b.size == 4 && streq(b.data, "<a/>"), "small again: %d %zu", r, b.size);
        r = xml_file_read_into(dfd, "empty", 100, &b);
        CHECK(r == 0 && b.size == 0 && b.data[0] == 0, "empty: %d %zu", r, b.size);
        CHECK(xml_file_read_into(dfd, "big", 100, &b) == -EFBIG, "big over the limit");
        CHECK(xml_file_read_into(dfd, "fifo", 100, &b) == -EBADFD, "fifo");
        CHECK(xml_file_read_into(dfd, "sub", 100, &b) == -EISDIR, "directory");
        CHECK(xml_file_read_into(dfd, "missing", 100, &b) == -ENOENT, "missing");
        xml_read_buffer_done(&b);
        CHECK(!b.data && b.alloc == 0, "done resets the buffer");
        close(dfd);
}

int main(void) {
        if (!mkdtemp(tmpdir)) {
                fprintf(stderr, "mkdtemp: %m\n");
                return 1;
        }
        validator = find_in_path("virt-xml-validate");
        if (!validator)
                printf("note: virt-xml-validate not found (Debian libvirt-clients); schema checks skipped\n");
        else
                validator = strdup(validator);

        test_location_table();
        test_round_trip();
        test_pack();
        test_format_golden();
        test_libvirt_sample();
        test_refusals();
        test_store();
        test_staged();
        test_store_many();
        test_read_into();
        test_batch();

        (void) nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);

        if (failures > 0) {
                fprintf(stderr, "%d check(s) failed\n", failures);
                return 1;
        }
        printf("all snapshot store tests passed%s\n", validator ? " (schema-validated)" : "");
        return 0;
}
