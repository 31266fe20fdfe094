// Checks moir_comm (moir/comm.h) on however many ranks it is started with:
// alone (the "self" backend) or under mpirun (the "mpi" plugin). Every rank
// derives every rank's data from one seed that rank 0 draws afresh and
// broadcasts, so each can compute the expected result of a collective
// locally. Prints "N passed, N failed" per rank; a run that checked nothing
// fails.
//
//   moir_comm_test --expect-size N    the checks (N: the ranks expected)
//   moir_comm_test --die-rank R       rank R _exit(3)s before a barrier the
//                                     others wait in (comm_rank_dies.sh)
//   moir_comm_test --abort-in-compiled  rank 0 calls the compiled-code
//                                     all-reduce alone: it must time out and
//                                     end the job (comm_rank_dies.sh)
#include "moir/comm.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <limits>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

int passed = 0, failed = 0, myRank = 0;

void check(bool ok, const std::string &what) {
  if (ok) {
    ++passed;
    return;
  }
  ++failed;
  std::fprintf(stderr, "rank %d: FAIL: %s\n", myRank, what.c_str());
}

bool has(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

/// Checks that `status` is `expected` and the error names every one of
/// `parts`.
void checkFails(moir_status status, moir_status expected, std::vector<std::string> parts,
                const std::string &what) {
  std::string error = moir_last_error();
  bool ok = status == expected;
  for (const std::string &p : parts)
    ok = ok && has(error, p);
  check(ok, what + ": expected " + moir_status_name(expected) + " naming the problem, got " +
                moir_status_name(status) + " \"" + error + "\"");
}

/// splitmix64: every rank's data from (seed, rank, purpose).
struct Random {
  uint64_t state;
  Random(uint64_t seed, int rank, uint64_t purpose)
      : state(seed ^ (static_cast<uint64_t>(rank) + 1) * 0x9e3779b97f4a7c15ull ^ purpose << 32) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [-1, 1], never 0.
  float value() {
    float v = static_cast<float>(next() >> 40) / static_cast<float>(1 << 24) * 2 - 1;
    return v == 0 ? 0.5f : v;
  }
  unsigned char byte() { return static_cast<unsigned char>(next() >> 56); }
};

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void checkPluginErrors() {
  // Before the plugin is loaded for real: a wrong path is named.
  setenv("MOIR_COMM_MPI_PLUGIN", "/nonexistent/libmoir_comm_mpi.so", 1);
  moir_comm *c = nullptr;
  checkFails(moir_comm_init("mpi", &c), MOIR_ERROR_UNSUPPORTED,
             {"/nonexistent/libmoir_comm_mpi.so", "MOIR_COMM_MPI_PLUGIN"},
             "moir_comm_init(\"mpi\") with a plugin path that does not exist");
  check(c == nullptr, "a failed moir_comm_init leaves *out NULL");
  unsetenv("MOIR_COMM_MPI_PLUGIN");
}

void checkInitErrors() {
  moir_comm *c = nullptr;
  checkFails(moir_comm_init("carrier-pigeon", &c), MOIR_ERROR_INVALID_ARGUMENT,
             {"carrier-pigeon", "expected auto, mpi, nccl or self"}, "an unknown backend");
  checkFails(moir_comm_init("self", nullptr), MOIR_ERROR_INVALID_ARGUMENT, {"out is NULL"},
             "moir_comm_init without out");
  setenv("MOIR_COMM_TIMEOUT", "soon", 1);
  checkFails(moir_comm_init("self", &c), MOIR_ERROR_INVALID_ARGUMENT,
             {"MOIR_COMM_TIMEOUT='soon'", "positive number of seconds"}, "a bad MOIR_COMM_TIMEOUT");
  unsetenv("MOIR_COMM_TIMEOUT");
  // NCCL without a GPU: asking for it must say what is missing, on every
  // rank. Some machines without a GPU have the CUDA toolkit (libnccl.so.2)
  // but no driver (libcuda.so.1).
  void *nccl = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
  void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!nccl)
    checkFails(moir_comm_init("nccl", &c), MOIR_ERROR_UNSUPPORTED,
               {"libnccl.so.2 not found (NCCL comes with the CUDA toolkit on GPU machines)"},
               "moir_comm_init(\"nccl\") without NCCL");
  else if (!cuda)
    checkFails(moir_comm_init("nccl", &c), MOIR_ERROR_UNSUPPORTED,
               {"libcuda.so.1 not found (NCCL needs the NVIDIA driver)"},
               "moir_comm_init(\"nccl\") with NCCL but without the driver");
  else
    std::printf("rank %d: NCCL and a CUDA driver are installed: not checking their absence\n",
                myRank);
  for (void *library : {nccl, cuda})
    if (library)
      dlclose(library);
  // The self backend is always there, whatever started this process.
  check(moir_comm_init("self", &c) == MOIR_OK && moir_comm_size(c) == 1 &&
            moir_comm_rank(c) == 0 && std::string(moir_comm_backend(c)) == "self",
        std::string("moir_comm_init(\"self\"): ") + moir_last_error());
  float x[3] = {1, 2, 3};
  check(moir_comm_all_reduce_sum_f32(c, x, 3) == MOIR_OK && x[0] == 1 && x[2] == 3,
        "self all-reduce leaves the data");
  size_t bytes[1] = {2}, offsets[1] = {1}, recvOffsets[1] = {0};
  char in[3] = {'a', 'b', 'c'}, out[2] = {0, 0};
  check(moir_comm_all_to_all_v(c, in, bytes, offsets, out, bytes, recvOffsets) == MOIR_OK &&
            out[0] == 'b' && out[1] == 'c',
        "self all-to-all-v copies");
  size_t fewer[1] = {1};
  checkFails(moir_comm_all_to_all_v(c, in, bytes, offsets, out, fewer, recvOffsets),
             MOIR_ERROR_INVALID_ARGUMENT, {"sends 2 bytes to itself", "receive 1"},
             "self all-to-all-v with mismatched counts");
  moir_comm_finalize(c);
}

