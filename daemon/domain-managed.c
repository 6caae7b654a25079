/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Managed domains: the QEMU snapshotd starts (Start, or a revert) and stops itself.
 *
 * Its sockets live in <runtime-dir>/<name>/, its output goes to qemu.log there. The images
 * it runs on change with every external snapshot and revert, so the current one per disk
 * is kept in <state-dir>/domains/<name>.json (atomically rewritten), starting from the
 * config's disks. A managed QEMU outlives snapshotd, as libvirt's guests outlive libvirtd:
 * a restarted daemon finds it through its socket, and its PID through the lock QEMU holds
 * on qemu.pid there. When it is gone, the domain is shut off: no reconnecting. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "domain-managed.h"
#include "domain.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "path-util.h"
#include "xml-util.h"

#define KILL_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define AGENT_PING_TIMEOUT_USEC (2 * USEC_PER_SEC)

extern char **environ;

/* ---- the active disks ---- */

static int active_disks_path(Domain *d, char **ret_dir, char **ret_file) {
        if (asprintf(ret_dir, "%s/domains", d->manager->state_dir) < 0)
                return -ENOMEM;
        if (asprintf(ret_file, "%s.json", domain_name(d)) < 0) {
                free(*ret_dir);
                return -ENOMEM;
        }
        return 0;
}

static int active_disks_save(Domain *d) {
        _cleanup_free_ char *dir = NULL, *file = NULL, *data = NULL;
        json_t *disks = json_array(), *root;
        int r;

        for (size_t i = 0; disks && i < d->n_active; i++)
                json_array_append_new(disks, json_pack("{s:s, s:s, s:s}", "target", d->active[i].target,
                                                       "file", d->active[i].file, "format", d->active[i].format));
        root = json_pack("{s:o}", "disks", disks);
        if (!root)
                return -ENOMEM;
        data = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        if (!data)
                return -ENOMEM;
        r = active_disks_path(d, &dir, &file);
        if (r < 0)
                return r;
        r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        return xml_file_write_atomic(dir, file, data, strlen(data));
}

static void active_disks_clear(Domain *d) {
        for (size_t i = 0; i < d->n_active; i++) {
                free(d->active[i].target);
                free(d->active[i].file);
                free(d->active[i].format);
        }
        free(d->active);
        d->active = NULL;
        d->n_active = 0;
}

static int active_disk_set(Domain *d, const char *target, const char *file, const char *format, bool add) {
        QemuDiskDef *a;

        for (size_t i = 0; i < d->n_active; i++)
                if (streq(d->active[i].target, target)) {
                        char *f = strdup(file), *fmt = strdup(format);

                        if (!f || !fmt) {
                                free(f);
                                free(fmt);
                                return -ENOMEM;
                        }
                        free(d->active[i].file);
                        free(d->active[i].format);
                        d->active[i].file = f;
                        d->active[i].format = fmt;
                        return 0;
                }
        if (!add)
                return -ENOENT;
        a = reallocarray(d->active, d->n_active + 1, sizeof(QemuDiskDef));
        if (!a)
                return -ENOMEM;
        d->active = a;
        a = &d->active[d->n_active];
        a->target = strdup(target);
        a->file = strdup(file);
        a->format = strdup(format);
        if (!a->target || !a->file || !a->format)
                return -ENOMEM;
        d->n_active++;
        return 0;
}

int domain_managed_init(Domain *d) {
        _cleanup_free_ char *dir = NULL, *file = NULL, *data = NULL;
        _cleanup_close_ int dirfd = -1;
        const QemuDef *q = d->config->qemu;
        json_t *root, *disk;
        size_t size = 0, i;
        int r;

        if (!q)
                return 0;

        for (i = 0; i < q->n_disks; i++) {
                r = active_disk_set(d, q->disks[i].target, q->disks[i].file, q->disks[i].format, true);
                if (r < 0)
                        return r;
        }

        r = active_disks_path(d, &dir, &file);
        if (r < 0)
                return r;
        dirfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (dirfd < 0)
                return 0; /* never snapshotted: the config's disks */
        r = xml_file_read(dirfd, file, 1024 * 1024, &data, &size);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        root = json_loadb(data, size, 0, NULL);
        json_array_foreach(json_object_get(root, "disks"), i, disk) {
                const char *t = json_string_value(json_object_get(disk, "target"));
                const char *f = json_string_value(json_object_get(disk, "file"));
                const char *fmt = json_string_value(json_object_get(disk, "format"));

                /* A disk the config dropped since stays dropped. */
                if (t && f && fmt)
                        (void) active_disk_set(d, t, f, fmt, false);
        }
        json_decref(root);
        return 0;
}

