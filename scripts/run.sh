#!/usr/bin/env bash
# MoIR's main job, as far as the compiler goes today: set up and build, import
# a checkpoint (Hugging Face folder or GGUF file), run it through the compile
# phases that exist (input -> graph), and show the op census of each phase.
#
#   scripts/run.sh [MODEL]     (default: test/fixtures/mixtral, a tiny random Mixtral)
#
# The phases' IR lands in build/run/<name>.{input,graph}.mlir.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

case "${1:-}" in
  -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
esac
model="${1:-$root/test/fixtures/mixtral}"

mkdir -p "$build"
echo "== building MoIR (first run installs LLVM/MLIR 22; log: $build/build.log)"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }

out="$build/run"
mkdir -p "$out"
if [ -d "$model" ]; then
  name="$(basename "${model%/}")"
else
  name="$(basename "$(dirname "$model")")-$(basename "${model%.*}")"
fi
census() {
  "$build/bin/moir-opt" "$1" --print-op-stats -o /dev/null 2>&1 \
    | grep -E "llm\.|moe\.|mla\." | sed 's/^ */  /'
}
for phase in input graph; do
  "$build/bin/moirc" "$model" --compile-to=$phase -o "$out/$name.$phase.mlir"
  echo "== $name: $phase phase ($out/$name.$phase.mlir)"
  census "$out/$name.$phase.mlir"
done
echo "== $name: imported and compiled to the graph phase; $(grep -c 'llm.weight\|llm.stacked_weight' "$out/$name.graph.mlir") weight references into the checkpoint, none embedded"
