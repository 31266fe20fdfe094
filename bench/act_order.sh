#!/usr/bin/env bash
# Act-order GPTQ against plain GPTQ (not a test): one float model of a named
# shape (moir-make-model) written twice as GPTQ 4-bit with groups of 128
# (bench/gptq_from_float.py), once with g_idx = k / 128 and once in act order
# (desc_act: inputs sorted by group at compile time, activations gathered),
# both compiled by moirc for this CPU, then moir-run on each, alternating,
# REPEAT rounds (default 3): a 512-token prefill and 64 decode steps. Prints
# one JSON line per run and the medians: the cost of the gathers.
#
#   bench/act_order.sh [shape] [layers]      (default mixtral-bench 8)
#
# PYTHON must have numpy (default: the Halide venv's, which has it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD:-$root/build}"
python="${PYTHON:-$root/.venv-halide/bin/python}"
shape="${1:-mixtral-bench}" layers="${2:-8}"
models="${MODELS:-$build/models}"
dir="$models/$shape-bf16-l$layers"
mkdir -p "$models"
[ -f "$dir/model.safetensors" ] ||
  "$build/bin/moir-make-model" "$dir" --shape "$shape" --dtype bf16 --layers "$layers" >&2
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
for kind in plain act_order; do
  flag=""
  [ "$kind" = act_order ] && flag=--act-order
  [ -f "$dir-gptq-$kind/model.safetensors" ] ||
    "$python" "$root/bench/gptq_from_float.py" "$dir" "$dir-gptq-$kind" $flag
  "$build/bin/moirc" "$dir-gptq-$kind" --target=cpu --cpu=native --cache-capacity=1024 \
    -o "$dir-gptq-$kind.moir"
done
out=$(mktemp)
for round in $(seq "${REPEAT:-3}"); do
  order="plain act_order"
  [ $((round % 2)) -eq 0 ] && order="act_order plain"
  for kind in $order; do
    result=$("$build/bin/moir-run" "$dir-gptq-$kind.moir" --tokens "$prompt" -n 64 --json |
               sed 's/"tokens": \[[^]]*\], //')
    echo "{\"model\": \"$shape\", \"layers\": $layers, \"gptq\": \"$kind\", ${result#\{}" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for kind in ("plain", "act_order"):
    mine = [r for r in runs if r["gptq"] == kind]
    print(json.dumps({"gptq": kind, "runs": len(mine),
                      "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in mine),
                      "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in mine),
                      "decode_tokens_per_s": [r["decode_tokens_per_s"] for r in mine]}))
PY
rm -f "$out"