/// Bad arguments, the same on every rank: they fail alike everywhere before
/// anything is sent (no rank is left waiting).
void checkArguments(moir_comm *c) {
  int size = moir_comm_size(c);
  float f = 1;
  checkFails(moir_comm_barrier(nullptr), MOIR_ERROR_INVALID_ARGUMENT, {"moir_comm_barrier", "NULL"},
             "a NULL communicator");
  checkFails(moir_comm_broadcast(c, &f, sizeof f, size), MOIR_ERROR_OUT_OF_RANGE,
             {"root " + std::to_string(size), "expected 0 to " + std::to_string(size - 1)},
             "a broadcast root past the last rank");
  checkFails(moir_comm_broadcast(c, &f, sizeof f, -1), MOIR_ERROR_OUT_OF_RANGE, {"root -1"},
             "a negative broadcast root");
  checkFails(moir_comm_broadcast(c, nullptr, 4, 0), MOIR_ERROR_INVALID_ARGUMENT,
             {"data is NULL"}, "a NULL broadcast buffer");
  checkFails(moir_comm_all_reduce_sum_f32(c, &f, std::numeric_limits<size_t>::max() / 4 + 1),
             MOIR_ERROR_OUT_OF_RANGE, {"overflows"}, "an all-reduce count that overflows");
  checkFails(moir_comm_all_reduce_sum_f32(c, nullptr, 3), MOIR_ERROR_INVALID_ARGUMENT,
             {"data is NULL for 3 floats"}, "a NULL all-reduce buffer");
  if (size > 1)
    checkFails(moir_comm_all_gather(c, &f, std::numeric_limits<size_t>::max() / 2 + 1, &f),
               MOIR_ERROR_OUT_OF_RANGE, {"overflow"}, "an all-gather size that overflows");
  std::vector<size_t> bytes(static_cast<size_t>(size), 1), offsets(static_cast<size_t>(size), 0);
  std::vector<size_t> huge = offsets;
  huge[0] = std::numeric_limits<size_t>::max();
  char buffer[64] = {0};
  checkFails(moir_comm_all_to_all_v(c, buffer, bytes.data(), huge.data(), buffer, bytes.data(),
                                    offsets.data()),
             MOIR_ERROR_OUT_OF_RANGE, {"send_offsets[0] + send_bytes[0] overflows"},
             "an all-to-all-v offset that overflows");
  checkFails(moir_comm_all_to_all_v(c, buffer, nullptr, offsets.data(), buffer, bytes.data(),
                                    offsets.data()),
             MOIR_ERROR_INVALID_ARGUMENT, {"one is NULL"}, "a NULL all-to-all-v count array");
  checkFails(moir_comm_all_to_all_v(c, buffer, bytes.data(), offsets.data(), nullptr,
                                    bytes.data(), offsets.data()),
             MOIR_ERROR_INVALID_ARGUMENT, {"recv is NULL"}, "a NULL all-to-all-v receive buffer");
  // A bad destination on the last rank only: that rank names it, the others
  // are told which rank it was (the count exchange carries the news).
  int32_t dest[2] = {0, myRank == size - 1 ? size : 0};
  float rows[2] = {1, 2};
  moir_comm_routes *d = nullptr;
  moir_status status = moir_comm_dispatch(c, rows, 2, sizeof(float), dest, &d);
  if (myRank == size - 1)
    checkFails(status, MOIR_ERROR_INVALID_ARGUMENT,
               {"dest[1] = " + std::to_string(size), "is not a rank"},
               "a dispatch destination that is not a rank");
  else
    checkFails(status, MOIR_ERROR_INVALID_ARGUMENT,
               {"rank " + std::to_string(size - 1) + " passed a destination that is not a rank"},
               "another rank's bad dispatch destination");
  check(d == nullptr, "a failed dispatch returns no handle");
}

