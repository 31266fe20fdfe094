#!/usr/bin/env bash
# Quantized forms of one model side by side (not a test): a float model of a
# named shape (moir-make-model) written once per variant by
# bench/quantize_from_float.py, each compiled by moirc for this CPU, then
# moir-run on each, every variant once a round, REPEAT rounds (default 3): a
# 512-token prefill and 64 decode steps (bench/lib.sh's run_alternately and
# print_medians). Prints one JSON line per run and each variant's medians.
#
#   bench/quantized_variants.sh SHAPE LAYERS NAME='QUANTIZE ARGS[|MOIRC ARGS]'...
#
# e.g. NAME=--format gptq --act-order, or w8a16-f32='--format ct-int8|--cpu-int8-dot=false'.
# PYTHON must have numpy (default: the Halide venv's, which has it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD:-$root/build}"
python="${PYTHON:-$root/.venv-halide/bin/python}"
shape="$1" layers="$2"
shift 2
models="${MODELS:-$build/models}"
dir="$models/$shape-bf16-l$layers"
mkdir -p "$models"
[ -f "$dir/model.safetensors" ] ||
  "$build/bin/moir-make-model" "$dir" --shape "$shape" --dtype bf16 --layers "$layers" >&2
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
names=()
for variant in "$@"; do
  name="${variant%%=*}" spec="${variant#*=}"
  quantize="${spec%%|*}" flags=""
  [ "$spec" != "$quantize" ] && flags="${spec#*|}"
  names+=("$name")
  # One checkpoint per quantization (variants may share it).
  qdir="$dir-$(echo "$quantize" | tr -c 'a-z0-9' '_')"
  [ -f "$qdir/model.safetensors" ] || "$python" "$root/bench/quantize_from_float.py" "$dir" "$qdir" $quantize
  "$build/bin/moirc" "$qdir" --target=cpu --cpu=native --cache-capacity=1024 $flags -o "$dir.$name.moir"
done
RUNS=$(mktemp)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
MODEL="$shape" run_alternately variant 0 64 "$prompt" "$dir" "${names[@]}"
print_medians variant 0 "${names[@]}"
rm -f "$RUNS"
