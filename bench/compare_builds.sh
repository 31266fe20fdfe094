#!/usr/bin/env bash
# Two builds of MoIR side by side (not a test): the same checkpoint compiled by
# each build's moirc, the artifacts compared byte for byte, then each build's
# moir-run on its own artifact, alternating (the first of each round alternates
# too), REPEAT rounds (default 4): a
# 512-token prefill and 64 decode steps. Prints one JSON line per run and the
# medians per build.
#
#   OLD=/path/to/old/build NEW=/path/to/new/build bench/compare_builds.sh [shape:dtype ...]
#
# OLD and NEW are build folders (bin/moirc, bin/moir-run, and the runtime's
# libmoir_runtime.so in runtime/ or lib/). Default shape: mixtral-bench:bf16.
# MOIRC_FLAGS adds arguments to both compiles (e.g. --weight-type=q4_k).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
: "${OLD:?set OLD to the old build folder}" "${NEW:=$root/build}"
models="${MODELS:-$NEW/models}"
mkdir -p "$models"
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(mixtral-bench:bf16)
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
libdir() { [ -f "$1/runtime/libmoir_runtime.so" ] && echo "$1/runtime" || echo "$1/lib"; }
out=$(mktemp)
for run in "${runs[@]}"; do
  shape="${run%%:*}" dtype="${run##*:}"
  dir="$models/$shape-$dtype"
  [ -f "$dir/model.safetensors" ] || "$NEW/bin/moir-make-model" "$dir" --shape "$shape" --dtype "$dtype" >&2
  for side in OLD NEW; do
    build="${!side}"
    # shellcheck disable=SC2086
    LD_LIBRARY_PATH="$(libdir "$build")" "$build/bin/moirc" "$dir" --target=cpu --cpu=native \
      --cache-capacity=1024 ${MOIRC_FLAGS:-} -o "$dir.$side.moir"
  done
  if cmp -s "$dir.OLD.moir" "$dir.NEW.moir"; then same=true; else same=false; fi
  echo "{\"model\": \"$shape\", \"dtype\": \"$dtype\", \"moirc_flags\": \"${MOIRC_FLAGS:-}\", \"artifacts_identical\": $same, \"artifact_bytes\": {\"OLD\": $(stat -c %s "$dir.OLD.moir"), \"NEW\": $(stat -c %s "$dir.NEW.moir")}}"
  for round in $(seq "${REPEAT:-4}"); do
    # Which build runs first alternates, so neither always meets a machine
    # the other just left.
    order="OLD NEW"
    [ $((round % 2)) -eq 0 ] && order="NEW OLD"
    for side in $order; do
      build="${!side}"
      result=$(LD_LIBRARY_PATH="$(libdir "$build")" "$build/bin/moir-run" "$dir.$side.moir" \
                 --tokens "$prompt" -n 64 --json | sed 's/"tokens": \[[^]]*\], //')
      echo "{\"model\": \"$shape\", \"dtype\": \"$dtype\", \"build\": \"$side\", ${result#\{}" | tee -a "$out"
    done
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for model in sorted({(r["model"], r["dtype"]) for r in runs}):
    for side in ("OLD", "NEW"):
        mine = [r for r in runs if (r["model"], r["dtype"]) == model and r["build"] == side]
        print(json.dumps({"model": model[0], "dtype": model[1], "build": side, "runs": len(mine),
                          "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in mine),
                          "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in mine),
                          "decode_tokens_per_s": [r["decode_tokens_per_s"] for r in mine]}))
PY
rm -f "$out"