void domain_managed_done(Domain *d) {
        active_disks_clear(d);
        sd_event_source_disable_unref(d->child_source);
        d->child_source = NULL;
        sd_event_source_disable_unref(d->stop_timer);
        d->stop_timer = NULL;
}

int domain_set_active_disk(Domain *d, const char *target, const char *file, const char *format) {
        int r;

        if (!d->config->qemu)
                return 0;
        r = active_disk_set(d, target, file, format, false);
        if (r < 0)
                return r;
        return active_disks_save(d);
}

const char *domain_active_disk_file(Domain *d, const char *target) {
        for (size_t i = 0; i < d->n_active; i++)
                if (streq(d->active[i].target, target))
                        return d->active[i].file;
        return NULL;
}

/* ---- launching ---- */

static bool kvm_usable(const char *accel) {
        if (streq(accel, "kvm"))
                return true;
        if (streq(accel, "tcg"))
                return false;
        return access("/sys/module/kvm_intel", F_OK) >= 0 || access("/sys/module/kvm_amd", F_OK) >= 0;
}

static int strv_add(char ***l, size_t *n, const char *fmt, ...) _printf_(3, 4);
static int strv_add(char ***l, size_t *n, const char *fmt, ...) {
        char **a, *s;
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        a = reallocarray(*l, *n + 2, sizeof(char *));
        if (!a) {
                free(s);
                return -ENOMEM;
        }
        *l = a;
        a[(*n)++] = s;
        a[*n] = NULL;
        return 0;
}

int domain_managed_argv(Domain *d, bool incoming, bool paused, char ***ret) {
        const QemuDef *q = d->config->qemu;
        _cleanup_strv_free_ char **a = NULL;
        size_t n = 0;
        int r = 0;

#define ADD(...) do { r = strv_add(&a, &n, __VA_ARGS__); if (r < 0) return r; } while (0)
        ADD("%s", q->binary);
        ADD("-name");
        ADD("%s", domain_name(d));
        ADD("-nodefaults");
        ADD("-no-user-config");
        ADD("-display");
        ADD("none");
        ADD("-machine");
        ADD("%s", q->machine);
        ADD("-accel");
        ADD("%s", kvm_usable(q->accel) ? "kvm" : "tcg");
        ADD("-m");
        ADD("%llu", (unsigned long long) q->memory_mib);
        ADD("-smp");
        ADD("%u", q->vcpus);
        if (q->kernel) {
                ADD("-kernel");
                ADD("%s", q->kernel);
        }
        if (q->initrd) {
                ADD("-initrd");
                ADD("%s", q->initrd);
        }
        if (q->cmdline) {
                ADD("-append");
                ADD("%s", q->cmdline);
        }
        for (size_t i = 0; i < d->n_active; i++) {
                const QemuDiskDef *disk = &d->active[i];

                /* Node names from the target: the disk cache and the tests know them. */
                ADD("-blockdev");
                ADD("driver=file,filename=%s,node-name=%s-file", disk->file, disk->target);
                ADD("-blockdev");
                ADD("driver=%s,file=%s-file,node-name=%s-fmt", disk->format, disk->target, disk->target);
                const char *serial = NULL;

                for (size_t k = 0; k < q->n_disks; k++)
                        if (streq(q->disks[k].target, disk->target))
                                serial = q->disks[k].serial;
                ADD("-device");
                ADD("virtio-blk-pci,drive=%s-fmt,id=%s%s%s", disk->target, disk->target,
                    serial ? ",serial=" : "", strempty(serial));
        }
        /* QEMU holds a lock on its pidfile while it runs: how a restarted snapshotd finds the
         * PID of a QEMU that is no longer its child (managed_qemu_pid()). */
        ADD("-pidfile");
        ADD("%s/%s/qemu.pid", d->manager->runtime_dir, domain_name(d));
        ADD("-chardev");
        ADD("socket,id=snapshotd-qmp,path=%s,server=on,wait=off", d->config->qmp_socket);
        ADD("-mon");
        ADD("chardev=snapshotd-qmp,mode=control");
        if (q->agent && d->config->agent_socket) {
                ADD("-device");
                ADD("virtio-serial-pci,id=snapshotd-vser");
                ADD("-chardev");
                ADD("socket,id=snapshotd-qga,path=%s,server=on,wait=off", d->config->agent_socket);
                ADD("-device");
                ADD("virtserialport,bus=snapshotd-vser.0,chardev=snapshotd-qga,name=org.qemu.guest_agent.0");
        }
        if (incoming) {
                ADD("-incoming");
                ADD("defer");
        }
        if (paused)
                ADD("-S");
        for (char **x = q->args; x && *x; x++)
                ADD("%s", *x);
#undef ADD
        *ret = TAKE_PTR(a);
        return r;
}

