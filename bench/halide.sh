#!/usr/bin/env bash
# The two code generators side by side (not a test): each model compiled with
# MLIR's kernels (moirc's default) and with --kernels=halide, then both
# artifacts run alternately, REPEAT rounds (default 3): a 512-token prompt
# and 64 decode steps, the memory bandwidth measured around each run
# (moir-run --bandwidth). Prints one JSON line per run, then per model and
# path the medians of prefill and decode tokens/s, the decode bandwidth
# fraction, and the Halide path's decode relative to MLIR's.
#
#   bash bench/halide.sh [shape:dtype[:weight-type] ...]
#        (default: mixtral-bench:bf16 deepseek-v2-lite-bench:bf16 mistral-bench:bf16)
#
# A third field quantizes both builds at compile time (moirc --weight-type,
# e.g. mixtral-bench:bf16:q8_0): MLIR's kernels then multiply int8
# activations where the CPU has the dot products (its default), Halide's
# decode the weights into f32 dot products.
#
# HALIDE_FLAGS adds moirc flags to the Halide builds (e.g.
# --halide-schedules-in=DIR, --halide-ops=...). AUTOSCHEDULER=Mullapudi2016
# adds a third build, the Halide kernels scheduled by that autoscheduler
# (--halide-autoscheduler, for --cpu-threads=$MOIR_NUM_THREADS or 2 cores), in
# the same rotation, reported against the default schedules too.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
models="${MODELS:-$build/models}"
mkdir -p "$models"
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(mixtral-bench:bf16 deepseek-v2-lite-bench:bf16 mistral-bench:bf16)
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
out=$(mktemp)
for run in "${runs[@]}"; do
  IFS=: read -r shape dtype wtype <<< "$run"
  src="$models/$shape-$dtype"
  [ -f "$src/model.safetensors" ] || "$build/bin/moir-make-model" "$src" --shape "$shape" --dtype "$dtype" >&2
  quant=() dir="$src"
  if [ -n "${wtype:-}" ]; then
    quant=(--weight-type="$wtype") dir="$src-$wtype" dtype="$wtype"
  fi
  "$build/bin/moirc" "$src" --target=cpu "${quant[@]}" --cache-capacity=1024 -o "$dir.mlir.moir"
  # shellcheck disable=SC2086
  "$build/bin/moirc" "$src" --target=cpu "${quant[@]}" --kernels=halide ${HALIDE_FLAGS:-} \
    --cache-capacity=1024 -o "$dir.halide.moir"
  paths="mlir halide"
  if [ -n "${AUTOSCHEDULER:-}" ]; then
    # shellcheck disable=SC2086
    "$build/bin/moirc" "$src" --target=cpu "${quant[@]}" --kernels=halide ${HALIDE_FLAGS:-} --cache-capacity=1024 \
      --halide-autoscheduler="$AUTOSCHEDULER" --cpu-threads="${MOIR_NUM_THREADS:-2}" \
      -o "$dir.halide-auto.moir"
    paths="mlir halide halide-auto"
  fi
  for round in $(seq "${REPEAT:-3}"); do
    order="$paths"
    [ $((round % 2)) -eq 0 ] && order="$(echo "$paths" | tr ' ' '\n' | tac | tr '\n' ' ')"
    for path in $order; do
      result=$("$build/bin/moir-run" "$dir.$path.moir" --tokens "$prompt" -n 64 --json --bandwidth |
                 sed 's/"tokens": \[[^]]*\], //')
      echo "{\"model\": \"$shape\", \"dtype\": \"$dtype\", \"kernels\": \"$path\", ${result#\{}" | tee -a "$out"
    done
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for model in sorted({(r["model"], r["dtype"]) for r in runs}):
    med = {}
    for path in ("mlir", "halide", "halide-auto"):
        mine = [r for r in runs if (r["model"], r["dtype"]) == model and r["kernels"] == path]
        if not mine:
            continue
        med[path] = statistics.median(r["decode_tokens_per_s"] for r in mine)
        print(json.dumps({"model": model[0], "dtype": model[1], "kernels": path, "runs": len(mine),
                          "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in mine),
                          "decode_tokens_per_s_median": med[path],
                          "decode_fraction_of_bandwidth_bound_median":
                              statistics.median(r["decode_fraction_of_bandwidth_bound"] for r in mine),
                          "decode_tokens_per_s": [r["decode_tokens_per_s"] for r in mine]}))
    print(json.dumps({"model": model[0], "dtype": model[1],
                      "halide_decode_relative_to_mlir": round(med["halide"] / med["mlir"], 3)}))
    if "halide-auto" in med:
        print(json.dumps({"model": model[0], "dtype": model[1],
                          "autoscheduled_decode_relative_to_default_schedules":
                              round(med["halide-auto"] / med["halide"], 3)}))
PY
rm -f "$out"
