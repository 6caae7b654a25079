#!/bin/bash
# Builds the small Linux test guest from Debian packages:
#
#   OUTDIR/vmlinuz            kernel from linux-image-cloud-amd64 (downloaded, not installed)
#   OUTDIR/initramfs.cpio.gz  busybox-static + qemu-ga + virtio modules + /init
#   OUTDIR/data1.qcow2        ext4 data disk template (serial data1 in the tests)
#   OUTDIR/data2.qcow2        ext4 data disk template (serial data2 in the tests)
#   OUTDIR/stamp              written last; holds a hash of this script
#
# Idempotent and cached: when OUTDIR/stamp matches this script, nothing is done.
# Concurrent callers serialize on OUTDIR/.lock.
#
# Needs (Debian): busybox-static qemu-guest-agent e2fsprogs cpio qemu-utils, apt-get
# able to download linux-image-cloud-amd64.
set -euo pipefail

if [ $# -ne 1 ]; then
        echo "usage: $0 OUTDIR" >&2
        exit 2
fi

outdir=$1
script=$(readlink -f "$0")
script_hash=$(sha256sum "$script" | cut -d' ' -f1)
mkdir -p "$outdir"
outdir=$(readlink -f "$outdir")

is_complete() {
        [ -f "$outdir/stamp" ] && [ "$(cat "$outdir/stamp")" = "$script_hash" ] &&
                [ -s "$outdir/vmlinuz" ] && [ -s "$outdir/initramfs.cpio.gz" ] &&
                [ -s "$outdir/data1.qcow2" ] && [ -s "$outdir/data2.qcow2" ]
}

if is_complete; then
        exit 0
fi

exec 9>"$outdir/.lock"
flock 9
# Another builder may have finished while we waited for the lock.
if is_complete; then
        exit 0
fi
rm -f "$outdir/stamp"

for tool in busybox qemu-ga mkfs.ext4 cpio qemu-img dpkg-deb apt-get apt-cache gzip; do
        p=$tool
        case $tool in
                busybox) p=/bin/busybox ;;
                qemu-ga) p=/usr/sbin/qemu-ga ;;
                mkfs.ext4) p=/usr/sbin/mkfs.ext4 ;;
        esac
        if ! command -v "$p" >/dev/null; then
                echo "build-guest: missing '$tool' (apt-get install busybox-static qemu-guest-agent e2fsprogs cpio qemu-utils)" >&2
                exit 1
        fi
done
if ! /bin/busybox --list | grep -x insmod >/dev/null; then
        echo "build-guest: /bin/busybox is not busybox-static (no insmod applet)" >&2
        exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/build-guest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- kernel -----------------------------------------------------------------------------
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
if [ -z "$kpkg" ]; then
        echo "build-guest: cannot resolve linux-image-cloud-amd64 (run apt-get update?)" >&2
        exit 1
