//===- moir-bandwidth.cpp - print the machine's memory bandwidth ------------===//
//
// moir-bandwidth: the STREAM-style triad moir-run --bandwidth measures, alone.
//
//===----------------------------------------------------------------------===//

#include "bandwidth.h"

#include <cstdio>
#include <cstring>

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf("usage: moir-bandwidth\n\n"
                  "Prints the machine's memory bandwidth in GB/s: the best of five STREAM-style\n"
                  "triads (c = a + 1.5 b) on every hardware thread over three 128 MiB buffers.\n"
                  "moir-run --bandwidth measures the same around a generation.\n");
      return 0;
    }
    std::fprintf(stderr, "moir-bandwidth: error: unknown argument '%s'; see moir-bandwidth --help\n",
                 argv[i]);
    return 2;
  }
  std::printf("%.2f GB/s\n", moir::measureBandwidth());
  return 0;
}
