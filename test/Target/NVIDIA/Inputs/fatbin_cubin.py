"""Write the cubin a fatbin holds for one chip, for the tests' SASS checks.

usage: fatbin_cubin.py FATBIN sm_NN OUT.cubin

moirc's fatbin (CUDA's fatbinary container) holds the chip's cubin (an ELF
that ptxas wrote while moirc compiled) beside the PTX. Taking that cubin out
checks the binary the artifact ships, and saves running ptxas a second time
on the dumped PTX. The container: a 16-byte header (magic 0xBA55ED50, a
version, its own size, the size of what follows), then entries, each a header
(kind: 1 PTX, 2 ELF; its own size; the payload's size; the chip at offset 28)
followed by its payload. Exits 1, naming the file and the problem, on
anything else: a bad magic, a truncated entry, no ELF for the chip, a
compressed payload.
"""

import struct
import sys


def fail(path, problem):
    sys.exit(f"{path}: {problem}")


def main():
    if len(sys.argv) != 4 or not sys.argv[2].startswith("sm_"):
        sys.exit(__doc__.strip().splitlines()[2])
    path, chip, out = sys.argv[1], int(sys.argv[2][3:].rstrip("a")), sys.argv[3]
    data = open(path, "rb").read()
    if len(data) < 16:
        fail(path, f"{len(data)} bytes, shorter than a fatbin header")
    magic, _, header, size = struct.unpack_from("<IHHQ", data, 0)
    if magic != 0xBA55ED50:
        fail(path, f"magic {magic:#x}, not a fatbin's 0xba55ed50")
    end = header + size
    if end > len(data):
        fail(path, f"says {end} bytes, holds {len(data)}")
    offset, kinds = header, []
    while offset < end:
        if offset + 32 > end:
            fail(path, f"an entry header at {offset} runs past the end")
        kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, offset)
        arch = struct.unpack_from("<I", data, offset + 28)[0]
        start = offset + entry_header
        if entry_header < 32 or start + payload > end:
            fail(path, f"the entry at {offset} runs past the end")
        kinds.append(f"{'ptx' if kind == 1 else 'elf' if kind == 2 else kind}/sm_{arch}")
        if kind == 2 and arch == chip:
            body = data[start:start + payload]
            if body[:4] != b"\x7fELF":
                fail(path, f"the sm_{chip} cubin at {start} is not a plain ELF "
                           "(compressed?)")
            # The payload is padded; the ELF ends at its last section or table.
            shoff = struct.unpack_from("<Q", body, 0x28)[0]
            phoff = struct.unpack_from("<Q", body, 0x20)[0]
            phsize, phnum, shsize, shnum = struct.unpack_from("<HHHH", body, 0x36)
            last = max(shoff + shsize * shnum, phoff + phsize * phnum)
            for s in range(shnum):
                at = shoff + s * shsize
                stype = struct.unpack_from("<I", body, at + 4)[0]
                soff, ssize = struct.unpack_from("<QQ", body, at + 0x18)
                if stype != 8:  # SHT_NOBITS takes no room in the file
                    last = max(last, soff + ssize)
            if last > len(body):
                fail(path, f"the sm_{chip} cubin is truncated ({last} > {len(body)})")
            open(out, "wb").write(body[:last])
            return
        offset = start + payload
    fail(path, f"no sm_{chip} cubin among its entries ({', '.join(kinds) or 'none'})")


if __name__ == "__main__":
    main()