void checkAllReduce(moir_comm *c, uint64_t seed) {
  int size = moir_comm_size(c);
  const size_t n = 4099; // not a multiple of anything an implementation splits by
  std::vector<float> data(n);
  std::vector<double> sum(n, 0), magnitude(n, 0);
  for (int r = 0; r < size; ++r) {
    Random random(seed, r, 1);
    for (size_t i = 0; i < n; ++i) {
      float v = random.value();
      if (r == myRank)
        data[i] = v;
      sum[i] += v;
      magnitude[i] += std::fabs(v);
    }
  }
  moir_status status = moir_comm_all_reduce_sum_f32(c, data.data(), n);
  check(status == MOIR_OK, std::string("all-reduce: ") + moir_last_error());
  // float sums in an order of the backend's: within a few ulps of the
  // magnitude per addition.
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i)
    if (std::fabs(data[i] - sum[i]) > 1e-6 * size * magnitude[i] + 1e-30)
      ++bad;
  check(bad == 0, "all-reduce of random data: " + std::to_string(bad) + " of " +
                      std::to_string(n) + " sums wrong");

  // Exact: one rank holds each element (bit patterns of every kind), the
  // others add zeros, so the sum is that value bit for bit.
  std::vector<float> exact(n, 0.0f), expected(n);
  for (size_t i = 0; i < n; ++i) {
    int owner = static_cast<int>(i % static_cast<size_t>(size));
    Random random(seed, owner, 2 + i);
    uint32_t bits = static_cast<uint32_t>(random.next());
    // Finite only: clear exponent all-ones (inf/NaN).
    if ((bits & 0x7f800000u) == 0x7f800000u)
      bits &= 0xbfffffffu;
    std::memcpy(&expected[i], &bits, sizeof bits);
    if (owner == myRank)
      exact[i] = expected[i];
  }
  status = moir_comm_all_reduce_sum_f32(c, exact.data(), n);
  size_t differ = 0;
  for (size_t i = 0; i < n; ++i)
    differ += std::memcmp(&exact[i], &expected[i], sizeof(float)) != 0 &&
              !(exact[i] == 0 && expected[i] == 0); // -0 + 0 is +0
  check(status == MOIR_OK && differ == 0,
        "all-reduce with one nonzero per element is exact: " + std::to_string(differ) +
            " differ; " + moir_last_error());
  check(moir_comm_all_reduce_sum_f32(c, nullptr, 0) == MOIR_OK, "an all-reduce of nothing");

  // The entry compiled code calls, on the world communicator.
  moir_comm *world = nullptr;
  if (moir_comm_world(&world) == MOIR_OK) {
    std::vector<float> again(n);
    Random random(seed, myRank, 1);
    for (float &v : again)
      v = random.value();
    moir_rt_all_reduce_sum_f32(again.data(), static_cast<int64_t>(n));
    bad = 0;
    for (size_t i = 0; i < n; ++i)
      bad += std::fabs(again[i] - sum[i]) > 1e-6 * size * magnitude[i] + 1e-30;
    check(bad == 0, "moir_rt_all_reduce_sum_f32: " + std::to_string(bad) + " sums wrong");
  } else {
    check(false, std::string("moir_comm_world: ") + moir_last_error());
  }
}

