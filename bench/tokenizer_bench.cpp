// Encode speed of the runtime's tokenizer: MiB/s over a text repeated to
// about 8 MiB, best of 3 (bench/tokenizer_bench.sh builds and runs it).
//
//   moir_tokenizer_bench TOKENIZER_JSON TEXT_FILE
#include "moir/runtime.h"

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: moir_tokenizer_bench TOKENIZER_JSON TEXT_FILE\n");
    return 2;
  }
  moir_tokenizer *t = nullptr;
  if (moir_tokenizer_open(argv[1], &t) != MOIR_OK) {
    std::fprintf(stderr, "error: %s\n", moir_last_error());
    return 1;
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  std::string unit = s.str(), text;
  while (text.size() < (8u << 20))
    text += unit;
  std::vector<int32_t> ids(text.size() + 16);
  // Best of 3 of: the whole text in one call (one 8 MiB document), and the
  // same text one corpus copy per call (prompt-sized documents of a few KiB;
  // a tokenizer without a pre-tokenizer, SentencePiece style, sees each call
  // as one word, so the one-call figure is its worst case).
  auto measure = [&](size_t unitBytes, size_t *tokens) {
    double best = 1e30;
    for (int run = 0; run < 3; ++run) {
      *tokens = 0;
      auto t0 = std::chrono::steady_clock::now();
      for (size_t at = 0; at < text.size(); at += unitBytes) {
        size_t n = 0, len = std::min(unitBytes, text.size() - at);
        if (moir_tokenize(t, text.data() + at, len, ids.data(), ids.size(), &n) != MOIR_OK) {
          std::fprintf(stderr, "error: %s\n", moir_last_error());
          std::exit(1);
        }
        *tokens += n;
      }
      best = std::min(best,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  size_t whole = 0, perUnit = 0;
  double a = measure(text.size(), &whole), b = measure(unit.size(), &perUnit);
  double mib = text.size() / 1048576.0;
  std::printf("%s: %.2f MiB; one call: %.1f MiB/s, %zu tokens (%.0f tokens/s); "
              "%zu-byte calls: %.1f MiB/s\n",
              argv[1], mib, mib / a, whole, whole / a, unit.size(), mib / b);
  moir_tokenizer_close(t);
  return 0;
}
