#!/usr/bin/env bash
# On a machine with an NVIDIA or AMD GPU, CMake and a C++ compiler (no
# MLIR/LLVM, no CUDA/ROCm SDK needed; the driver library is enough):
# builds the runtime, runs every fixture artifact compiled elsewhere
# (scripts/gpu-artifacts.sh) against transformers' reference logits
# (float32 within 1e-3 of the largest |logit|, greedy tokens identical), runs
# the quantized fixtures (within 1e-4 of transformers on their dequantized
# weights, as on the CPU), fresh random models on the GPU against the CPU
# (within 1e-4), the
# --gpu-tensor-cores=on artifacts (tensor-cores/: bf16 operands, within 2e-2 of
# transformers on the same bf16 weights, as the CPU's bf16 dot products, with
# the reference's near-tied routing choices left out), and
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
# The quantized fixtures on the default path (bench/gpu_prepare.sh): against
# transformers on their dequantized weights within 1e-4, as on the CPU.
for moir in "$art"/quant/*.moir; do
  [ -f "$moir" ] || continue
  name="$(basename "$moir" .moir)"
  echo "== quant $name"
  case "$name" in
    compile_time-*) args=("$root/test/fixtures/quant/compile_time" --reference "reference_${name#compile_time-}.safetensors") ;;
    *) args=("$root/test/fixtures/quant/$name") ;;
  esac
  if "$build/moir-check-fixture" "${args[0]}" "$moir" "${args[@]:1}" --tolerance 1e-4; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
# --gpu-tensor-cores (bench/gpu_prepare.sh: bf16 weights, every product on
# the matrix units): against transformers on the same bf16-rounded weights
# within 2e-2 of the largest |logit|, as the CPU's bf16 dot products (the
# activations are rounded to bf16 the same way; Gemma 3 within 5e-2). The
# quantized checkpoints in Hugging Face layout against transformers on their
# dequantized weights rounded to bf16
# (python/fixtures/make_quant_bf16_references.py) within 4e-2: rounding every
# linear layer's input to bf16 in transformers
# (python/fixtures/bf16_rounding_error.py) moves their logits by up to 2.65e-2
# (fp8_block; the families' by up to 1.8e-2). The GGUF ones, which have no
# such reference, against their dequantized reference within 4e-2 as well:
# the weights' rounding alone moves the HF ones' logits by up to 2.1e-2, the
# activations' by up to 1.4e-2 on these fixtures. Rounding can flip
# a routing choice that the reference made within 4e-3 (2^-8) of a tie, and
# one flipped expert moves the logits by 5-20%: where the fixture has
# routing_gaps.safetensors (python/fixtures/routing_gaps.py), those positions
# are left out, named (moir-check-fixture --routing-tie).
for moir in "$art"/tensor-cores/*.moir; do
  [ -f "$moir" ] || continue
  name="$(basename "$moir" .moir)"
  echo "== $name (tensor cores)"
  case "$name" in
    quant-gguf_*|quant-deepseek_v2_q8_0) args=("$root/test/fixtures/quant/${name#quant-}" --tolerance 4e-2) ;;
    quant-*) args=("$root/test/fixtures/quant/${name#quant-}" --reference reference_bf16_weights.safetensors --tolerance 4e-2) ;;
    gemma3*) args=("$root/test/fixtures/$name" --reference reference_bf16_weights.safetensors --tolerance 5e-2) ;;
    *) args=("$root/test/fixtures/$name" --reference reference_bf16_weights.safetensors --tolerance 2e-2) ;;
  esac
  [ -f "${args[0]}/routing_gaps.safetensors" ] && args+=(--routing-tie 4e-3)
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
# weights are regenerated here and checked against moirc's weights checksum.
# ROUNDS (default 1) rounds, each running every artifact once (interleaved),
# with the device's memory bandwidth (bench/gpu_bandwidth.cu, where nvcc is
# found) measured before the first round and after the last: the bound that
# decode's weight GB/s is a fraction of.
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
models="${MODELS_DIR:-/tmp/moir-models}"
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
bandwidth() {
  [ -x "$build/gpu_bandwidth" ] && "$build/gpu_bandwidth" | sed "s/^{/{\"when\": \"$1\", /"
}
benches=()
for thin in "$art"/bench-*.thin; do
  [ -f "$thin" ] || continue
  name="$(basename "$thin" .thin)"; variant=""
  case "$name" in
    *.tc) name="${name%.tc}"; variant=tensor-cores ;;
    *.warp) name="${name%.warp}"; variant=warp-per-output ;;
  esac
  spec="${name#bench-}"
  dtype="${spec##*-}"; shape="${spec%-*}"
  mkdir -p "$models"
  [ -f "$models/$spec/model.safetensors" ] ||
    "$build/moir-make-model" "$models/$spec" --shape "$shape" --dtype "$dtype" >/dev/null
  full="$models/$spec${variant:+.$variant}.moir"
  python3 "$root/bench/artifact_weights.py" attach "$thin" "$models/$spec" "$full" >/dev/null &&
    "$build/moir-run" --inspect --verify "$full" | grep "weights checksum: ok" >/dev/null ||
    { echo "$name: weights could not be rebuilt"; failed=$((failed + 1)); continue; }
  benches+=("$shape|$dtype|${variant:-default}|$full")
done
if [ ${#benches[@]} -gt 0 ]; then
  [ -x "$nvcc" ] && "$nvcc" -O3 -arch=native "$root/bench/gpu_bandwidth.cu" -o "$build/gpu_bandwidth" ||
    echo "gpu_bandwidth not built (no nvcc): no bandwidth bound measured"
  bandwidth before
  for round in $(seq "${ROUNDS:-1}"); do
    for b in "${benches[@]}"; do
      IFS='|' read -r shape dtype variant full <<<"$b"
      result=$("$build/moir-run" "$full" --tokens "$prompt" -n 128 --json) ||
        { failed=$((failed + 1)); continue; }
      echo "{\"round\": $round, \"model\": \"$shape\", \"dtype\": \"$dtype\", \"kernels\": \"$variant\", ${result#\{}" |
        sed 's/"tokens": \[[^]]*\], //'
    done
  done
  bandwidth after
fi
echo "$passed passed, $failed failed"
if [ $((passed + failed)) -eq 0 ]; then
  echo "FAIL: nothing was checked"
  exit 1
fi
[ "$failed" -eq 0 ]