void checkAllGather(moir_comm *c, uint64_t seed) {
  int size = moir_comm_size(c);
  const size_t bytes = 37;
  std::vector<unsigned char> send(bytes), recv(bytes * static_cast<size_t>(size), 0);
  Random mine(seed, myRank, 3);
  for (auto &b : send)
    b = mine.byte();
  moir_status status = moir_comm_all_gather(c, send.data(), bytes, recv.data());
  bool ok = status == MOIR_OK;
  for (int r = 0; r < size && ok; ++r) {
    Random random(seed, r, 3);
    for (size_t k = 0; k < bytes; ++k)
      ok = ok && recv[static_cast<size_t>(r) * bytes + k] == random.byte();
  }
  check(ok, std::string("all-gather in rank order: ") + moir_last_error());
  check(moir_comm_all_gather(c, nullptr, 0, nullptr) == MOIR_OK, "an all-gather of nothing");

  // Tensor parallelism's column all-gather on the world communicator: each
  // rank passes its units' columns of every row (uneven shares, a short last
  // unit, one row and several), every rank gets the matrix bit for bit.
  struct Case {
    int64_t rows, cols, unit;
  };
  for (Case k : {Case{5, 301, 16}, Case{1, 72, 8}, Case{3, 10, 1}, Case{0, 64, 4}}) {
    int64_t units = (k.cols + k.unit - 1) / k.unit;
    auto first = [&](int64_t r) { return std::min(r * units / size * k.unit, k.cols); };
    auto value = [&](int64_t i, int64_t j) {
      return static_cast<float>(i * 1000 + j) + 0.25f + static_cast<float>(seed % 7);
    };
    int64_t a = first(myRank), e = first(myRank + 1);
    std::vector<float> in(static_cast<size_t>(k.rows * (e - a))),
        out(static_cast<size_t>(k.rows * k.cols), -1.0f);
    for (int64_t i = 0; i < k.rows; ++i)
      for (int64_t j = a; j < e; ++j)
        in[static_cast<size_t>(i * (e - a) + (j - a))] = value(i, j);
    moir_rt_all_gather_f32(in.data(), out.data(), k.rows, k.cols, k.unit);
    size_t wrong = 0;
    for (int64_t i = 0; i < k.rows; ++i)
      for (int64_t j = 0; j < k.cols; ++j)
        wrong += out[static_cast<size_t>(i * k.cols + j)] != value(i, j);
    check(wrong == 0, "moir_rt_all_gather_f32 of " + std::to_string(k.rows) + "x" +
                          std::to_string(k.cols) + " in units of " + std::to_string(k.unit) +
                          ": " + std::to_string(wrong) + " values wrong");
  }
}

/// Bytes rank `from` sends rank `to` in the all-to-all-v check: uneven, 0
/// for some pairs (and for a rank to itself when from + to is even).
size_t pairBytes(int from, int to) { return static_cast<size_t>((from * 7 + to * 3) % 5) * 11; }

