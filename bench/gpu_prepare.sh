#!/usr/bin/env bash
# Prepares the GPU check and benchmark (run here, where MoIR is built):
# every fixture compiled for the GPU, and the benchmark models compiled and
# stripped of their weights (bench/artifact_weights.py), which the GPU machine
# regenerates with moir-make-model. Carry OUT_DIR to the GPU machine and run
#   bash scripts/gpu-check.sh OUT_DIR
#   bench/gpu_prepare.sh OUT_DIR [CHIP: sm_90 (default), sm_80, gfx942, ...] [shape:dtype ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
out="${1:?usage: gpu_prepare.sh OUT_DIR [CHIP] [shape:dtype ...]}"
chip="${2:-sm_90}"
shift $(( $# >= 2 ? 2 : 1 ))
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(mixtral-bench:bf16 mixtral-bench:f32 deepseek-v2-lite-bench:bf16)
target=nvidia; case "$chip" in gfx*) target=amd ;; esac
bash "$root/scripts/gpu-artifacts.sh" "$out" "$target" "$chip"
models="$build/models"
mkdir -p "$models"
# Conformance on fresh random weights: tiny models with a new seed, compiled
# for the CPU (generic x86-64-v3, which the GPU machine runs) and the GPU;
# gpu-check.sh compares their logits.
for shape in mixtral-tiny deepseek-tiny; do
  seed=$((RANDOM * 32768 + RANDOM))
  "$build/bin/moir-make-model" "$models/$shape-$seed" --shape "$shape" --dtype f32 --seed "$seed" >/dev/null
  "$build/bin/moirc" "$models/$shape-$seed" --target=cpu --cpu=x86-64-v3 --cache-capacity=64 \
    -o "$out/random-$shape.cpu.moir"
  "$build/bin/moirc" "$models/$shape-$seed" --target="$target" --gpu="$chip" --cache-capacity=64 \
    -o "$out/random-$shape.gpu.moir"
  echo "random $shape (seed $seed) compiled for cpu and $target $chip"
done
# The quantized fixtures on the default GPU path (weights dequantized to f32
# inside the kernels, f32 sums): gpu-check.sh holds them to their dequantized
# reference within 1e-4 of the largest |logit|, as the CPU's exact path; the
# compile-time quantization fixture once per --weight-type.
mkdir -p "$out/quant"
for f in gguf_q_legacy/model.gguf gguf_q4_k_m/model.gguf deepseek_v2_q8_0/model.gguf fp8_block \
         fp8_channel int8_channel awq gptq; do
  "$build/bin/moirc" "$root/test/fixtures/quant/$f" --target="$target" --gpu="$chip" --cache-capacity=64 \
    -o "$out/quant/${f%%/*}.moir"
done
for t in q8_0 q4_k q6_k int4 fp8; do
  "$build/bin/moirc" "$root/test/fixtures/quant/compile_time" --target="$target" --gpu="$chip" \
    --cache-capacity=64 --weight-type=$t -o "$out/quant/compile_time-$t.moir"
done
echo "quantized fixtures compiled for $target $chip"
# The matrix units (--gpu-tensor-cores=on; NVIDIA's default): every fixture
# family with bf16 weights and every quantized fixture with every product on
# them (--gpu-tensor-core-rows=1: the fixtures' short prompts and the decode
# steps too), checked by gpu-check.sh against transformers on the same
# weights; a fresh random Mistral-tiny in bf16 against the CPU.
tc=(--gpu-tensor-cores=on --gpu-tensor-core-rows=1)
mkdir -p "$out/tensor-cores"
for dir in "$root"/test/fixtures/*/; do
  family="$(basename "$dir")"
  [ -f "$dir/reference_bf16_weights.safetensors" ] || continue
  "$build/bin/moirc" "$dir" --target="$target" --gpu="$chip" --cache-capacity=64 --weight-type=bf16 \
    "${tc[@]}" -o "$out/tensor-cores/$family.moir" 2>/dev/null
done
for f in gguf_q_legacy/model.gguf gguf_q4_k_m/model.gguf deepseek_v2_q8_0/model.gguf fp8_block \
         fp8_channel int8_channel awq gptq; do
  "$build/bin/moirc" "$root/test/fixtures/quant/$f" --target="$target" --gpu="$chip" --cache-capacity=64 \
    "${tc[@]}" -o "$out/tensor-cores/quant-${f%%/*}.moir"
done
echo "tensor-core fixtures compiled for $target $chip"
seed=$((RANDOM * 32768 + RANDOM))
"$build/bin/moir-make-model" "$models/mistral-tiny-bf16-$seed" --shape mistral-tiny --dtype bf16 \
  --seed "$seed" >/dev/null
"$build/bin/moirc" "$models/mistral-tiny-bf16-$seed" --target=cpu --cpu=x86-64-v3 --cache-capacity=64 \
  -o "$out/random-mistral-tiny-bf16.cpu.moir"
"$build/bin/moirc" "$models/mistral-tiny-bf16-$seed" --target="$target" --gpu="$chip" --cache-capacity=64 \
  "${tc[@]}" -o "$out/random-mistral-tiny-bf16.tc.gpu.moir"
echo "random mistral-tiny bf16 (seed $seed) compiled for cpu and $target $chip with tensor cores"
for run in "${runs[@]}"; do
  shape="${run%%:*}" dtype="${run##*:}"
  dir="$models/$shape-$dtype"
  [ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape "$shape" --dtype "$dtype"
  "$build/bin/moirc" "$dir" --target="$target" --gpu="$chip" --cache-capacity=1024 -o "$dir-$chip.moir"
  python3 "$root/bench/artifact_weights.py" strip "$dir-$chip.moir" "$out/bench-$shape-$dtype.thin"
  # The same model with the matrix units the other way round from the
  # target's default (NVIDIA: off, .warp; AMD: on, .tc), benchmarked beside it.
  if [ "$dtype" != f32 ]; then
    twin=warp flag=off
    [ "$target" = amd ] && twin=tc flag=on
    "$build/bin/moirc" "$dir" --target="$target" --gpu="$chip" --cache-capacity=1024 \
      --gpu-tensor-cores=$flag -o "$dir-$chip-$twin.moir"
    python3 "$root/bench/artifact_weights.py" strip "$dir-$chip-$twin.moir" "$out/bench-$shape-$dtype.$twin.thin"
  fi
done
