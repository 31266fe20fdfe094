"""Counts the OpenCL buffers of one size that PoCL created and freed.

Reads PoCL's log (POCL_DEBUG=memory,refcounts on stderr) and prints
"<created> buffer(s) of <size> bytes created, <freed> freed, at most <live>
at once". A device kernel's weight that stays on the device is created
once, whatever the number of calls that read it, and freed when the
artifact is unloaded; a session's KV cache kept there is created once and
freed when the session ends. Exits 1 when the log has no buffer of that
size (nothing to check).

    python3 pocl_buffers.py LOG SIZE [--more-than N]

With --more-than, exits 1 unless more than N such buffers were created
(a check that the calls copied buffers the device could not keep).
"""
import re
import sys


def main():
    log, size = sys.argv[1], int(sys.argv[2])
    more_than = int(sys.argv[4]) if len(sys.argv) == 5 and sys.argv[3] == "--more-than" else None
    created, freed = set(), set()
    live = most = 0
    with open(log, errors="replace") as f:
        for line in f:
            m = re.search(r"Created Buffer (\d+) \(.*SIZE (\d+)", line)
            if m and int(m.group(2)) == size:
                created.add(m.group(1))
                live += 1
                most = max(most, live)
            m = re.search(r"Free Memory Object (\d+) ", line)
            if m and m.group(1) in created and m.group(1) not in freed:
                freed.add(m.group(1))
                live -= 1
    if not created:
        sys.exit(f"{log}: no buffer of {size} bytes was created (is POCL_DEBUG=memory,refcounts "
                 "set, and does a device kernel read such a buffer?)")
    print(f"{len(created)} buffer(s) of {size} bytes created, {len(created & freed)} freed, "
          f"at most {most} at once")
    if more_than is not None and len(created) <= more_than:
        sys.exit(f"{log}: {len(created)} buffer(s) of {size} bytes created, not more than {more_than}")


if __name__ == "__main__":
    main()
