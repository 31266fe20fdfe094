#!/usr/bin/env bash
# A fusion choice measured both ways with edited Halide schedules (not a
# test; docs/halide.md walks through it): the FFN's GLU fused into the down
# projection (kernel glu_linear) with its output materialized once
# (hidden.compute_root(), the default), computed per block of 64 weight rows
# (hidden.compute_at(out, nb)) or recomputed inside the dot products
# (hidden.compute_inline()); against the GLU as a kernel of its own
# (--halide-ops without glu_linear) and MLIR's kernels. REPEAT rounds
# (default 5), the artifacts alternating within each round: a 512-token
# prompt, then STEPS decode steps (default 64). Prints the medians per form.
#
#   bash bench/halide_fusion.sh [shape:dtype]     (default mistral-bench:bf16)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
run="${1:-mistral-bench:bf16}"
shape="${run%%:*}" dtype="${run##*:}"
dir="${MODELS:-$build/models}/$shape-$dtype"
[ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape "$shape" --dtype "$dtype" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
moirc() { "$build/bin/moirc" "$dir" --target=cpu --cache-capacity=1024 "$@"; }
moirc -o "$work/mlir.moir"
moirc --kernels=halide --halide-schedules-out="$work/root" -o "$work/root.moir"
moirc --kernels=halide --halide-ops=rms_norm,linear,glu,activation,rope -o "$work/unfused.moir"
# The edits: only the glu_linear kernels' line for `hidden` changes (placed
# last, after the splits that name nb).
for form in inline block; do
  cp -r "$work/root" "$work/$form"
  for f in "$work/$form"/moir_hl_glu_linear_*.schedule; do
    sed -i '/^hidden\./d' "$f"
    if [ "$form" = inline ]; then echo "hidden.compute_inline()" >> "$f"
    else echo "hidden.compute_at(out, nb).vectorize(k, 8)" >> "$f"; fi
  done
  moirc --kernels=halide --halide-schedules-in="$work/$form" -o "$work/$form.moir"
done
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
forms="root block inline unfused mlir"
for _ in $(seq "${REPEAT:-5}"); do
  for form in $forms; do
    result=$("$build/bin/moir-run" "$work/$form.moir" --tokens "$prompt" -n "${STEPS:-64}" --json |
               sed 's/"tokens": \[[^]]*\], //')
    echo "{\"model\": \"$shape\", \"form\": \"$form\", ${result#\{}" | tee -a "$work/runs.jsonl"
  done
done
python3 - "$work/runs.jsonl" $forms <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for form in sys.argv[2:]:
    mine = [r for r in runs if r["form"] == form]
    print(json.dumps({"form": form, "runs": len(mine),
                      "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in mine),
                      "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in mine),
                      "decode_tokens_per_s": [r["decode_tokens_per_s"] for r in mine]}))
PY
