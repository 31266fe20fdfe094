#!/usr/bin/env bash
# Builds the frontend's libFuzzer targets (clang++-22, -fsanitize=fuzzer,address)
# and runs each for SECONDS (default 60), seeded from the malformed-input
# corpus and the fixtures. New crashes land in build-fuzz/<target>/crash-*.
#
#   scripts/fuzz.sh [SECONDS] [safetensors|gguf|config|quant|artifact|tokenizer|schedule ...]
#
# `artifact` fuzzes the runtime's artifact loader and `tokenizer` its
# tokenizer.json reader (runtime/src, no LLVM), with UBSan too; `schedule`
# the Halide schedule texts of moirc --halide-schedules-in (needs Halide, as
# scripts/setup.sh installs it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${FUZZ_DIR:-$root/build-fuzz}"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(safetensors gguf config quant artifact tokenizer)
  ls -d "$root"/.venv-halide/lib/python3*/site-packages/halide >/dev/null 2>&1 && targets+=(schedule)
fi

bash "$root/scripts/setup.sh"
mkdir -p "$out"
# The readers need only LLVM's Support library (libLLVM) and the frontend's
# own sources; the frontend headers pull in MLIR headers but no MLIR code.
flags=(-g -O1 -std=c++17 -fno-rtti -fsanitize=fuzzer,address
       -I"$root/include" -I"$root/dialects" -I"$root/build/dialects"
       -isystem /usr/lib/llvm-22/include)
libs=(-L/usr/lib/llvm-22/lib -lLLVM -Wl,-rpath,/usr/lib/llvm-22/lib)
sources=("$root"/lib/Frontend/{WeightStore,Safetensors,GGUF,HFConfig,GGUFConfig,Quantization}.cpp)

for t in "${targets[@]}"; do
  bin="$out/${t}_fuzzer"
  if [ "$t" = artifact ]; then
    # The loader and what it links; the drivers' code loading is not reached
    # (inspection and untrusted opens load no code).
    sodium=()
    [ -f /usr/include/sodium.h ] && sodium=(-DMOIR_HAVE_SODIUM -lsodium)
    clang++-22 -g -O1 -std=c++17 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
      -I"$root/runtime/include" "$root/test/fuzz/artifact_fuzzer.cpp" \
      "$root"/runtime/src/{cpu_driver,cuda_driver,gpu_driver,hip_driver,mapped_file,model,parallel,session,signature,status,tokenizer}.cpp \
      "${sodium[@]}" -ldl -lpthread -o "$bin"
  elif [ "$t" = schedule ]; then
    halide=$(ls -d "$root"/.venv-halide/lib/python3*/site-packages/halide | head -1)
    clang++-22 -g -O1 -std=c++17 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
      -frtti -fexceptions -I"$root/include" -I"$root/lib/Target/Halide/Generator" \
      -I"$halide/include" "$root/test/fuzz/schedule_fuzzer.cpp" \
      "$root"/lib/Target/Halide/Generator/{Kernels,Schedule}.cpp \
      -L"$halide/lib64" -lHalide -Wl,-rpath,"$halide/lib64" -o "$bin"
  elif [ "$t" = tokenizer ]; then
    clang++-22 -g -O1 -std=c++17 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
      -DMOIR_HAVE_TOKENIZER -DMOIR_HAVE_UTF8PROC -I"$root/runtime/include" \
      "$root/test/fuzz/tokenizer_fuzzer.cpp" "$root"/runtime/src/{status,tokenizer}.cpp \
      -lpcre2-8 -lutf8proc -o "$bin"
  else
    clang++-22 "${flags[@]}" "$root/test/fuzz/${t}_fuzzer.cpp" "${sources[@]}" "${libs[@]}" -o "$bin"
  fi
  corpus="$out/$t/corpus"
  mkdir -p "$corpus"
  case "$t" in
    safetensors) find "$root/test/Frontend/corpus" -name model.safetensors -exec cp -f {} "$corpus/" \; 2>/dev/null
                 i=0; for f in $(find "$root/test/Frontend/corpus" -name model.safetensors); do cp "$f" "$corpus/seed$i"; i=$((i+1)); done ;;
    gguf) cp -f "$root"/test/Frontend/corpus/*.gguf "$corpus/" ;;
    quant) cp -f "$root"/test/fuzz/corpus/quant/* "$corpus/" ;;
    schedule) cp -f "$root"/test/fuzz/corpus/schedule/* "$corpus/" ;;
    artifact) cp -f "$root"/test/fuzz/corpus/artifact/* "$corpus/" ;;
    tokenizer) cp -f "$root"/test/fuzz/corpus/tokenizer/* "$corpus/"
               i=0; for f in "$root"/test/fixtures/tokenizers/*/tokenizer.json; do cp "$f" "$corpus/fixture$i.json"; i=$((i+1)); done ;;
    config) i=0; for f in $(find "$root/test/Frontend/corpus" "$root/test/fixtures" -name config.json); do cp "$f" "$corpus/seed$i"; i=$((i+1)); done ;;
  esac
  echo "== fuzzing $t for ${seconds}s"
  if (cd "$out/$t" && "$bin" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 corpus > log.txt 2>&1); then
    tail -12 "$out/$t/log.txt"
  else
    tail -30 "$out/$t/log.txt"
    echo "== $t: FOUND A FAILURE (input saved in $out/$t)"
    failed=1
  fi
done
exit "${failed:-0}"
