#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The busctl/gdbus cookbook of README.md, as one script that runs every command in it
# against one domain, in an order that works: list, an internal snapshot and a revert to
# it, disk-only snapshots (from options and from XML), a live snapshot with memory while
# `busctl monitor` watches its progress, list, XML, an aborted snapshot, and the deletes
# (newest first) that leave the domain as it was.
#
#   busctl-cookbook.sh DOMAIN
#
# It talks to the system bus; set DBUS_SYSTEM_BUS_ADDRESS to use another one (busctl and
# gdbus both honour it). Needs the rights of org.example.snapshot1.manage (root is fine).
# Every step is echoed; the first failure stops it (set -e).

set -eu

D=${1:?usage: busctl-cookbook.sh DOMAIN}
TMP=$(mktemp -d)
MON=
cleanup() {
        [ -z "$MON" ] || kill "$MON" 2>/dev/null || true
        rm -rf "$TMP"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# The object path in a reply such as: o "/org/example/Snapshot1/domain/vm1"
path_of() { sed -n 's/^o "\(.*\)"$/\1/p'; }

step "List the domains, find one by name, read its properties"
run busctl call org.example.Snapshot1 /org/example/Snapshot1 org.example.Snapshot1.Manager ListDomains
DOM=$(busctl call org.example.Snapshot1 /org/example/Snapshot1 org.example.Snapshot1.Manager GetDomain s "$D" | path_of)
echo "DOM=$DOM"
run busctl get-property org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain State HasAgent Job CurrentSnapshot
run busctl introspect org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain

step "A whole-system snapshot inside the qcow2 images (memory internal), and a revert to it"
# Internal snapshots first: once external overlays sit on top of the images, those images
# are read-only backing files and an internal snapshot in them can be neither loaded nor
# deleted until the overlays are merged down again.
INT=$(busctl --timeout=600 call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain CreateSnapshot 'ssa{sv}' cb-internal "memory and disks inside the images" 1 memory s internal | path_of)
echo "INT=$INT"
run busctl --timeout=600 call org.example.Snapshot1 "$INT" org.example.Snapshot1.Snapshot Revert t 0
run busctl get-property org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain State CurrentSnapshot

step "A disk-only snapshot of every disk, atomic (add 'quiesce b true' with a guest agent)"
run busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain CreateSnapshot 'ssa{sv}' cb-disk "disk-only" 2 disk-only b true atomic b true
echo "Only check whether it could be done, change nothing:"
run busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain CreateSnapshot 'ssa{sv}' cb-check "" 2 disk-only b true validate-only b true

step "The same from libvirt <domainsnapshot> XML (flag DISK_ONLY 16)"
run busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain CreateSnapshotXML st '<domainsnapshot><name>cb-xml</name></domainsnapshot>' 16

step "A live snapshot with memory, its progress watched with busctl monitor"
busctl monitor --match "type='signal',interface='org.example.Snapshot1.Domain',member='Progress'" >"$TMP/progress" 2>&1 &
MON=$!
sleep 1         # let the monitor get its match in place
run busctl --timeout=600 call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain CreateSnapshot 'ssa{sv}' cb-live "" 2 live b true memory s external
sleep 0.5
kill "$MON"
wait "$MON" 2>/dev/null || true
MON=
echo "busctl monitor saw $(grep -c 'Member=Progress' "$TMP/progress") Progress signals; the last one:"
awk '/Member=Progress/ { n = NR } { line[NR] = $0 } END { for (i = n; i <= NR && i < n + 16; i++) print line[i] }' "$TMP/progress"
grep -q 'Member=Progress' "$TMP/progress"

step "One disk only (vda, into an overlay the caller names; vdb left out)"
# Newest of all, and deleted first: the snapshots after it would otherwise have to
# rewrite the vdb image it keeps as it was.
run busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain CreateSnapshot 'ssa{sv}' cb-vda "" 2 disk-only b true disks 'a(sss)' 2 vda external cb-vda-overlay.qcow2 vdb no ""
VDA=$(busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain LookupSnapshot s cb-vda | path_of)
run busctl get-property org.example.Snapshot1 "$VDA" org.example.Snapshot1.Snapshot Disks

step "List the snapshots, look one up, read its properties and its XML"
run busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain ListSnapshots t 0
run busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain ListSnapshots t 1024
LIVE=$(busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain LookupSnapshot s cb-live | path_of)
echo "LIVE=$LIVE"
run busctl get-property org.example.Snapshot1 "$LIVE" org.example.Snapshot1.Snapshot State Memory MemoryFile Disks IsCurrent
run busctl call org.example.Snapshot1 "$LIVE" org.example.Snapshot1.Snapshot GetXMLDesc t 0
run gdbus call --system --dest org.example.Snapshot1 --object-path "$LIVE" --method org.example.Snapshot1.Snapshot.GetXMLDesc 0 >/dev/null
run busctl call org.example.Snapshot1 "$INT" org.example.Snapshot1.Snapshot ListChildren t 1

step "Abort a live snapshot while it runs"
# gdbus prints the error's name (busctl only its message): here ...Error.Aborted.
gdbus call --system --timeout 600 --dest org.example.Snapshot1 --object-path "$DOM" \
        --method org.example.Snapshot1.Domain.CreateSnapshot cb-aborted "" "{'live': <true>, 'memory': <'external'>}" \
        >"$TMP/abort.out" 2>&1 &
CALL=$!
until busctl get-property org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain Job | grep -q snapshot-create; do
        sleep 0.02
done
run busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain AbortJob
if wait "$CALL"; then
        echo "the snapshot was not aborted:" >&2
        cat "$TMP/abort.out" >&2
        exit 1
fi
cat "$TMP/abort.out"
grep -q 'org.example.Snapshot1.Error.Aborted' "$TMP/abort.out"
if busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain LookupSnapshot s cb-aborted 2>/dev/null; then
        echo "the aborted snapshot exists" >&2
        exit 1
fi

step "Delete, newest first: each external snapshot's overlay is merged down"
run busctl --timeout=600 call org.example.Snapshot1 "$VDA" org.example.Snapshot1.Snapshot Delete t 0
run busctl --timeout=600 call org.example.Snapshot1 "$LIVE" org.example.Snapshot1.Snapshot Delete t 0
for s in cb-xml cb-disk cb-internal; do
        P=$(busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain LookupSnapshot s "$s" | path_of)
        run busctl --timeout=600 call org.example.Snapshot1 "$P" org.example.Snapshot1.Snapshot Delete t 0
done
run busctl call org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain ListSnapshots t 0
run busctl get-property org.example.Snapshot1 "$DOM" org.example.Snapshot1.Domain State CurrentSnapshot

step "Done"
