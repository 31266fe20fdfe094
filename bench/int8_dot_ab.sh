#!/usr/bin/env bash
# The int8-activation prefill against the exact path (not a test): each GGUF
# compiled twice by this build's moirc (default: int8 dot products where the
# CPU has them; --cpu-int8-dot=false: f32 activations), then the two artifacts
# run alternately (which goes first alternates too), REPEAT rounds (default
# 3): a 512-token prefill and 32 decode steps on THREADS threads (default 2).
# Prints one JSON line per run and the medians per file and path.
#
#   bench/int8_dot_ab.sh model.Q8_0.gguf [model.Q4_K_M.gguf ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
[ $# -gt 0 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
threads="${THREADS:-2}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 100) for i in range(512)))")
out="$work/runs.jsonl"
for gguf in "$@"; do
  model=$(basename "$gguf" .gguf)
  "$build/bin/moirc" "$gguf" --target=cpu --cpu=native --cache-capacity=1024 \
    -o "$work/$model.int8.moir"
  "$build/bin/moirc" "$gguf" --target=cpu --cpu=native --cache-capacity=1024 \
    --cpu-int8-dot=false -o "$work/$model.exact.moir"
  for round in $(seq "${REPEAT:-3}"); do
    order="exact int8"
    [ $((round % 2)) -eq 0 ] && order="int8 exact"
    for path in $order; do
      line=$(MOIR_NUM_THREADS="$threads" "$build/bin/moir-run" "$work/$model.$path.moir" \
               --tokens "$prompt" -n 32 --json | sed 's/"tokens": \[[^]]*\], //')
      echo "{\"model\": \"$model\", \"path\": \"$path\", \"round\": $round, ${line#\{}" | tee -a "$out"
    done
  done
  rm -f "$work/$model".*.moir
done
python3 - "$out" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
for key in sorted({(r["model"], r["path"]) for r in runs}):
    rs = [r for r in runs if (r["model"], r["path"]) == key]
    print(json.dumps({"model": key[0], "path": key[1], "runs": len(rs),
                      "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in rs),
                      "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in rs)}))
EOF
