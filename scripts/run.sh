#!/usr/bin/env bash
# MoIR's main job, as far as the compiler goes today: set up and build, write a
# model-shaped module in the input contract for a model family, run the
# input -> graph pipeline on it, and show the op census before and after.
#
#   scripts/run.sh [--family mixtral|qwen2-moe|deepseek-v3|apertus] [--layers N] [--hidden H] [--experts E]
#
# Outputs land in build/samples/<family>.{input,graph}.mlir.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

family=mixtral
gen_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --family) family="$2"; shift 2 ;;
    --layers|--hidden|--experts) gen_args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

mkdir -p "$build"
echo "== building MoIR (first run installs LLVM/MLIR 22; log: $build/build.log)"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }

out="$build/samples"
mkdir -p "$out"
input="$out/$family.input.mlir"
graph="$out/$family.graph.mlir"
python3 "$root/python/moir_samples/gen_model_ir.py" --family "$family" --layers 4 --hidden 256 "${gen_args[@]}" -o "$input"

echo "== $family: imported IR ($input)"
"$build/bin/moir-opt" "$input" \
  --pass-pipeline="builtin.module(moir-verify-input-contract,print-op-stats)" -o /dev/null 2>&1 \
  | grep -E "llm\.|moe\.|mla\." | sed 's/^ */  /'
echo "== $family: graph phase ($graph)"
"$build/bin/moir-opt" "$input" \
  --pass-pipeline="builtin.module(moir-graph-pipeline,print-op-stats)" -o "$graph" 2>&1 \
  | grep -E "llm\.|moe\.|mla\." | sed 's/^ */  /'
echo "== $family: input -> graph pipeline passed; $(grep -c 'llm.weight\|llm.stacked_weight' "$graph") weight references, none embedded"
