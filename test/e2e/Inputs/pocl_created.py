"""Compares the OpenCL buffers PoCL created in two runs of the same prompt.

Reads two PoCL logs (POCL_DEBUG=memory on stderr): the first of an
artifact whose device calls copy their inputs and results each call, the
second of one that keeps activations on the device (moirc --target=halide).
Prints "<a> -> <b> created: fewer device buffers" when the second created
at most 80% as many as the first, else exits 1 (the counts are the same
from run to run: the same calls on the same tokens; the Llama fixture's
are 415 and 310: each call still creates its results' buffers); also exits 1 when the
first log has no buffer at all (nothing to compare).

    python3 pocl_created.py CALLS_LOG LAYERS_LOG
"""
import re
import sys


def created(path):
    with open(path, errors="replace") as f:
        return sum(1 for line in f if re.search(r"Created Buffer \d+ ", line))


def main():
    a, b = created(sys.argv[1]), created(sys.argv[2])
    if a == 0:
        sys.exit(f"{sys.argv[1]}: no OpenCL buffer was created (is POCL_DEBUG=memory set?)")
    if 5 * b > 4 * a:
        sys.exit(f"{a} -> {b} buffers created: the second run did not create at most 80% as many")
    print(f"{a} -> {b} created: fewer device buffers")


if __name__ == "__main__":
    main()
