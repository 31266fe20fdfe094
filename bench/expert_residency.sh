#!/usr/bin/env bash
# Expert residency under a memory budget (a benchmark, not a test): the
# Mixtral-shaped bf16 model (8 layers x 8 experts, 1.1 GB of expert weights)
# compiled whole and with --expert-resident-budget=BUDGET (default 560M, about
# half the experts) from a routing profile that moir-run --record-routing
# writes on a training prompt, then both run interleaved, REPEAT rounds
# (default 3): one token and one decode step (what loading maps in), and a
# different 64-token prompt with 32 decode steps; peak resident memory (GNU
# time), prefill and decode tokens/s. One JSON line per run, then the medians.
#
#   bench/expert_residency.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
dir="$build/models/mixtral-bench-bf16"
budget="${BUDGET:-560M}"
[ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape mixtral-bench --dtype bf16 >&2
train=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(256)))")
prompt=$(python3 -c "print(','.join(str(i * 104729 % 31000 + 1) for i in range(64)))")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, budget $budget" >&2
"$build/bin/moirc" "$dir" --target=cpu --cache-capacity=1024 -o "$work/whole.moir" >/dev/null
"$build/bin/moir-run" "$work/whole.moir" --tokens "$train" -n 64 --record-routing "$work/routing.json" >/dev/null
"$build/bin/moirc" "$dir" --target=cpu --cache-capacity=1024 --expert-placement="$work/routing.json" \
  --expert-resident-budget="$budget" -o "$work/budget.moir" >/dev/null
# Two runs per artifact: one token and one decode step (what loading maps
# in), and the 64-token prompt with 32 decode steps.
for _ in $(seq "${REPEAT:-3}"); do
  for kind in whole budget; do
    for run in load prompt; do
      tokens="$prompt"; steps=32
      [ "$run" = load ] && tokens=1 && steps=1
      rss=$(mktemp)
      result=$(/usr/bin/time -o "$rss" -f "%M" "$build/bin/moir-run" "$work/$kind.moir" \
               --tokens "$tokens" -n "$steps" --json)
      echo "{\"artifact\": \"$kind\", \"run\": \"$run\", \"peak_rss_kb\": $(cat "$rss"), $(echo "$result" | sed 's/"tokens": \[[^]]*\], //; s/^{//')" | tee -a "$work/runs"
      rm -f "$rss"
    done
  done
done
python3 - "$work/runs" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for kind, run in [(k, r) for r in ("load", "prompt") for k in ("whole", "budget")]:
    mine = [r for r in runs if r["artifact"] == kind and r["run"] == run]
    print(json.dumps({"artifact": kind, "run": run, "runs": len(mine),
                      "peak_rss_mb_median": round(statistics.median(r["peak_rss_kb"] for r in mine) / 1024, 1),
                      "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in mine),
                      "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in mine)}))
PY