/* The PID of the QEMU that runs this domain: our child, or the holder of the lock on its
 * pidfile (a QEMU started by an earlier snapshotd). 0 when none runs. The lock, unlike the
 * PID written in the file, cannot outlive the process, so a recycled PID is never taken. */
static pid_t managed_qemu_pid(Domain *d) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        struct flock fl = {
                .l_type = F_WRLCK,
                .l_whence = SEEK_SET,
        };

        if (d->pid > 0)
                return d->pid;
        if (asprintf(&path, "%s/%s/qemu.pid", d->manager->runtime_dir, domain_name(d)) < 0)
                return 0;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return 0;
        if (fcntl(fd, F_GETLK, &fl) < 0 || fl.l_type == F_UNLCK || fl.l_pid <= 0)
                return 0;
        return fl.l_pid;
}

bool domain_managed_alive(Domain *d) {
        return domain_is_managed(d) && managed_qemu_pid(d) > 0;
}

bool domain_managed_active(Domain *d) {
        return qmp_is_connected(d->qmp) || domain_managed_alive(d);
}

bool domain_managed_busy(Domain *d) {
        return d->pending_start || d->pending_stop || d->stop_timer || d->launch_cb;
}

/* QEMU is gone: its sockets and pidfile go too (qemu.log and the like stay for the user). */
static void managed_remove_runtime_files(Domain *d) {
        _cleanup_free_ char *pidfile = NULL;

        (void) unlink(d->config->qmp_socket);
        if (d->config->agent_socket)
                (void) unlink(d->config->agent_socket);
        if (asprintf(&pidfile, "%s/%s/qemu.pid", d->manager->runtime_dir, domain_name(d)) >= 0)
                (void) unlink(pidfile);
}

void domain_managed_lost(Domain *d) {
        if (domain_managed_alive(d))
                return;
        d->stop_timer = sd_event_source_disable_unref(d->stop_timer);
        managed_remove_runtime_files(d);
        domain_set_state(d, DOMAIN_STATE_SHUTOFF);
        domain_managed_exited(d);
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Domain *d = userdata;

        log_info("Domain '%s': QEMU (PID %d) exited (%s %d).", domain_name(d), (int) si->si_pid,
                 si->si_code == CLD_EXITED ? "status" : "signal", si->si_status);
        d->child_source = sd_event_source_disable_unref(d->child_source);
        d->pid = 0;
        d->stop_timer = sd_event_source_disable_unref(d->stop_timer);
        /* Nothing to reconnect to any more. */
        if (d->reconnect_timer)
                (void) sd_event_source_set_enabled(d->reconnect_timer, SD_EVENT_OFF);
        managed_remove_runtime_files(d);
        domain_set_state(d, DOMAIN_STATE_SHUTOFF);
        domain_managed_exited(d);
        return 0;
}

int domain_managed_spawn(Domain *d, bool incoming, bool paused) {
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *dir = NULL, *log_path = NULL;
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none;
        pid_t pid;
        int r;

        if (asprintf(&dir, "%s/%s", d->manager->runtime_dir, domain_name(d)) < 0 ||
            asprintf(&log_path, "%s/qemu.log", dir) < 0)
                return -ENOMEM;
        r = mkdir_p(dir, 0700);
        if (r < 0)
                return r;
        managed_remove_runtime_files(d);

        r = domain_managed_argv(d, incoming, paused, &argv);
        if (r < 0)
                return r;

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
        posix_spawnattr_init(&attr);
        /* The daemon blocks SIGTERM/SIGINT/SIGCHLD for sd-event: QEMU must not inherit that. */
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSID);
        r = -posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        if (r < 0)
                return r;

        d->pid = pid;
        r = sd_event_add_child(d->manager->event, &d->child_source, pid, WEXITED, on_child, d);
        if (r < 0) {
                (void) kill(pid, SIGKILL);
                d->pid = 0;
                return r;
        }
        log_info("Domain '%s': started QEMU (PID %d)%s%s.", domain_name(d), (int) pid,
                 incoming ? ", waiting for a memory image" : "", paused ? ", paused" : "");
        return 0;
}

