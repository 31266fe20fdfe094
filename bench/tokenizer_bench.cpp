// Encode speed of the runtime's tokenizer: MiB/s over a text repeated to
// about 8 MiB, best of 3 (bench/tokenizer_bench.sh builds and runs it).
//
//   moir_tokenizer_bench TOKENIZER_JSON TEXT_FILE
#include "moir/runtime.h"

#include <chrono>
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
  double best = 1e30;
  size_t n = 0;
  for (int run = 0; run < 3; ++run) {
    auto t0 = std::chrono::steady_clock::now();
    if (moir_tokenize(t, text.data(), text.size(), ids.data(), ids.size(), &n) != MOIR_OK) {
      std::fprintf(stderr, "error: %s\n", moir_last_error());
      return 1;
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("%s: %.2f MiB in %.3f s: %.1f MiB/s, %zu tokens (%.0f tokens/s)\n", argv[1],
              text.size() / 1048576.0, best, text.size() / 1048576.0 / best, n, n / best);
  moir_tokenizer_close(t);
  return 0;
}
