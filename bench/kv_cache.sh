#!/usr/bin/env bash
# KV-cache quantization benchmark (not a test): the DeepSeek-V2-Lite-shaped
# model (bf16, absorbed MLA, fused MoE) decoding at a CONTEXT-token context
# (default 4096) with f32 caches (the default) and with
# --quantize-kv-cache=int8 and =fp8 (latent and RoPE-key caches stored in one
# byte per value plus an f32 scale per token, dequantized inside the
# attention products). The builds run alternately REPEAT times (default 3);
# the prompt is prefilled in chunks of 512. Prints one JSON line per run, the
# median decode per build, and the cache bytes per token of each build (from
# moirc --report).
#
#   bench/kv_cache.sh [steps]     (decode steps, default 16)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }
steps="${1:-16}"
context="${CONTEXT:-4096}"
dir="$build/models/deepseek-v2-lite-bench-bf16"
[ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape deepseek-v2-lite-bench --dtype bf16 >&2
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range($context)))")
forms=(f32 int8 fp8)
for form in "${forms[@]}"; do
  flag="--quantize-kv-cache=none"
  [ "$form" != f32 ] && flag="--quantize-kv-cache=$form"
  "$build/bin/moirc" "$dir" --target=cpu --cpu=native --cache-capacity=$((context + 64)) $flag -o "$dir.kv.$form.moir"
  bytes=$("$build/bin/moirc" "$dir" --report $flag | sed -n 's/.*; \([0-9]*\) cache bytes per token/\1/p')
  echo "{\"kv_cache\": \"$form\", \"cache_bytes_per_token\": $bytes}"
done
RUNS=$(mktemp)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
run_alternately kv_cache "$context" "$steps" "$prompt" "$dir.kv" "${forms[@]}"
print_medians kv_cache "$context" "${forms[@]}"
rm -f "$RUNS"
for form in "${forms[@]}"; do rm -f "$dir.kv.$form.moir"; done
