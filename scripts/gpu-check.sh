#!/usr/bin/env bash
# On a machine with a GPU, CMake and a C++ compiler (no MLIR/LLVM needed):
# builds the runtime, runs every fixture artifact compiled elsewhere
# (scripts/gpu-artifacts.sh) against transformers' reference logits
# (float32 within 1e-3 of the largest |logit|, greedy tokens identical), and,
# if ARTIFACT_DIR holds bench.moir (or bench.thin + a checkpoint it can
# regenerate, see bench/gpu_bench_artifact.sh), benchmarks it.
#   bash scripts/gpu-check.sh ARTIFACT_DIR
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
art="${1:?usage: gpu-check.sh ARTIFACT_DIR}"
build="${BUILD_DIR:-$root/build-gpu-runtime}"
cmake -S "$root/runtime" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build "$build" -j"$(nproc)" >/dev/null || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
passed=0; failed=0
for moir in "$art"/*.moir; do
  family="$(basename "$moir" .moir)"
  [ -d "$root/test/fixtures/$family" ] || continue
  echo "== $family"
  if "$build/moir-check-fixture" "$root/test/fixtures/$family" "$moir" --tolerance 1e-3; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
if [ -f "$art/bench.moir" ]; then
  echo "== benchmark: $(basename "$art/bench.moir")"
  prompt=$(python3 -c "print(','.join(str((i * 7919) % 32000) for i in range(512)))")
  "$build/moir-run" "$art/bench.moir" --tokens "$prompt" -n 128 --json || failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
