#!/usr/bin/env bash
# Attention benchmark (not a test): flash-attention (the default: online
# softmax over blocks of 64 keys, work items per block of queries and KV
# head, blocks a query cannot see skipped) against --flash-attention=false
# (scores [tokens, heads, keys] materialized, masked, softmaxed, then the
# weighted sum), prefilling a CONTEXT-token prompt (default 4096) in chunks of
# PREFILL_CHUNK (default 512) and decoding at that context. Models (default
# both): mixtral-bench (16 query / 4 KV heads of 64) and
# deepseek-v2-lite-bench (MLA: prefill materialized per head by the cost
# model, 16 heads of 192 / 128; decode absorbed over the latent cache).
# The builds run alternately REPEAT times (default 3). Prints one JSON line
# per run and the medians per build.
#
#   bench/attention.sh [steps] [shape ...]     (decode steps, default 16)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }
steps="${1:-16}"
shift || true
shapes=("$@")
[ ${#shapes[@]} -eq 0 ] && shapes=(mixtral-bench deepseek-v2-lite-bench)
context="${CONTEXT:-4096}"
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range($context)))")
forms=(flash scores)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
for shape in "${shapes[@]}"; do
  dir="$build/models/$shape-bf16"
  [ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape "$shape" --dtype bf16 >&2
  for form in "${forms[@]}"; do
    flag="--flash-attention"
    [ "$form" = scores ] && flag="--flash-attention=false"
    "$build/bin/moirc" "$dir" --target=cpu --cpu=native --cache-capacity=$((context + 64)) $flag -o "$dir.attn.$form.moir"
  done
  RUNS=$(mktemp)
  MODEL="$shape" run_alternately attention "$context" "$steps" "$prompt" "$dir.attn" "${forms[@]}"
  print_medians attention "$context" "${forms[@]}"
  rm -f "$RUNS"
  for form in "${forms[@]}"; do rm -f "$dir.attn.$form.moir"; done
done
