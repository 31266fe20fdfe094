#!/usr/bin/env bash
# On a machine with an NVIDIA or AMD GPU, CMake and a C++ compiler (no
# MLIR/LLVM, no CUDA/ROCm SDK needed; the driver library is enough):
# builds the runtime, runs every fixture artifact compiled elsewhere
# (scripts/gpu-artifacts.sh) against transformers' reference logits
# (float32 within 1e-3 of the largest |logit|, greedy tokens identical), runs
# fresh random models on the GPU against the CPU (within 1e-4), and
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
# The same fresh random model on the CPU and on the GPU (bench/gpu_prepare.sh).
for cpu in "$art"/random-*.cpu.moir; do
  [ -f "$cpu" ] || continue
  echo "== $(basename "$cpu" .cpu.moir): GPU against CPU"
  if "$build/moir-compare-artifacts" "$cpu" "${cpu%.cpu.moir}.gpu.moir" --tolerance 1e-4 --prompt 37 --steps 8; then
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
  name="$(basename "$thin" .thin)"; spec="${name#bench-}"
  dtype="${spec##*-}"; shape="${spec%-*}"
  mkdir -p "$models"
  [ -f "$models/$spec/model.safetensors" ] ||
    "$build/moir-make-model" "$models/$spec" --shape "$shape" --dtype "$dtype" >/dev/null
  python3 "$root/bench/artifact_weights.py" attach "$thin" "$models/$spec" "$models/$spec.moir" >/dev/null &&
    "$build/moir-run" --inspect --verify "$models/$spec.moir" | grep "weights checksum: ok" >/dev/null ||
    { echo "$name: weights could not be rebuilt"; failed=$((failed + 1)); continue; }
  result=$("$build/moir-run" "$models/$spec.moir" --tokens "$prompt" -n 128 --json) ||
    { failed=$((failed + 1)); continue; }
  echo "{\"model\": \"$shape\", \"dtype\": \"$dtype\", ${result#\{}" | sed 's/"tokens": \[[^]]*\], //'
done
echo "$passed passed, $failed failed"
if [ $((passed + failed)) -eq 0 ]; then
  echo "FAIL: nothing was checked"
  exit 1
fi
[ "$failed" -eq 0 ]