fi
mkdir -p "$tmp/deb" "$tmp/kernel"
# apt drops privileges to _apt for downloads; a root-only temp dir only makes it warn.
chmod 755 "$tmp"; chmod 777 "$tmp/deb"
(cd "$tmp/deb" && apt-get download -q "$kpkg" >/dev/null)
dpkg-deb -x "$tmp"/deb/*.deb "$tmp/kernel"
kver=${kpkg#linux-image-}
cp "$tmp/kernel/boot/vmlinuz-$kver" "$tmp/vmlinuz"

# --- initramfs --------------------------------------------------------------------------
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/qemu,etc/acpi/PWRF,proc,sys,dev,run,tmp,mem,data1,data2,lib/modules,var}
ln -s ../run "$root/var/run"
chmod 1777 "$root/tmp"

cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] && continue
        [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# Modules, in dependency order; Debian may ship them compressed, busybox's insmod
# wants them plain.
modules="virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio virtio_pci virtio_blk virtio_console button evdev"
for m in $modules; do
        f=$(find "$tmp/kernel/lib/modules/$kver" -name "$m.ko*" | head -n1)
        if [ -z "$f" ]; then
                echo "build-guest: module $m not found in $kpkg" >&2
                exit 1
        fi
        case $f in
                *.ko) cp "$f" "$root/lib/modules/$m.ko" ;;
                *.ko.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
                *.ko.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
                *.ko.gz) gzip -dc "$f" >"$root/lib/modules/$m.ko" ;;
                *) echo "build-guest: unknown module format $f" >&2; exit 1 ;;
        esac
done
echo "$modules" >"$root/etc/modules"

# qemu-ga and the libraries it links against, at the same paths (incl. the loader).
cp /usr/sbin/qemu-ga "$root/usr/sbin/qemu-ga"
for lib in $(ldd /usr/sbin/qemu-ga | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
done

cat >"$root/etc/qemu/fsfreeze-hook" <<'EOF'
#!/bin/sh
# qemu-ga runs this with "freeze" before freezing and "thaw" after thawing; its own
# stdout is /dev/null, so tell the tests through the console.
echo "FSFREEZE-HOOK $1" >/dev/console
exit 0
EOF

# qemu-ga's guest-shutdown runs /sbin/shutdown -P|-H|-r +0.
cat >"$root/sbin/shutdown" <<'EOF'
#!/bin/sh
echo "GUEST-SHUTDOWN $*" >/dev/console
case " $* " in
        *" -r "*) exec reboot ;;
        *" -H "*) exec halt ;;
        *) exec poweroff ;;
esac
EOF

# ACPI power button (QMP system_powerdown): busybox acpid runs this.
cat >"$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "GUEST-SHUTDOWN acpi" >/dev/console
exec poweroff
EOF

cat >"$root/init" <<'EOF'
#!/bin/sh
# PID 1 of the test guest: no udev, so do by hand what the tests need, then hand over
# to busybox init (it reaps, respawns qemu-ga, and handles poweroff).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /dev/virtio-ports
mount -t devpts devpts /dev/pts

arg() {
        for w in $(cat /proc/cmdline); do
                case $w in "$1"=*) echo "${w#*=}"; return ;; esac
        done
        echo "$2"
}

for m in $(cat /etc/modules); do
        insmod "/lib/modules/$m.ko" || echo "GUEST-ERROR insmod $m" >/dev/console
done

# Virtio port names arrive from the host after the port itself; wait for them.
i=0
while [ $i -lt 50 ]; do
        for p in /sys/class/virtio-ports/*; do
                [ -r "$p/name" ] || continue
                name=$(cat "$p/name")
                [ -n "$name" ] && ln -sf "/dev/${p##*/}" "/dev/virtio-ports/$name"
        done
        [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ] && break
        i=$((i + 1))
        usleep 100000
done

ndisks=$(arg disks 2)
i=0
while [ $i -lt 50 ]; do
        found=0
        for b in /sys/block/vd*; do
                [ -r "$b/serial" ] || continue
                case $(cat "$b/serial") in data1|data2) found=$((found + 1)) ;; esac
        done
        [ $found -ge "$ndisks" ] && break
        i=$((i + 1))
        usleep 100000
done
for b in /sys/block/vd*; do
        [ -r "$b/serial" ] || continue
        serial=$(cat "$b/serial")
        case $serial in
                data1|data2)
                        mount -t ext4 "/dev/${b##*/}" "/$serial" ||
                                echo "GUEST-ERROR mount $serial" >/dev/console
                        ;;
        esac
done

mount -t tmpfs -o mode=0755 mem /mem
echo "dirty_mb=$(arg dirty_mb 16)" >/run/workload.conf

cat >/etc/inittab <<EOT
::respawn:/usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -F/etc/qemu/fsfreeze-hook -t /run
::once:/etc/workload.sh
::once:/bin/acpid -c /etc/acpi -l /run/acpid.log
::shutdown:/etc/shutdown.sh
EOT
exec /bin/init
EOF

