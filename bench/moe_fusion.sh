#!/usr/bin/env bash
# MoE fusion benchmark (not a test): the DeepSeek-V2-Lite-shaped model (bf16,
# 64 experts top-6 + 2 shared, absorbed MLA) decoding at a CONTEXT-token
# context (default 4096), in three builds:
#   fused:   the default: moe-fuse-router (router product + routing as one
#            step, parallel over tokens) and moe-fuse-experts (dispatch, the
#            expert FFNs, combine and the shared experts as one step, two
#            parallel phases);
#   router:  --moe-fuse-experts=false (experts as separate steps: a loop over
#            experts, three parallel matmuls per selected expert, combine);
#   unfused: both off.
# The builds run alternately REPEAT times (default 3), so all see the same
# machine; the prompt is prefilled in chunks of 512. Prints one JSON line per
# run and the median per build.
#
#   bench/moe_fusion.sh [steps]     (decode steps, default 16)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }
steps="${1:-16}"
dir="$build/models/deepseek-v2-lite-bench-bf16"
[ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape deepseek-v2-lite-bench --dtype bf16 >&2
context="${CONTEXT:-4096}"
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range($context)))")
forms=(fused router unfused)
flags() {
  case "$1" in
    fused) echo "" ;;
    router) echo "--moe-fuse-experts=false" ;;
    unfused) echo "--moe-fuse-experts=false --moe-fuse-router=false" ;;
  esac
}
for form in "${forms[@]}"; do
  # shellcheck disable=SC2046
  "$build/bin/moirc" "$dir" --target=cpu --cpu=native --cache-capacity=$((context + 64)) $(flags "$form") -o "$dir.$form.moir"
done
RUNS=$(mktemp)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
run_alternately build "$context" "$steps" "$prompt" "$dir" "${forms[@]}"
print_medians build "$context" "${forms[@]}"
rm -f "$RUNS"
for form in "${forms[@]}"; do rm -f "$dir.$form.moir"; done
