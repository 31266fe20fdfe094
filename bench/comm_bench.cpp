// Bandwidth of moir_comm's all-to-all-v and all-reduce at one message size
// after another, against a memcpy of the same bytes in one process (the
// copy every exchange costs at least). Run by bench/comm_bench.sh:
//
//   moir-comm-bench --memcpy          one process: memcpy
//   mpirun -np N moir-comm-bench      N ranks: all-to-all-v, all-reduce
//
// Prints one line per measurement: "op<TAB>ranks<TAB>bytes<TAB>seconds per
// operation" (the slowest rank's mean). For all-to-all-v each rank sends
// `bytes` in all (bytes / ranks to each rank, itself included) and receives
// as much; for all-reduce `bytes` of floats are summed in place.
#include "moir/comm.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Enough repetitions that small sizes are not all clock noise, few enough
/// that 64 MiB on an oversubscribed machine stays short.
int repetitions(size_t bytes) {
  return static_cast<int>(std::clamp<size_t>((size_t{256} << 20) / bytes, 5, 500));
}

void require(moir_status status, const char *what) {
  if (status != MOIR_OK) {
    std::fprintf(stderr, "moir-comm-bench: %s: %s\n", what, moir_last_error());
    std::exit(1);
  }
}

} // namespace

int main(int argc, char **argv) {
  std::vector<size_t> sizes;
  for (size_t b = 8 << 10; b <= (size_t{64} << 20); b *= 4)
    sizes.push_back(b);
  if (sizes.back() != (size_t{64} << 20))
    sizes.push_back(size_t{64} << 20);

  if (argc > 1 && std::string(argv[1]) == "--memcpy") {
    for (size_t bytes : sizes) {
      std::vector<char> from(bytes, 1), to(bytes, 0);
      int n = repetitions(bytes);
      std::memcpy(to.data(), from.data(), bytes); // touch the pages first
      double start = now();
      for (int i = 0; i < n; ++i) {
        from[static_cast<size_t>(i) % bytes] = static_cast<char>(i);
        std::memcpy(to.data(), from.data(), bytes);
      }
      double each = (now() - start) / n;
      std::printf("memcpy\t1\t%zu\t%.9f\t%d\n", bytes, each, to[bytes / 2]);
    }
    return 0;
  }

  moir_comm *c = nullptr;
  require(moir_comm_world(&c), "moir_comm_world");
  int rank = moir_comm_rank(c), size = moir_comm_size(c);
  size_t ranks = static_cast<size_t>(size);
  std::vector<double> slowest(ranks);
  auto report = [&](const char *op, size_t bytes, double mine) {
    require(moir_comm_all_gather(c, &mine, sizeof mine, slowest.data()), "gathering times");
    if (rank == 0)
      std::printf("%s\t%d\t%zu\t%.9f\n", op, size, bytes,
                  *std::max_element(slowest.begin(), slowest.end()));
    std::fflush(stdout);
  };
  for (size_t bytes : sizes) {
    int n = repetitions(bytes);
    size_t share = bytes / ranks;
    std::vector<char> send(share * ranks, static_cast<char>(rank)), recv(share * ranks, 0);
    std::vector<size_t> counts(ranks, share), offsets(ranks);
    for (size_t j = 0; j < ranks; ++j)
      offsets[j] = j * share;
    auto exchange = [&] {
      require(moir_comm_all_to_all_v(c, send.data(), counts.data(), offsets.data(), recv.data(),
                                     counts.data(), offsets.data()),
              "all-to-all-v");
    };
    exchange(); // warm up: connections, page faults
    require(moir_comm_barrier(c), "barrier");
    double start = now();
    for (int i = 0; i < n; ++i)
      exchange();
    report("all_to_all_v", bytes, (now() - start) / n);

    std::vector<float> data(bytes / sizeof(float), 1.0f);
    require(moir_comm_all_reduce_sum_f32(c, data.data(), data.size()), "all-reduce");
    require(moir_comm_barrier(c), "barrier");
    start = now();
    // The sums grow (to inf after enough repetitions): additions of
    // infinities cost what others do; only subnormals are slow.
    for (int i = 0; i < n; ++i)
      require(moir_comm_all_reduce_sum_f32(c, data.data(), data.size()), "all-reduce");
    report("all_reduce", bytes, (now() - start) / n);
  }
  return 0;
}
