#!/usr/bin/env bash
# MLA benchmark (not a test): the DeepSeek-V2-Lite-shaped model (bf16) decoding
# at a 4096-token context, compiled with mla-absorb-weights (the default: decode
# absorbed, prefill materialized where the cost model finds it cheaper) and with
# --mla-absorb-weights=false (materialized everywhere), run one after the other
# in this script. The prompt (4096 ids) is prefilled in chunks of 512, as a
# server fills a long context. Prints one JSON line per build and the KV-cache
# bytes per token.
#
#   bench/mla_forms.sh [steps]     (decode steps, default 8)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }
steps="${1:-8}"
dir="$build/models/deepseek-v2-lite-bench-bf16"
[ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape deepseek-v2-lite-bench --dtype bf16 >&2
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(4096)))")
for form in absorbed materialized; do
  flag=""
  [ "$form" = materialized ] && flag="--mla-absorb-weights=false"
  "$build/bin/moirc" "$dir" --target=cpu --cpu=native --cache-capacity=4160 $flag -o "$dir.$form.moir"
  result=$("$build/bin/moir-run" "$dir.$form.moir" --tokens "$prompt" -n "$steps" --prefill-chunk 512 --json | sed 's/"tokens": \[[^]]*\], //')
  echo "{\"model\": \"deepseek-v2-lite-bench\", \"mla\": \"$form\", \"context\": 4096, ${result#\{}"
done
# Cache bytes per token (f32 caches): MoIR keeps the latent and the shared
# RoPE key; a materialized cache (transformers' DynamicCache) keeps every
# head's key and value.
python3 - "$dir/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
layers, heads = c["num_hidden_layers"], c["num_attention_heads"]
latent = (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * 4 * layers
full = heads * (c["qk_nope_head_dim"] + c["qk_rope_head_dim"] + c["v_head_dim"]) * 4 * layers
print(json.dumps({"kv_cache_bytes_per_token_latent": latent,
                  "kv_cache_bytes_per_token_per_head_kv": full,
                  "ratio": round(full / latent, 2)}))
PY
