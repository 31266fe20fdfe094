#!/usr/bin/env bash
# Encode speed of the runtime's tokenizer (MiB/s, best of 3 over ~8 MiB of the
# conformance corpus repeated), for every fixture tokenizer. Uses the main
# build's runtime (bash scripts/build.sh first).
#
#   bash bench/tokenizer_bench.sh [TEXT_FILE]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
text="${1:-$root/test/fixtures/tokenizers/corpus.txt}"
bin="$build/bench/moir_tokenizer_bench"
mkdir -p "$build/bench"
"${CXX:-clang++-22}" -O2 -std=c++17 -I"$root/runtime/include" "$root/bench/tokenizer_bench.cpp" \
  -L"$build/runtime" -lmoir_runtime -Wl,-rpath,"$build/runtime" -o "$bin"
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), one thread"
tokenizers=("$root"/test/fixtures/tokenizers/*/tokenizer.json)
# A real-size vocabulary: the Gemma 3 270M GGUF's (262144 pieces with scores),
# as moirc packs it, when scripts/fetch-gemma3.sh has brought the model.
gguf="$build/models/gemma-3-270m-q4_k_m.gguf"
if [ -f "$gguf" ]; then
  "$build/bin/moirc" "$gguf" --tokenizer-out="$build/bench/gemma3-tokenizer"
  tokenizers+=("$build/bench/gemma3-tokenizer/tokenizer.json")
fi
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${tokenizers[@]}"; do
  "$bin" "$t" "$text"
done
