#!/usr/bin/env bash
# Act-order GPTQ against plain GPTQ (not a test): GPTQ 4-bit with groups of
# 128, once with g_idx = k / 128 and once in act order (desc_act: inputs
# sorted by group at compile time, activations gathered): the cost of the
# gathers (bench/quantized_variants.sh).
#
#   bench/act_order.sh [shape] [layers]      (default mixtral-bench 8)
exec "$(dirname "$0")/quantized_variants.sh" "${1:-mixtral-bench}" "${2:-8}" \
  plain='--format gptq' act_order='--format gptq --act-order'