cat >"$root/etc/workload.sh" <<'EOF'
#!/bin/sh
# The guest's workload, started by init once qemu-ga is on its way:
#  /data1/counter.log  one line appended and fsync'ed per tick (crash-consistency checks)
#  /data2/rewrite.dat  rewritten in place and fsync'ed every tick
#  /mem/dirty          dirty_mb MiB of tmpfs rewritten continuously (live-save load)
#  /mem/counter        an in-RAM counter, only a memory snapshot keeps it
. /run/workload.conf

# qemu-ga is up once it holds its virtio port open.
i=0
while [ $i -lt 100 ]; do
        pid=$(pidof qemu-ga)
        if [ -n "$pid" ] && ls -l /proc/$pid/fd 2>/dev/null | grep -q vport; then
                echo "GUEST-READY" >/dev/console
                break
        fi
        i=$((i + 1))
        usleep 50000
done
[ $i -lt 100 ] || echo "GUEST-ERROR qemu-ga did not start" >/dev/console

if grep -q " /data1 " /proc/mounts; then
        (
                n=$(tail -n1 /data1/counter.log 2>/dev/null | cut -d' ' -f1)
                n=${n:-0}
                while :; do
                        n=$((n + 1))
                        echo "$n $(cat /proc/uptime)" >>/data1/counter.log
                        sync /data1/counter.log
                        usleep 100000
                done
        ) &
fi

if grep -q " /data2 " /proc/mounts; then
        (
                n=0
                while :; do
                        n=$((n + 1))
                        printf '%s\n' "$n" | dd of=/data2/rewrite.dat bs=4096 conv=notrunc,fsync 2>/dev/null
                        usleep 200000
                done
        ) &
fi

(
        n=0
        while :; do
                n=$((n + 1))
                echo "$n" >/mem/counter
                usleep 100000
        done
) &

if [ "${dirty_mb:-0}" -gt 0 ]; then
        (
                # Random content (QEMU sends zero pages for almost nothing), from two
                # seeds in turn so that every pass really changes every page.
                dd if=/dev/urandom of=/mem/seed0 bs=1M count=1 2>/dev/null
                dd if=/dev/urandom of=/mem/seed1 bs=1M count=1 2>/dev/null
                pass=0
                while :; do
                        i=0
                        while [ $i -lt "$dirty_mb" ]; do
                                dd if=/mem/seed$((pass % 2)) of=/mem/dirty bs=1M seek=$i count=1 conv=notrunc 2>/dev/null
                                i=$((i + 1))
                        done
                        pass=$((pass + 1))
                        echo "$pass" >/mem/dirty-passes
                done
        ) &
fi
wait
EOF

cat >"$root/etc/shutdown.sh" <<'EOF'
#!/bin/sh
sync
umount /data1 /data2 2>/dev/null
echo "GUEST-POWEROFF" >/dev/console
EOF

chmod 755 "$root/init" "$root/etc/workload.sh" "$root/etc/shutdown.sh" \
        "$root/etc/qemu/fsfreeze-hook" "$root/sbin/shutdown" "$root/etc/acpi/PWRF/00000080"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 >"$tmp/initramfs.cpio.gz"

# --- data disks ---------------------------------------------------------------------------
for d in data1 data2; do
        mkdir -p "$tmp/$d"
        echo "$d" >"$tmp/$d/disk-name"
        truncate -s 64M "$tmp/$d.raw"
        mkfs.ext4 -q -F -L "$d" -d "$tmp/$d" "$tmp/$d.raw"
        qemu-img convert -f raw -O qcow2 "$tmp/$d.raw" "$tmp/$d.qcow2"
done

for f in vmlinuz initramfs.cpio.gz data1.qcow2 data2.qcow2; do
        mv -f "$tmp/$f" "$outdir/$f"
done
echo "$kpkg" >"$outdir/kernel-package"
echo "$script_hash" >"$outdir/stamp.tmp"
sync "$outdir"/*
mv -f "$outdir/stamp.tmp" "$outdir/stamp"
