#!/usr/bin/env bash
# MoE fusion benchmark (not a test): the DeepSeek-V2-Lite-shaped model (bf16,
# 64 experts top-6 + 2 shared, absorbed MLA) decoding at a 4096-token context,
# compiled with moe-fuse-experts (the default: dispatch, the expert FFNs,
# combine and the shared experts as one moe.fused_experts, two parallel
# phases) and with --moe-fuse-experts=false (the separate steps: one loop
# over experts, three parallel matmuls per selected expert, then combine).
# The two builds run alternately REPEAT times (default 3), so both see the
# same machine; the prompt (4096 ids) is prefilled in chunks of 512. Prints
# one JSON line per run and the median per build.
#
#   bench/moe_fusion.sh [steps]     (decode steps, default 16)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }
steps="${1:-16}"
dir="$build/models/deepseek-v2-lite-bench-bf16"
[ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape deepseek-v2-lite-bench --dtype bf16 >&2
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(4096)))")
for form in fused unfused; do
  flag=""
  [ "$form" = unfused ] && flag="--moe-fuse-experts=false"
  "$build/bin/moirc" "$dir" --target=cpu --cpu=native --cache-capacity=4160 $flag -o "$dir.$form.moir"
done
out=$(mktemp)
for _ in $(seq "${REPEAT:-3}"); do
  for form in fused unfused; do
    result=$("$build/bin/moir-run" "$dir.$form.moir" --tokens "$prompt" -n "$steps" --prefill-chunk 512 --json | sed 's/"tokens": \[[^]]*\], //')
    line="{\"model\": \"deepseek-v2-lite-bench\", \"experts\": \"$form\", \"context\": 4096, ${result#\{}"
    echo "$line" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, sys, statistics
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for form in ("fused", "unfused"):
    mine = [r for r in runs if r["experts"] == form]
    print(json.dumps({"experts": form, "context": 4096, "runs": len(mine),
                      "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in mine),
                      "decode_tokens_per_s": [r["decode_tokens_per_s"] for r in mine],
                      "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in mine)}))
PY
rm -f "$out" "$dir.fused.moir" "$dir.unfused.moir"