/* ---- stopping ---- */

static int on_stop_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Domain *d = userdata;

        d->stop_timer = sd_event_source_disable_unref(d->stop_timer);
        if (d->stop_stage == 0) {
                /* The guest did not shut down in time: make QEMU quit. */
                log_notice("Domain '%s': the guest did not shut down in time; stopping QEMU.", domain_name(d));
                d->stop_stage = 1;
                (void) qmp_call(d->qmp, "quit", NULL, -1, 0, NULL, NULL, NULL);
                (void) sd_event_add_time_relative(d->manager->event, &d->stop_timer, CLOCK_MONOTONIC,
                                                  KILL_TIMEOUT_USEC, 0, on_stop_timeout, d);
        } else {
                pid_t pid = managed_qemu_pid(d);

                if (pid > 0) {
                        log_warning("Domain '%s': QEMU (PID %d) did not quit; killing it.", domain_name(d), (int) pid);
                        (void) kill(pid, SIGKILL);
                }
                /* A QEMU that is not our child ends when its monitor socket closes; one more
                 * look after that, in case the socket was gone already. */
                if (d->pid <= 0 && !qmp_is_connected(d->qmp))
                        domain_managed_lost(d);
        }
        return 0;
}

static void managed_press_power_button(Domain *d) {
        log_info("Domain '%s': pressing the ACPI power button.", domain_name(d));
        (void) qmp_call(d->qmp, "system_powerdown", NULL, -1, 0, NULL, NULL, NULL);
}

static void on_agent_shutdown(Agent *a, json_t *reply, const QmpError *err, void *userdata) {
        Domain *d = userdata;

        /* guest-shutdown does not answer when it works: a timeout or the channel closing
         * is the guest going down. An error reply means the agent refused (or the command
         * is disabled): fall back to the ACPI power button. */
        if (!err || err->error != -EIO || d->stop_stage != 0 || !d->stop_timer)
                return;
        log_info("Domain '%s': the guest agent refused guest-shutdown (%s).", domain_name(d),
                 err->desc ?: "no reason given");
        managed_press_power_button(d);
}

static void on_stop_ping(Agent *a, json_t *reply, const QmpError *err, void *userdata) {
        Domain *d = userdata;

        /* Cancelled (the domain goes away), or the stop moved on (forced, or QEMU is gone). */
        if ((err && err->error == -ECANCELED) || d->stop_stage != 0 || !d->stop_timer)
                return;
        domain_set_has_agent(d, !err);
        if (!err) {
                log_info("Domain '%s': asking the guest agent to shut the guest down.", domain_name(d));
                if (agent_call(d->agent, "guest-shutdown", NULL, USEC_PER_SEC, on_agent_shutdown, d, NULL) >= 0)
                        return;
        }
        managed_press_power_button(d);
}

int domain_managed_stop(Domain *d, bool force) {
        uint64_t timeout = force ? KILL_TIMEOUT_USEC : (uint64_t) d->config->qemu->shutdown_timeout * USEC_PER_SEC;

        d->stop_stage = force ? 1 : 0;
        if (force)
                (void) qmp_call(d->qmp, "quit", NULL, -1, 0, NULL, NULL, NULL);
        /* HasAgent dates from the last contact (often before the guest had booted): ask the
         * agent now, and shut down through it when it answers, else through ACPI. */
        else if (!d->agent || agent_call(d->agent, "guest-ping", NULL, AGENT_PING_TIMEOUT_USEC, on_stop_ping, d, NULL) < 0)
                managed_press_power_button(d);
        d->stop_timer = sd_event_source_disable_unref(d->stop_timer);
        return sd_event_add_time_relative(d->manager->event, &d->stop_timer, CLOCK_MONOTONIC, timeout, 0,
                                          on_stop_timeout, d);
}
