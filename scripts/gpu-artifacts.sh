#!/usr/bin/env bash
# Compiles every fixture family for a GPU target into OUT_DIR/<family>.moir,
# ready to be carried to a GPU machine and checked there with
# scripts/gpu-check.sh (which needs no MLIR/LLVM).
#   bash scripts/gpu-artifacts.sh OUT_DIR [nvidia|amd] [CHIP]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: gpu-artifacts.sh OUT_DIR [nvidia|amd] [CHIP]}"
target="${2:-nvidia}"
chip="${3:-sm_90}"
[ -x "$root/build/bin/moirc" ] || bash "$root/scripts/build.sh"
mkdir -p "$out"
ext=fatbin; [ "$target" = amd ] && ext=hsaco
for dir in "$root"/test/fixtures/*/; do
  # Model families only (chat templates, tokenizers, quant/ are not models).
  [ -f "$dir/config.json" ] || continue
  family="$(basename "$dir")"
  "$root/build/bin/moirc" "$dir" --target="$target" --gpu="$chip" --cache-capacity=64 \
    -o "$out/$family.moir" --dump-device-code="$out/$family.$ext"
  echo "compiled $family for $target $chip"
done
