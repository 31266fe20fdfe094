#!/usr/bin/env bash
# CPU benchmark (not a test): prefill of 512 tokens and 64 decode steps for the
# Mixtral-shaped model (hidden 1024, 8 layers, 16/4 heads, 8 experts top-2,
# ffn 2816, vocab 32000) in f32 and bf16 and a DeepSeek-V2-Lite-shaped one
# (27 layers, MLA kv_lora 512, 64 experts top-6, 2 shared) in bf16.
# Bandwidth is measured in the same run, before and after (moir-run
# --bandwidth). Prints one JSON line per run and one per model (the median
# run by prefill speed).
#
#   bench/cpu_generate.sh [shape:dtype ...]     (default: all three)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }
models="$build/models"
mkdir -p "$models"
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(mixtral-bench:f32 mixtral-bench:bf16 deepseek-v2-lite-bench:bf16)
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
for run in "${runs[@]}"; do
  shape="${run%%:*}" dtype="${run##*:}"
  dir="$models/$shape-$dtype"
  [ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape "$shape" --dtype "$dtype" >&2
  SECONDS=0
  "$build/bin/moirc" "$dir" --target=cpu --cpu=native --cache-capacity=1024 -o "$dir.moir"
  compile=$SECONDS
  # The machine's speed moves run to run (shared host): REPEAT runs (default
  # 3), each line printed, then the median run by prefill speed.
  runs_out=()
  for _ in $(seq "${REPEAT:-3}"); do
    result=$("$build/bin/moir-run" "$dir.moir" --tokens "$prompt" -n 64 --bandwidth --json | sed 's/"tokens": \[[^]]*\], //')
    echo "{\"model\": \"$shape\", \"dtype\": \"$dtype\", \"run\": true, ${result#\{}"
    runs_out+=("$result")
  done
  median=$(printf '%s\n' "${runs_out[@]}" | python3 -c "
import json, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
runs.sort(key=lambda r: r['prefill_tokens_per_s'])
print(json.dumps(runs[len(runs) // 2]))")
  echo "{\"model\": \"$shape\", \"dtype\": \"$dtype\", \"compile_s\": $compile, \"median_of\": ${#runs_out[@]}, ${median#\{}"
done
