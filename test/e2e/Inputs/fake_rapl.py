#!/usr/bin/env python3
"""A fake Linux powercap RAPL tree whose counters advance at a known power.

    fake_rapl.py ROOT [--watts W] [--core-watts C] [--range-j R] [--seconds S]

Creates ROOT/intel-rapl:0 (package-0, W watts, wrapping at R joules; its
counter starts 1 J short of the wrap) and its subzone ROOT/intel-rapl:0:0
(core, C watts: inside the package, a reader must not add it), then returns
once the tree is in place while a detached child advances the counters every
millisecond or two from the wall clock, so the average power is exact. Each
file is replaced atomically (a reader never sees a partial number). The
child stops after S seconds (default 60) or as soon as ROOT/stop exists.
"""
import argparse
import os
import sys
import time


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--watts", type=float, default=20.0)
    p.add_argument("--core-watts", type=float, default=15.0)
    p.add_argument("--range-j", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=60.0)
    a = p.parse_args()

    package = os.path.join(a.root, "intel-rapl:0")
    core = os.path.join(a.root, "intel-rapl:0:0")
    span = int(a.range_j * 1e6)
    start = span - 1000000  # wraps after 1 J
    for d, name, value in ((package, "package-0", start), (core, "core", 0)):
        os.makedirs(d, exist_ok=True)
        write(os.path.join(d, "name"), name)
        write(os.path.join(d, "max_energy_range_uj"), str(span))
        write(os.path.join(d, "energy_uj"), str(value))

    # The tree's owner: a writer left from an earlier run of the test (its
    # ROOT since removed and made anew) sees another token and stops.
    token = "%d.%d" % (os.getpid(), time.time_ns())
    write(os.path.join(a.root, "owner"), token)
    if os.fork():
        return 0  # the tree is ready
    # The child: detached, its output away from the test's pipes.
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # Real-time scheduling where allowed (root): on a busy machine an
    # ordinary process can stall for milliseconds, leaving the counter
    # staler than a hardware one (check_energy_report.py allows for that).
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (AttributeError, OSError):
        pass
    t0 = time.monotonic()
    stop = os.path.join(a.root, "stop")
    # The longest the counters went without an update (a stalled writer),
    # for the check to allow for: a hardware counter never stalls.
    last, longest = t0, 0.0
    while True:
        now = time.monotonic()
        if now - last > longest:
            longest = now - last
            write(os.path.join(a.root, "longest_gap_s"), repr(longest))
        last = now
        t = now - t0
        if t > a.seconds or os.path.exists(stop):
            break
        try:
            with open(os.path.join(a.root, "owner")) as f:
                if f.read().strip() != token:
                    break
        except OSError:
            break
        write(os.path.join(package, "energy_uj"),
              str((start + int(a.watts * t * 1e6)) % span))
        write(os.path.join(core, "energy_uj"), str(int(a.core_watts * t * 1e6) % span))
        time.sleep(0.001)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
