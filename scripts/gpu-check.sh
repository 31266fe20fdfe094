#!/usr/bin/env bash
# On a machine with an NVIDIA or AMD GPU, CMake and a C++ compiler (no
# MLIR/LLVM, no CUDA/ROCm SDK needed; the driver library is enough):
# builds the runtime, runs every fixture artifact compiled elsewhere
# (scripts/gpu-artifacts.sh) against transformers' reference logits
# (float32 within 1e-3 of the largest |logit|, greedy tokens identical), runs
# fresh random models on the GPU against the CPU (within 1e-4), the
# --gpu-tensor-cores artifacts (tensor-cores/: bf16 operands, within 2e-2 of
# transformers on the same bf16 weights, as the CPU's bf16 dot products), and
# benchmarks the weightless bench-<shape>-<dtype>.thin artifacts (their
# weights regenerated here; both from bench/gpu_prepare.sh). Every fixture
# family must have its artifact (a missing one fails), and a run that checked
# nothing fails; the exit code is non-zero if any check failed.
#   bash scripts/gpu-check.sh ARTIFACT_DIR
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
art="${1:?usage: gpu-check.sh ARTIFACT_DIR}"
[ -d "$art" ] || { echo "gpu-check.sh: $art: not a directory"; exit 1; }
build="${BUILD_DIR:-$root/build-gpu-runtime}"
cmake -S "$root/runtime" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$build" -j"$(nproc)" >/dev/null || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
command -v rocm-smi >/dev/null && rocm-smi --showproductname
passed=0; failed=0
for dir in "$root"/test/fixtures/*/; do
  [ -f "$dir/config.json" ] || continue # model families only
  family="$(basename "$dir")"
  moir="$art/$family.moir"
  echo "== $family"
  if [ ! -f "$moir" ]; then
    echo "FAIL: no artifact $moir (scripts/gpu-artifacts.sh compiles every fixture)"
    failed=$((failed + 1))
  elif "$build/moir-check-fixture" "$dir" "$moir" --tolerance 1e-3; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
# --gpu-tensor-cores (bench/gpu_prepare.sh: bf16 weights, every product on
# the matrix units): against transformers on the same bf16-rounded weights
# within 2e-2 of the largest |logit|, as the CPU's bf16 dot products (the
# activations are rounded to bf16 the same way; Gemma 3 within 5e-2); the
# quantized fixtures, whose dequantized weights are rounded to bf16 as well,
# against their dequantized reference within 3e-2.
for moir in "$art"/tensor-cores/*.moir; do
  [ -f "$moir" ] || continue
  name="$(basename "$moir" .moir)"
  echo "== $name (tensor cores)"
  case "$name" in
    quant-*) args=("$root/test/fixtures/quant/${name#quant-}" --tolerance 3e-2) ;;
    gemma3*) args=("$root/test/fixtures/$name" --reference reference_bf16_weights.safetensors --tolerance 5e-2) ;;
    *) args=("$root/test/fixtures/$name" --reference reference_bf16_weights.safetensors --tolerance 2e-2) ;;
  esac
  if "$build/moir-check-fixture" "${args[0]}" "$moir" "${args[@]:1}"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
# The same fresh random model on the CPU and on the GPU (bench/gpu_prepare.sh);
# with tensor cores (.tc.gpu.moir) within 2e-2, as the bf16 dot products.
for cpu in "$art"/random-*.cpu.moir; do
  [ -f "$cpu" ] || continue
  gpu="${cpu%.cpu.moir}.gpu.moir" tolerance=1e-4 what="GPU"
  if [ -f "${cpu%.cpu.moir}.tc.gpu.moir" ]; then
    gpu="${cpu%.cpu.moir}.tc.gpu.moir" tolerance=2e-2 what="GPU tensor cores"
  fi
  echo "== $(basename "$cpu" .cpu.moir): $what against CPU"
  if "$build/moir-compare-artifacts" "$cpu" "$gpu" --tolerance "$tolerance" --prompt 37 --steps 8; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
# Benchmarks: bench-<shape>-<dtype>.thin are artifacts without weights; the
# weights are regenerated here and checked against moirc's checksum.
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
models="${MODELS_DIR:-/tmp/moir-models}"
for thin in "$art"/bench-*.thin; do
  [ -f "$thin" ] || continue
  name="$(basename "$thin" .thin)"; variant=""
  case "$name" in *.tc) name="${name%.tc}"; variant=tensor-cores ;; esac
  spec="${name#bench-}"
  dtype="${spec##*-}"; shape="${spec%-*}"
  mkdir -p "$models"
  [ -f "$models/$spec/model.safetensors" ] ||
    "$build/moir-make-model" "$models/$spec" --shape "$shape" --dtype "$dtype" >/dev/null
  full="$models/$spec${variant:+.$variant}.moir"
  python3 "$root/bench/artifact_weights.py" attach "$thin" "$models/$spec" "$full" >/dev/null &&
    "$build/moir-run" --inspect --verify "$full" | grep "weights checksum: ok" >/dev/null ||
    { echo "$name: weights could not be rebuilt"; failed=$((failed + 1)); continue; }
  result=$("$build/moir-run" "$full" --tokens "$prompt" -n 128 --json) ||
    { failed=$((failed + 1)); continue; }
  echo "{\"model\": \"$shape\", \"dtype\": \"$dtype\", \"kernels\": \"${variant:-default}\", ${result#\{}" |
    sed 's/"tokens": \[[^]]*\], //'
done
echo "$passed passed, $failed failed"
if [ $((passed + failed)) -eq 0 ]; then
  echo "FAIL: nothing was checked"
  exit 1
fi
[ "$failed" -eq 0 ]