void checkAllToAllV(moir_comm *c, uint64_t seed) {
  int size = moir_comm_size(c);
  size_t n = static_cast<size_t>(size);
  // Send regions laid out in reverse rank order, receive regions too, with
  // 3-byte gaps that must stay untouched.
  std::vector<size_t> sendBytes(n), sendOffsets(n), recvBytes(n), recvOffsets(n);
  size_t sendAt = 0, recvAt = 0;
  for (int j = size - 1; j >= 0; --j) {
    size_t u = static_cast<size_t>(j);
    sendBytes[u] = pairBytes(myRank, j);
    sendOffsets[u] = sendAt;
    sendAt += sendBytes[u] + 3;
    recvBytes[u] = pairBytes(j, myRank);
    recvOffsets[u] = recvAt;
    recvAt += recvBytes[u] + 3;
  }
  std::vector<unsigned char> send(sendAt), recv(recvAt, 0xee);
  for (int j = 0; j < size; ++j) {
    Random random(seed, myRank * 1000 + j, 4);
    for (size_t k = 0; k < sendBytes[static_cast<size_t>(j)]; ++k)
      send[sendOffsets[static_cast<size_t>(j)] + k] = random.byte();
  }
  moir_status status = moir_comm_all_to_all_v(c, send.data(), sendBytes.data(), sendOffsets.data(),
                                              recv.data(), recvBytes.data(), recvOffsets.data());
  bool ok = status == MOIR_OK;
  for (int i = 0; i < size && ok; ++i) {
    Random random(seed, i * 1000 + myRank, 4);
    size_t u = static_cast<size_t>(i);
    for (size_t k = 0; k < recvBytes[u]; ++k)
      ok = ok && recv[recvOffsets[u] + k] == random.byte();
    for (size_t k = 0; k < 3; ++k)
      ok = ok && recv[recvOffsets[u] + recvBytes[u] + k] == 0xee;
  }
  check(ok, std::string("all-to-all-v with uneven, zero and reordered regions: ") +
                moir_last_error());
  std::vector<size_t> zeros(n, 0);
  check(moir_comm_all_to_all_v(c, nullptr, zeros.data(), zeros.data(), nullptr, zeros.data(),
                               zeros.data()) == MOIR_OK,
        std::string("an all-to-all-v of nothing: ") + moir_last_error());
}

void checkBroadcast(moir_comm *c, uint64_t seed) {
  int size = moir_comm_size(c), root = size - 1;
  std::vector<unsigned char> data(1000);
  Random random(seed, root, 5);
  for (auto &b : data)
    b = myRank == root ? random.byte() : static_cast<unsigned char>(myRank);
  moir_status status = moir_comm_broadcast(c, data.data(), data.size(), root);
  Random expected(seed, root, 5);
  bool ok = status == MOIR_OK;
  for (auto b : data)
    ok = ok && b == expected.byte();
  check(ok, "broadcast from rank " + std::to_string(root) + ": " + moir_last_error());
  check(moir_comm_broadcast(c, nullptr, 0, 0) == MOIR_OK, "a broadcast of nothing");
  check(moir_comm_barrier(c) == MOIR_OK, std::string("barrier: ") + moir_last_error());
}

constexpr size_t kRowFloats = 6;

/// Rank r's dispatch input: its rows and their destinations. Rank 0's are
/// grouped already (the handle keeps no order then); rank 1 sends nothing.
void dispatchInput(uint64_t seed, int r, int size, std::vector<float> *rows,
                   std::vector<int32_t> *dest) {
  size_t count = r == 1 ? 0 : 13 + 7 * static_cast<size_t>(r);
  Random random(seed, r, 6);
  rows->resize(count * kRowFloats);
  dest->resize(count);
  for (size_t i = 0; i < count; ++i) {
    (*dest)[i] = static_cast<int32_t>(random.next() % static_cast<uint64_t>(size));
    for (size_t k = 0; k < kRowFloats; ++k)
      (*rows)[i * kRowFloats + k] = random.value();
  }
  if (r == 0)
    for (size_t i = 0; i < count; ++i)
      (*dest)[i] = static_cast<int32_t>(i * static_cast<size_t>(size) / count);
}

