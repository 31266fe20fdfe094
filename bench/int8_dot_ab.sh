#!/usr/bin/env bash
# The int8-activation path against the exact path (not a test): each model (a
# GGUF file or a checkpoint folder) compiled twice by this build's moirc, path
# "int8" with INT8_FLAGS (default: none, so int8 dot products where the CPU has
# them, prefill and decode) and path "exact" with EXACT_FLAGS (default
# --cpu-int8-dot=false: f32 activations), both with MOIRC_FLAGS (e.g.
# --weight-type=q4_k for a bf16 folder), then the two artifacts run
# alternately (which goes first alternates too), REPEAT rounds (default 3): a
# 512-token prefill and STEPS decode steps (default 32) on THREADS threads
# (default 2). Prints one JSON line per run and the medians per file and path.
#
#   bench/int8_dot_ab.sh model.Q8_0.gguf [model.Q4_K_M.gguf ...]
#   EXACT_FLAGS=--cpu-int8-decode=none MOIRC_FLAGS=--weight-type=q4_k \
#     bench/int8_dot_ab.sh build/models/mixtral-bench-bf16
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
  # shellcheck disable=SC2086
  "$build/bin/moirc" "$gguf" --target=cpu --cpu=native --cache-capacity=1024 \
    ${MOIRC_FLAGS:-} ${INT8_FLAGS:-} -o "$work/$model.int8.moir"
  # shellcheck disable=SC2086
  "$build/bin/moirc" "$gguf" --target=cpu --cpu=native --cache-capacity=1024 \
    ${MOIRC_FLAGS:-} ${EXACT_FLAGS:---cpu-int8-dot=false} -o "$work/$model.exact.moir"
  for round in $(seq "${REPEAT:-3}"); do
    order="exact int8"
    [ $((round % 2)) -eq 0 ] && order="int8 exact"
    for path in $order; do
      line=$(MOIR_NUM_THREADS="$threads" "$build/bin/moir-run" "$work/$model.$path.moir" \
               --tokens "$prompt" -n "${STEPS:-32}" --json | sed 's/"tokens": \[[^]]*\], //')
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
                      "decode_tokens_per_s": [r["decode_tokens_per_s"] for r in rs],
                      "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in rs),
                      "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in rs)}))
EOF
