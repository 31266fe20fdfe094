#!/usr/bin/env bash
# compressed-tensors INT8 per channel, W8A16 against W8A8 (not a test): the
# same int8 weights (bench/quantize_from_float.py --format ct-int8), without
# and with input_activations (int8, dynamic, per token). W8A16 runs on the
# default path (prefill with VNNI int8 activations in blocks of 32) and on
# the exact f32 one; W8A8 quantizes each linear's rows (llm.dynamic_quant)
# and multiplies them in f32 (precise). bench/quantized_variants.sh.
#
#   bench/w8a8.sh [shape] [layers]      (default mixtral-bench 8)
exec "$(dirname "$0")/quantized_variants.sh" "${1:-mixtral-bench}" "${2:-8}" \
  w8a16='--format ct-int8' w8a16_f32='--format ct-int8|--cpu-int8-dot=false' \
  w8a8='--format ct-int8 --w8a8'