void checkDispatchCombine(moir_comm *c, uint64_t seed) {
  int size = moir_comm_size(c);
  std::vector<float> rows;
  std::vector<int32_t> dest;
  dispatchInput(seed, myRank, size, &rows, &dest);
  size_t count = dest.size();
  moir_comm_routes *d = nullptr;
  moir_status status =
      moir_comm_dispatch(c, rows.data(), count, kRowFloats * sizeof(float), dest.data(), &d);
  check(status == MOIR_OK, std::string("dispatch: ") + moir_last_error());
  if (status != MOIR_OK)
    return;
  // Expected: by source rank, then in the source's row order.
  std::vector<float> expected;
  bool countsOk = true;
  for (int s = 0; s < size; ++s) {
    std::vector<float> theirRows;
    std::vector<int32_t> theirDest;
    dispatchInput(seed, s, size, &theirRows, &theirDest);
    size_t fromS = 0;
    for (size_t i = 0; i < theirDest.size(); ++i)
      if (theirDest[i] == myRank) {
        expected.insert(expected.end(), theirRows.begin() + static_cast<long>(i * kRowFloats),
                        theirRows.begin() + static_cast<long>((i + 1) * kRowFloats));
        ++fromS;
      }
    countsOk = countsOk && moir_comm_routes_from(d, s) == fromS;
  }
  size_t received = moir_comm_routes_received(d);
  auto *data = static_cast<float *>(moir_comm_routes_data(d));
  check(countsOk && received * kRowFloats == expected.size() &&
            (expected.empty() ||
             std::memcmp(data, expected.data(), expected.size() * sizeof(float)) == 0),
        "dispatch delivers the rows grouped by source in rank and row order");
  // The "experts": x -> 2x + this rank, in place; and each row's sum, a
  // smaller row (combine may change the row size).
  std::vector<float> sums(received);
  for (size_t k = 0; k < received; ++k) {
    float total = 0;
    for (size_t j = 0; j < kRowFloats; ++j) {
      total += data[k * kRowFloats + j];
      data[k * kRowFloats + j] = 2 * data[k * kRowFloats + j] + static_cast<float>(myRank);
    }
    sums[k] = total;
  }
  std::vector<float> out(count * kRowFloats, -7), outSums(count, -7);
  status = moir_comm_combine(c, d, data, kRowFloats * sizeof(float), out.data());
  moir_status sumStatus = moir_comm_combine(c, d, sums.data(), sizeof(float), outSums.data());
  bool ok = status == MOIR_OK && sumStatus == MOIR_OK;
  for (size_t i = 0; i < count && ok; ++i) {
    float total = 0;
    for (size_t j = 0; j < kRowFloats; ++j) {
      total += rows[i * kRowFloats + j];
      ok = ok && out[i * kRowFloats + j] ==
                     2 * rows[i * kRowFloats + j] + static_cast<float>(dest[i]);
    }
    ok = ok && outSums[i] == total;
  }
  check(ok, std::string("combine returns row i's processed version to row i: ") +
                moir_last_error());
  moir_comm_routes_free(d);
}

void checkAgreement(moir_comm *c) {
  int size = moir_comm_size(c);
  check(moir_comm_check_agree(c, "artifact checksum", 0x1234abcdull) == MOIR_OK,
        std::string("check_agree with equal values: ") + moir_last_error());
  if (size == 1)
    return;
  uint64_t value = myRank == size - 1 ? 7 : 42;
  std::string others = size == 2 ? "rank 0 has 42" : "ranks 0";
  checkFails(moir_comm_check_agree(c, "artifact checksum", value), MOIR_ERROR_FORMAT,
             {"artifact checksum differs between ranks", others,
              "rank " + std::to_string(size - 1) + " has 7 (0x7)"},
             "check_agree names the rank that disagrees");
}

/// Ranks > 0 skip a barrier: rank 0's must fail within about the time-out,
/// naming it; then the others arrive late, so the communicator drains and
/// MPI still finalizes.
void checkTimeout(moir_comm *c) {
  if (moir_comm_size(c) == 1)
    return;
  setenv("MOIR_COMM_TIMEOUT", "2", 1);
  moir_comm *t = nullptr;
  moir_status status = moir_comm_init("auto", &t);
  unsetenv("MOIR_COMM_TIMEOUT");
  check(status == MOIR_OK, std::string("a second communicator: ") + moir_last_error());
  if (status != MOIR_OK)
    return;
  if (myRank == 0) {
    double start = seconds();
    status = moir_comm_barrier(t);
    double took = seconds() - start;
    checkFails(status, MOIR_ERROR_IO,
               {"moir_comm_barrier (rank 0 of", "MPI_Ibarrier timed out after 2 s",
                "MOIR_COMM_TIMEOUT", "a rank is missing, dead or running a different program"},
               "a barrier the other ranks skip");
    check(took >= 1.9 && took < 5, "the time-out took " + std::to_string(took) + " s, not 2-5 s");
    checkFails(moir_comm_barrier(t), MOIR_ERROR_IO, {"out of step", "finalize it"},
               "an operation after a time-out fails at once");
    check(moir_comm_barrier(c) == MOIR_OK, moir_last_error());
  } else {
    check(moir_comm_barrier(c) == MOIR_OK, moir_last_error());
    check(moir_comm_barrier(t) == MOIR_OK,
          std::string("the late barrier completes rank 0's: ") + moir_last_error());
  }
  moir_comm_finalize(t);
}

