#!/usr/bin/env bash
# MoIR's main job: set up and build, compile a model for this machine's CPU,
# generate tokens with the runtime, and report tokens/s and the fraction of
# the memory-bandwidth bound reached.
#
#   scripts/run.sh [MODEL] [-n TOKENS]
#
# MODEL: a Hugging Face checkpoint folder or a GGUF file. Without one, a
# Mixtral-shaped MoE (hidden 1024, 4 layers, 8 experts top-2, vocab 32000,
# bf16, 0.7 GB) with deterministic random weights is made on first use in
# build/models/mixtral-demo.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

model=""
steps=64
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -n) steps="$2"; shift 2 ;;
    *) model="$1"; shift ;;
  esac
done

mkdir -p "$build"
echo "== building MoIR (first run installs LLVM/MLIR 22; log: $build/build.log)"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }

models="$build/models"
mkdir -p "$models"
if [ -z "$model" ]; then
  model="$models/mixtral-demo"
  [ -f "$model/model.safetensors" ] || "$build/bin/moir-make-model" "$model" --shape mixtral-demo --dtype bf16
fi
if [ -d "$model" ]; then name="$(basename "${model%/}")"; else name="$(basename "${model%.*}")"; fi
artifact="$models/$name.moir"
echo "== compiling $model for this CPU -> $artifact"
SECONDS=0
"$build/bin/moirc" "$model" --target=cpu --cpu=native --cache-capacity=2048 -o "$artifact"
echo "   compiled in ${SECONDS} s"
echo "== generating $steps tokens after a 16-token prompt"
"$build/bin/moir-run" "$artifact" --tokens 1,15043,29871,29896,29889,450,4996,17354,1701,29916,432,17204,975,278,17366,11203 \
  -n "$steps" --bandwidth 2>&1 | sed 's/^/   /' | sed 's/generated:\(.\{0,120\}\).*/generated:\1 .../'
