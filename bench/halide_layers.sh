#!/usr/bin/env bash
# Whole layers on a device (not a test): a 2-layer Mixtral-shaped model
# through the same Halide kernels on DEVICE (opencl, the default: PoCL, f32
# weights; or vulkan: lavapipe, bf16 weights), two ways, alternately REPEAT
# times (default 3) on one 64-token prompt and STEPS decode steps:
#   calls:  moirc --target=cpu --kernels=halide --halide-target=DEVICE
#           (each kernel call copies its activations to the device and its
#           results back; the residual additions and the embedding on MLIR);
#   layers: moirc --target=halide --halide-target=DEVICE (every layer op a
#           device kernel, the activations kept on the device between them).
# Prints one JSON line per run and the medians; with POCL=1 (OpenCL) also
# the OpenCL buffers PoCL created in one run of each (POCL_DEBUG=memory).
#
#   bench/halide_layers.sh [steps]     (decode steps, default 32)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }
steps="${1:-32}"
device="${DEVICE:-opencl}"
dtype=f32
[ "$device" = vulkan ] && dtype=bf16
name="mixtral-bench-$dtype-l2"
dir="$build/models/$name"
[ -f "$dir/model.safetensors" ] ||
  "$build/bin/moir-make-model" "$dir" --shape mixtral-bench --dtype "$dtype" --layers 2 >&2
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(64)))")
"$build/bin/moirc" "$dir" --target=cpu --kernels=halide --halide-target="$device" \
  --cache-capacity=1024 -o "$dir.hl.calls.moir"
"$build/bin/moirc" "$dir" --target=halide --halide-target="$device" \
  --cache-capacity=1024 -o "$dir.hl.layers.moir"
if [ "${POCL:-0}" = 1 ]; then
  for form in calls layers; do
    POCL_DEBUG=memory "$build/bin/moir-run" "$dir.hl.$form.moir" --tokens "$prompt" -n "$steps" \
      > /dev/null 2> "$dir.hl.$form.pocl"
    echo "{\"halide\": \"$form\", \"opencl_buffers_created\": $(grep -c 'Created Buffer' "$dir.hl.$form.pocl")}"
    rm -f "$dir.hl.$form.pocl"
  done
fi
RUNS=$(mktemp)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
MODEL="$name on $device" run_alternately halide 64 "$steps" "$prompt" "$dir.hl" calls layers
print_medians halide 64 calls layers
rm -f "$RUNS" "$dir.hl.calls.moir" "$dir.hl.layers.moir"