int parseInt(const char *text) { return text ? std::atoi(text) : -1; }

} // namespace

int main(int argc, char **argv) {
  int expectSize = -1, dieRank = -1;
  bool abortInCompiled = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--expect-size" && i + 1 < argc)
      expectSize = parseInt(argv[++i]);
    else if (arg == "--die-rank" && i + 1 < argc)
      dieRank = parseInt(argv[++i]);
    else if (arg == "--abort-in-compiled")
      abortInCompiled = true;
    else {
      std::fprintf(stderr, "moir_comm_test: unknown argument '%s' (expected --expect-size N, "
                           "--die-rank R or --abort-in-compiled)\n",
                   argv[i]);
      return 2;
    }
  }
  checkPluginErrors();
  moir_comm *c = nullptr;
  if (moir_comm_world(&c) != MOIR_OK) {
    std::fprintf(stderr, "moir_comm_test: moir_comm_world: %s\n", moir_last_error());
    return 1;
  }
  myRank = moir_comm_rank(c);
  int size = moir_comm_size(c);

  if (dieRank >= 0) {
    if (myRank == dieRank) {
      std::fprintf(stderr, "rank %d: exiting with status 3 before the barrier\n", myRank);
      _exit(3);
    }
    moir_comm_barrier(c);
    std::fprintf(stderr, "rank %d: the barrier returned: %s\n", myRank, moir_last_error());
    return 0;
  }
  if (abortInCompiled) {
    if (myRank == 0) {
      float x[4] = {1, 2, 3, 4};
      moir_rt_all_reduce_sum_f32(x, 4);
      std::fprintf(stderr, "rank 0: moir_rt_all_reduce_sum_f32 returned\n");
    } else {
      std::this_thread::sleep_for(std::chrono::seconds(90));
    }
    return 0;
  }

  if (expectSize > 0)
    check(size == expectSize && std::string(moir_comm_backend(c)) ==
                                    (expectSize == 1 ? "self" : "mpi"),
          "world: " + std::to_string(size) + " ranks on " + moir_comm_backend(c) + ", expected " +
              std::to_string(expectSize) + (expectSize == 1 ? " on self" : " on mpi"));
  // The same communicator in every check but the time-out's; also a second
  // one, so the checks cover one that is not the world.
  moir_comm *own = nullptr;
  check(moir_comm_init("auto", &own) == MOIR_OK, std::string("moir_comm_init: ") + moir_last_error());
  if (!own)
    own = c;
  uint64_t seed = 0;
  if (myRank == 0)
    seed = static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  check(moir_comm_broadcast(own, &seed, sizeof seed, 0) == MOIR_OK, moir_last_error());
  if (myRank == 0)
    std::printf("seed %llu\n", static_cast<unsigned long long>(seed));

  checkInitErrors();
  checkArguments(own);
  checkAllReduce(own, seed);
  checkAllGather(own, seed);
  checkAllToAllV(own, seed);
  checkBroadcast(own, seed);
  checkDispatchCombine(own, seed);
  checkAgreement(own);
  checkTimeout(own);
  if (own != c)
    moir_comm_finalize(own);
  moir_comm_finalize(c); // the world: ignored

  std::printf("comm (rank %d of %d, %s): %d passed, %d failed\n", myRank, size,
              moir_comm_backend(c), passed, failed);
  if (passed == 0) {
    std::fprintf(stderr, "rank %d: nothing was checked\n", myRank);
    return 1;
  }
  return failed ? 1 : 0;
}
