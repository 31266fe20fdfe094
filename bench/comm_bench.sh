#!/usr/bin/env bash
# Bandwidth of the communication layer's all-to-all-v and all-reduce (MPI
# backend) at 2 and 4 ranks, for 8 KiB to 64 MiB per rank, against a memcpy
# of the same bytes in one process. Prints a markdown table of GB/s
# (bytes per rank / time of one operation, the slowest rank's mean).
#
#   bash bench/comm_bench.sh [BUILD_DIR]
#
# BUILD_DIR: a runtime build with MPI (default build-rt-comm:
# cmake -S runtime -B build-rt-comm -G Ninja -DCMAKE_BUILD_TYPE=Release &&
# ninja -C build-rt-comm moir-comm-bench). Ranks beyond the cores are
# oversubscribed: on a 2-core machine the 4-rank numbers measure sharing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build-rt-comm}"
bin="$build/moir-comm-bench"
[ -x "$bin" ] || { echo "comm_bench: $bin not found (build moir-comm-bench; it needs MPI)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
runs="$(mktemp)"
trap 'rm -f "$runs"' EXIT
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(mpirun --version | head -1)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" --memcpy >>"$runs"
for ranks in 2 4; do
  mpirun -np "$ranks" "$bin" >>"$runs"
done
python3 - "$runs" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    op, ranks, size, seconds = line.split()[:4]
    rows.setdefault(int(size), {})[(op, int(ranks))] = float(seconds)
def cell(r, key, size):
    s = r.get(key)
    if s is None:
        return "-"
    took = ("%.2f us" if s < 1e-5 else "%.0f us") % (s * 1e6) if s < 1e-2 else "%.1f ms" % (s * 1e3)
    return "%.2f (%s)" % (size / s / 1e9, took)
cols = [("memcpy", 1), ("all_to_all_v", 2), ("all_reduce", 2), ("all_to_all_v", 4), ("all_reduce", 4)]
print("| bytes per rank | memcpy, 1 process | all-to-all-v, 2 ranks | all-reduce, 2 ranks | all-to-all-v, 4 ranks | all-reduce, 4 ranks |")
print("|---|---|---|---|---|---|")
for size in sorted(rows):
    r = rows[size]
    label = "%d KiB" % (size >> 10) if size < 1 << 20 else "%d MiB" % (size >> 20)
    print("| " + label + " | " + " | ".join(cell(r, k, size) for k in cols) + " |")
print("\nGB/s (time per operation); all-to-all-v: each rank sends and receives `bytes` in all, bytes/ranks per peer; all-reduce: `bytes` of float32 summed in place.")
PY
