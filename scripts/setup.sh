#!/bin/bash
# Installs what snapshotd needs on Debian 12 (only the packages that are missing), then
# configures and builds it in ./build. Safe to run again: it does only what is left to do.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
        # build
        gcc meson ninja-build pkg-config libsystemd-dev libxml2-dev libjansson-dev
        # run time and the demo: a private bus, QEMU, the guest agent inside the test guest
        dbus-daemon qemu-system-x86 qemu-utils
        # the test guest is built from these at test time
        busybox-static qemu-guest-agent e2fsprogs cpio xz-utils zstd kmod
        # tests: Debian's python with GLib's D-Bus bindings, xmllint, libvirt's schema checker
        python3 python3-gi gir1.2-glib-2.0 libxml2-utils libvirt-clients util-linux
        # fuzzing (tests/fuzz): clang and its libFuzzer/sanitizer runtime
        clang libclang-rt-14-dev
        # polkit and unit checks; valgrind for the sanitize suite's leak check
        polkitd systemd valgrind
        # benchmarks (bench/run draws its plot with it)
        gnuplot-nox
        # man pages (man/*.scd), shell completion, and the remote-host test (a real sshd on 127.0.0.1)
        scdoc bash-completion zsh man-db openssh-server openssh-client
)

missing=()
for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}"
        if [ "$(id -u)" -ne 0 ]; then
                SUDO=sudo
        else
                SUDO=
        fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f build/build.ninja ]; then
        meson setup build --prefix=/usr --sysconfdir=/etc --localstatedir=/var >/dev/null
fi
ninja -C build >/dev/null
echo "setup: built snapshotd in $(pwd)/build"
