# The demo behind scripts/demo.sh: a private system-type bus, the built snapshotd, and the
# test guest (two virtio disks, qemu-ga, a workload writing to both disks), driven with
# snapshotctl as a user would. Set SNAPSHOTD_DEMO_KEEP=1 to keep it running until Enter.
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import snaptest

CTL = os.environ["SNAPSHOTCTL"]


def say(text):
    print("\n\033[1m## %s\033[0m" % text if sys.stdout.isatty() else "\n## " + text, flush=True)


def run(argv, check=True):
    print("$ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    r = subprocess.run(argv, text=True, capture_output=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if check and r.returncode != 0:
        raise SystemExit("demo: command failed (%d)" % r.returncode)
    return r


def guest_lines(guest):
    code, out, _ = guest.guest_exec(["/bin/sh", "-c", "wc -l < /data1/counter.log"])
    return int(out.strip()) if code == 0 else -1


def main():
    tmp = tempfile.mkdtemp(prefix="snapdemo-", dir="/tmp")
    guest = bus = None
    try:
        say("Building the test guest from Debian packages (cached after the first run)")
        print(snaptest.guest_cache())

        say("Starting a private system-type dbus-daemon and snapshotd on it")
        bus = snaptest.Bus(os.path.join(tmp, "bus"))
        os.makedirs(bus.tmpdir)
        bus.start()
        print("bus address:", bus.address)

        say("Starting the guest under QEMU (%s): two virtio disks, the guest agent inside"
            % snaptest.choose_accel().upper())
        guest = snaptest.Guest(os.path.join(tmp, "vm1"))
        guest.start()
        print("guest agent answered after %.1f s" % guest.wait_ready())

        conf, state, images = (os.path.join(tmp, d) for d in ("conf", "state", "images"))
        os.makedirs(images)
        path = guest.domain_config(conf, "vm1", images_dir=images)
        print("domain config %s:\n%s" % (path, open(path).read()))
        bus.start_daemon(conf, state)
        ctl = [CTL, "--address=" + bus.address]
        deadline = time.monotonic() + 20
        while bus.get_property("/org/example/Snapshot1/domain/vm1",
                               snaptest.DOMAIN_IFACE, "HasAgent") is False and time.monotonic() < deadline:
            time.sleep(0.2)

        run(ctl + ["list-domains"])

        before = guest_lines(guest)
        say("Taking an atomic, quiesced, disk-only snapshot of both disks while the guest writes")
        run(ctl + ["create-as", "vm1", "before-upgrade", "taken by the demo",
                   "--disk-only", "--atomic", "--quiesce"])
        time.sleep(1)
        after = guest_lines(guest)
        print("the guest's counter log grew from %d to %d lines around the snapshot" % (before, after))
        print("guest console:", ", ".join(l.strip() for l in guest.console().splitlines()
                                          if "FSFREEZE-HOOK" in l))
        print("QEMU status:", guest.status(), "| fsfreeze:", guest.agent("guest-fsfreeze-status"))

        say("Listing it")
        run(ctl + ["list", "vm1"])
        run(ctl + ["info", "vm1", "before-upgrade"])
        run(ctl + ["dumpxml", "vm1", "before-upgrade"])

        say("The new overlays, as qemu-img sees them")
        for f in sorted(os.listdir(images)):
            run(["qemu-img", "info", "-U", os.path.join(images, f)])

        say("A second snapshot on top, and the tree")
        run(ctl + ["create-as", "vm1", "after-upgrade", "--disk-only", "--atomic"])
        run(ctl + ["list", "vm1", "--tree"])

        if os.environ.get("SNAPSHOTD_DEMO_KEEP") == "1":
            print("\nStill running. Try: %s --address=%s list vm1\nPress Enter to stop."
                  % (CTL, bus.address))
            input()
        say("Stopping everything the demo started")
    finally:
        if bus:
            bus.stop()
        if guest:
            guest.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("demo: done")


if __name__ == "__main__":
    main()
