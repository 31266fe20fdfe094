#!/usr/bin/env bash
# Expert residency when the model does not fit (a benchmark, not a test; as
# root, cgroup v1 or v2 memory controller): the Mixtral-shaped bf16 model
# (1.3 GB of weights, 1.1 GB of them experts) whole and with
# --expert-resident-budget=BUDGET (default 560M) from a routing profile, each
# run in a memory cgroup limited to LIMIT (default 1000M) after the page
# cache is dropped, so weights come from disk and pages the limit evicts are
# read again. REPEAT rounds (default 2), interleaved; a 64-token prompt and
# 64 decode steps; prefill/decode tokens/s and the cgroup's peak usage. The
# budget keeps the most routed experts locked; the whole artifact leaves the
# kernel to evict whatever it evicts.
#
#   sudo bench/expert_residency_limit.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
dir="$build/models/mixtral-bench-bf16"
budget="${BUDGET:-560M}" limit="${LIMIT:-1000M}"
[ "$(id -u)" = 0 ] || { echo "expert_residency_limit: needs root (cgroups, drop_caches)" >&2; exit 77; }
[ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape mixtral-bench --dtype bf16 >&2
train=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(256)))")
prompt=$(python3 -c "print(','.join(str(i * 104729 % 31000 + 1) for i in range(64)))")
work=$(mktemp -d "$build/residency.XXXXXX")
if [ -d /sys/fs/cgroup/memory ]; then
  cg=/sys/fs/cgroup/memory/moir-residency-$$; mkdir "$cg"
  echo "$limit" > "$cg/memory.limit_in_bytes"; peak=memory.max_usage_in_bytes
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cg=/sys/fs/cgroup/moir-residency-$$; mkdir "$cg"
  echo "$limit" > "$cg/memory.max"; peak=memory.peak
else
  echo "expert_residency_limit: no memory cgroup" >&2; exit 77
fi
trap 'rmdir "$cg" 2>/dev/null; rm -rf "$work"' EXIT
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, budget $budget, limit $limit" >&2
"$build/bin/moirc" "$dir" --target=cpu --cache-capacity=1024 -o "$work/whole.moir" >/dev/null
"$build/bin/moir-run" "$work/whole.moir" --tokens "$train" -n 64 --record-routing "$work/routing.json" >/dev/null
"$build/bin/moirc" "$dir" --target=cpu --cache-capacity=1024 --expert-placement="$work/routing.json" \
  --expert-resident-budget="$budget" -o "$work/budget.moir" >/dev/null
for _ in $(seq "${REPEAT:-2}"); do
  for kind in whole budget; do
    sync; echo 3 > /proc/sys/vm/drop_caches
    [ "$peak" = memory.max_usage_in_bytes ] && echo 0 > "$cg/$peak"
    result=$(bash -c "echo \$\$ > $cg/cgroup.procs; exec \"\$@\"" _ \
             "$build/bin/moir-run" "$work/$kind.moir" --tokens "$prompt" -n 64 --json)
    echo "{\"artifact\": \"$kind\", \"limit\": \"$limit\", \"cgroup_peak_mb\": $(( $(cat "$cg/$peak") >> 20 )), $(echo "$result" | sed 's/"tokens": \[[^]]*\], //; s/^{//')" | tee -a "$work/runs"
  done
done
python3 - "$work/runs" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for kind in ("whole", "budget"):
    mine = [r for r in runs if r["artifact"] == kind]
    print(json.dumps({"artifact": kind, "runs": len(mine),
                      "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in mine),
                      "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in mine),
                      "cgroup_peak_mb_max": max(r["cgroup_peak_mb"] for r in mine)}))
PY
