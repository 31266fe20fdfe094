// moir_comm (moir/comm.h): picks a backend, checks arguments before anything
// is sent, words the errors (the operation, this rank, the backend), and
// builds what the backends do not have: agreement checks and expert
// dispatch/combine over all-to-all-v. Also the "self" backend and the entry
// point compiled code calls.
#include "moir/comm.h"

#include "comm.h"
#include "status.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <sys/stat.h>
#include <vector>

using moir::rt::fail;

struct moir_comm {
  const moir_comm_backend_ops *ops = nullptr;
  void *state = nullptr;
  int rank = 0, size = 1;
  std::string backend;
  /// NCCL's bootstrap communicator (host memory); agreement checks go
  /// through it because their buffers are on the host.
  moir_comm *host = nullptr;
  bool world = false;
  /// Collectives on one communicator must be issued in the same order on
  /// every rank; threads sharing one take turns.
  std::mutex mutex;
};

struct moir_comm_routes {
  int size = 1;
  size_t count = 0, rowBytes = 0, received = 0;
  /// Rows this rank sends to / receives from each rank.
  std::vector<size_t> sendRows, recvRows;
  /// order[k]: the input row sent k-th (rows grouped by destination); empty
  /// when the input was already grouped.
  std::vector<size_t> order;
  std::vector<unsigned char> data;
};

namespace {

// ---- the "self" backend: one rank, every operation a copy or nothing ----

int selfOpen(const moir_comm_open_args *, void **state, int *rank, int *size, moir_comm_error *) {
  *state = nullptr;
  *rank = 0;
  *size = 1;
  return 0;
}
int selfBarrier(void *, moir_comm_error *) { return 0; }
int selfBroadcast(void *, void *, size_t, int, moir_comm_error *) { return 0; }
int selfAllReduce(void *, float *, size_t, moir_comm_error *) { return 0; }
int selfAllGather(void *, const void *send, size_t bytes, void *recv, moir_comm_error *) {
  if (bytes && send != recv)
    std::memmove(recv, send, bytes);
  return 0;
}
int selfAllToAllV(void *, const void *send, const size_t *sendBytes, const size_t *sendOffsets,
                  void *recv, const size_t *recvBytes, const size_t *recvOffsets,
                  moir_comm_error *error) {
  if (sendBytes[0] != recvBytes[0]) {
    std::snprintf(error->text, sizeof error->text,
                  "rank 0 sends %zu bytes to itself but expects to receive %zu", sendBytes[0],
                  recvBytes[0]);
    return MOIR_ERROR_INVALID_ARGUMENT;
  }
  if (sendBytes[0])
    std::memmove(static_cast<char *>(recv) + recvOffsets[0],
                 static_cast<const char *>(send) + sendOffsets[0], sendBytes[0]);
  return 0;
}
void selfAbort(void *, int code) { std::exit(code); }
void selfClose(void *) {}

// ---- choosing and loading backends ----

/// True when an MPI launcher (mpirun/mpiexec of Open MPI or MPICH, srun with
/// PMI or PMIx) started this process.
bool launchedByMPI() {
  for (const char *name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(name))
      return true;
  return false;
}

/// The folder libmoir_runtime.so was loaded from: the plugin is built there.
std::string runtimeDirectory() {
  Dl_info info;
  if (!dladdr(reinterpret_cast<void *>(&moir_comm_init), &info) || !info.dli_fname)
    return ".";
  std::string path = info.dli_fname;
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::mutex pluginMutex;
const moir_comm_backend_ops *mpiOps = nullptr;

/// The MPI backend from its plugin, loaded once; null with *error set when
/// it cannot be loaded.
const moir_comm_backend_ops *loadMPI(std::string *error) {
  std::lock_guard<std::mutex> lock(pluginMutex);
  if (mpiOps)
    return mpiOps;
  const char *env = std::getenv("MOIR_COMM_MPI_PLUGIN");
  bool fromEnv = env && *env;
  std::string path = fromEnv ? env : runtimeDirectory() + "/libmoir_comm_mpi.so";
  struct stat info;
  if (stat(path.c_str(), &info) != 0) {
    *error = fromEnv ? "the MPI plugin " + path + " (MOIR_COMM_MPI_PLUGIN) does not exist"
                     : "the MPI plugin " + path +
                           " does not exist: MoIR was built without MPI (install "
                           "libopenmpi-dev and rebuild)";
    return nullptr;
  }
  // RTLD_GLOBAL: Open MPI loads its own components with dlopen, and they
  // resolve libmpi's symbols from the global scope.
  void *library = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!library) {
    *error = "cannot load the MPI plugin " + path + ": " + dlerror();
    return nullptr;
  }
  auto entry = reinterpret_cast<moir_comm_mpi_plugin_fn>(
      dlsym(library, MOIR_COMM_MPI_PLUGIN_ENTRY));
  const moir_comm_backend_ops *ops = entry ? entry(MOIR_COMM_BACKEND_ABI) : nullptr;
  if (!ops) {
    *error = "the MPI plugin " + path + (entry ? " was built for another MoIR runtime (ABI)"
                                               : " lacks " MOIR_COMM_MPI_PLUGIN_ENTRY) +
             ": rebuild it with this runtime";
    return nullptr;
  }
  return mpiOps = ops;
}

/// MOIR_COMM_TIMEOUT in seconds (default 300).
bool readTimeout(double *seconds, std::string *error) {
  *seconds = 300;
  const char *env = std::getenv("MOIR_COMM_TIMEOUT");
  if (!env || !*env)
    return true;
  char *end = nullptr;
  errno = 0;
  double value = std::strtod(env, &end);
  if (errno || *end || !(value > 0) || value > 1e9) {
    *error = std::string("MOIR_COMM_TIMEOUT='") + env +
             "': expected a positive number of seconds (at most 1e9)";
    return false;
  }
  *seconds = value;
  return true;
}

/// "0-2, 5": ranks (sorted) as ranges.
std::string rankList(const std::vector<int> &ranks) {
  std::string text;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1)
      ++j;
    if (!text.empty())
      text += ", ";
    text += std::to_string(ranks[i]);
    if (j > i)
      text += (j == i + 1 ? ", " : "-") + std::to_string(ranks[j]);
    i = j + 1;
  }
  return text;
}

/// "moir_comm_barrier (rank 1 of 4, mpi): " + message.
moir_status commFail(const moir_comm *c, moir_status status, const char *op,
                     const std::string &message) {
  return fail(status, std::string(op) + " (rank " + std::to_string(c->rank) + " of " +
                          std::to_string(c->size) + ", " + c->backend + "): " + message);
}

moir_status backendResult(const moir_comm *c, const char *op, int rc,
                          const moir_comm_error &error) {
  if (rc == 0)
    return moir::rt::ok();
  return commFail(c, static_cast<moir_status>(rc), op, error.text);
}

moir_status nullComm(const char *op) {
  return fail(MOIR_ERROR_INVALID_ARGUMENT, std::string(op) + ": the communicator is NULL");
}

/// start + bytes, refusing sums past SIZE_MAX.
bool endOf(size_t start, size_t bytes, size_t *end) {
  if (bytes > std::numeric_limits<size_t>::max() - start)
    return false;
  *end = start + bytes;
  return true;
}

moir_status open(const std::string &name, double timeout, moir_comm **out);

moir_status openWith(const moir_comm_backend_ops *ops, const std::string &name, double timeout,
                     moir_comm *host, moir_comm **out) {
  auto *c = new moir_comm;
  c->ops = ops;
  c->backend = name;
  c->host = host;
  moir_comm_open_args args{timeout, nullptr, nullptr, 0, 1};
  if (host) {
    args.host_ops = host->ops;
    args.host_state = host->state;
    args.host_rank = host->rank;
    args.host_size = host->size;
  }
  moir_comm_error error{};
  int rc = ops->open(&args, &c->state, &c->rank, &c->size, &error);
  if (rc) {
    // The rank is not known yet; the host's is where there is one.
    if (host) {
      c->rank = host->rank;
      c->size = host->size;
    }
    moir_status status = commFail(c, static_cast<moir_status>(rc), "moir_comm_init", error.text);
    delete c;
    return status;
  }
  *out = c;
  return moir::rt::ok();
}

moir_status open(const std::string &name, double timeout, moir_comm **out) {
  if (name == "self")
    return openWith(&moir::rt::comm::selfBackend, name, timeout, nullptr, out);
  if (name == "mpi") {
    std::string error;
    const moir_comm_backend_ops *ops = loadMPI(&error);
    if (!ops)
      return fail(MOIR_ERROR_UNSUPPORTED, "moir_comm_init(\"mpi\"): " + error);
    return openWith(ops, name, timeout, nullptr, out);
  }
  if (name == "nccl") {
    std::string error = moir::rt::comm::loadNCCL();
    if (!error.empty())
      return fail(MOIR_ERROR_UNSUPPORTED, "moir_comm_init(\"nccl\"): " + error);
    moir_comm *host = nullptr;
    if (moir_status status = open(launchedByMPI() ? "mpi" : "self", timeout, &host))
      return fail(status, std::string("moir_comm_init(\"nccl\"): its bootstrap communicator: ") +
                              moir_last_error());
    moir_status status = openWith(&moir::rt::comm::ncclBackend, name, timeout, host, out);
    if (status) {
      std::string message = moir_last_error();
      moir_comm_finalize(host);
      return fail(status, message);
    }
    return status;
  }
  return fail(MOIR_ERROR_INVALID_ARGUMENT,
              "moir_comm_init: unknown backend '" + name + "' (expected auto, mpi, nccl or self)");
}

std::mutex worldMutex;
moir_comm *world = nullptr;

/// "rank R of N" for a message before or without a world communicator: from
/// the launcher's environment where it set one.
std::string launcherRank() {
  const char *rank = nullptr, *size = nullptr;
  for (const char *name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (!rank)
      rank = std::getenv(name);
  for (const char *name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"})
    if (!size)
      size = std::getenv(name);
  return std::string("rank ") + (rank ? rank : "?") + " of " + (size ? size : "?");
}

} // namespace

const moir_comm_backend_ops moir::rt::comm::selfBackend = {
    MOIR_COMM_BACKEND_ABI, "self",      selfOpen,      selfBarrier, selfBroadcast, selfAllReduce,
    selfAllGather,         selfAllToAllV, selfAbort,   selfClose,
};

extern "C" {

moir_status moir_comm_init(const char *backend, moir_comm **out) {
  if (!out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_comm_init: out is NULL");
  *out = nullptr;
  std::string name = backend ? backend : "auto";
  if (name == "auto")
    name = launchedByMPI() ? "mpi" : "self";
  double timeout = 0;
  std::string error;
  if (!readTimeout(&timeout, &error))
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_comm_init: " + error);
  return open(name, timeout, out);
}

moir_status moir_comm_world(moir_comm **out) {
  if (!out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_comm_world: out is NULL");
  std::lock_guard<std::mutex> lock(worldMutex);
  if (!world) {
    const char *env = std::getenv("MOIR_COMM_BACKEND");
    moir_comm *c = nullptr;
    if (moir_status status = moir_comm_init(env && *env ? env : "auto", &c)) {
      *out = nullptr;
      return fail(status, std::string(moir_last_error()) +
                              (env && *env ? " (MOIR_COMM_BACKEND=" + std::string(env) + ")"
                                           : std::string()));
    }
    c->world = true;
    world = c;
  }
  *out = world;
  return moir::rt::ok();
}

int moir_comm_rank(const moir_comm *c) { return c ? c->rank : -1; }
int moir_comm_size(const moir_comm *c) { return c ? c->size : 0; }
const char *moir_comm_backend(const moir_comm *c) { return c ? c->backend.c_str() : ""; }

moir_status moir_comm_barrier(moir_comm *c) {
  if (!c)
    return nullComm("moir_comm_barrier");
  std::lock_guard<std::mutex> lock(c->mutex);
  moir_comm_error error{};
  return backendResult(c, "moir_comm_barrier", c->ops->barrier(c->state, &error), error);
}

moir_status moir_comm_broadcast(moir_comm *c, void *data, size_t bytes, int root) {
  const char *op = "moir_comm_broadcast";
  if (!c)
    return nullComm(op);
  if (root < 0 || root >= c->size)
    return commFail(c, MOIR_ERROR_OUT_OF_RANGE, op,
                    "root " + std::to_string(root) + " is not a rank (expected 0 to " +
                        std::to_string(c->size - 1) + ")");
  if (!data && bytes)
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op,
                    "data is NULL for " + std::to_string(bytes) + " bytes");
  std::lock_guard<std::mutex> lock(c->mutex);
  moir_comm_error error{};
  return backendResult(c, op, c->ops->broadcast(c->state, data, bytes, root, &error), error);
}

moir_status moir_comm_all_reduce_sum_f32(moir_comm *c, float *data, size_t count) {
  const char *op = "moir_comm_all_reduce_sum_f32";
  if (!c)
    return nullComm(op);
  if (count > std::numeric_limits<size_t>::max() / sizeof(float))
    return commFail(c, MOIR_ERROR_OUT_OF_RANGE, op,
                    std::to_string(count) + " floats do not fit in memory (count overflows)");
  if (!data && count)
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op,
                    "data is NULL for " + std::to_string(count) + " floats");
  std::lock_guard<std::mutex> lock(c->mutex);
  moir_comm_error error{};
  return backendResult(c, op, c->ops->all_reduce_sum_f32(c->state, data, count, &error), error);
}

moir_status moir_comm_all_gather(moir_comm *c, const void *send, size_t bytes, void *recv) {
  const char *op = "moir_comm_all_gather";
  if (!c)
    return nullComm(op);
  if (bytes > std::numeric_limits<size_t>::max() / static_cast<size_t>(c->size))
    return commFail(c, MOIR_ERROR_OUT_OF_RANGE, op,
                    std::to_string(bytes) + " bytes from each of " + std::to_string(c->size) +
                        " ranks overflow the receive size");
  if ((!send || !recv) && bytes)
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op,
                    std::string(!send ? "send" : "recv") + " is NULL for " +
                        std::to_string(bytes) + " bytes per rank");
  std::lock_guard<std::mutex> lock(c->mutex);
  moir_comm_error error{};
  return backendResult(c, op, c->ops->all_gather(c->state, send, bytes, recv, &error), error);
}

moir_status moir_comm_all_to_all_v(moir_comm *c, const void *send, const size_t *send_bytes,
                                   const size_t *send_offsets, void *recv,
                                   const size_t *recv_bytes, const size_t *recv_offsets) {
  const char *op = "moir_comm_all_to_all_v";
  if (!c)
    return nullComm(op);
  if (!send_bytes || !send_offsets || !recv_bytes || !recv_offsets)
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op,
                    "send_bytes, send_offsets, recv_bytes and recv_offsets must be arrays of " +
                        std::to_string(c->size) + " entries (one is NULL)");
  for (int side = 0; side < 2; ++side) {
    const size_t *bytes = side ? recv_bytes : send_bytes;
    const size_t *offsets = side ? recv_offsets : send_offsets;
    const void *buffer = side ? recv : send;
    const char *name = side ? "recv" : "send";
    for (int j = 0; j < c->size; ++j) {
      size_t end = 0;
      if (!endOf(offsets[j], bytes[j], &end))
        return commFail(c, MOIR_ERROR_OUT_OF_RANGE, op,
                        std::string(name) + "_offsets[" + std::to_string(j) + "] + " + name +
                            "_bytes[" + std::to_string(j) + "] overflows (" +
                            std::to_string(offsets[j]) + " + " + std::to_string(bytes[j]) + ")");
      if (bytes[j] && !buffer)
        return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op,
                        std::string(name) + " is NULL for " + name + "_bytes[" +
                            std::to_string(j) + "] = " + std::to_string(bytes[j]));
    }
  }
  std::lock_guard<std::mutex> lock(c->mutex);
  moir_comm_error error{};
  return backendResult(c, op,
                       c->ops->all_to_all_v(c->state, send, send_bytes, send_offsets, recv,
                                            recv_bytes, recv_offsets, &error),
                       error);
}

moir_status moir_comm_check_agree(moir_comm *c, const char *what, uint64_t value) {
  const char *op = "moir_comm_check_agree";
  if (!c)
    return nullComm(op);
  std::string name = what && *what ? what : "the value";
  moir_comm *h = c->host ? c->host : c;
  std::vector<uint64_t> values(static_cast<size_t>(h->size));
  if (moir_status status = moir_comm_all_gather(h, &value, sizeof value, values.data()))
    return fail(status, std::string(moir_last_error()) + " (checking " + name + ")");
  // Ranks grouped by value; the largest group (the lowest rank among equal
  // ones) first, as the value the others are measured against.
  std::map<uint64_t, std::vector<int>> groups;
  for (int r = 0; r < h->size; ++r)
    groups[values[static_cast<size_t>(r)]].push_back(r);
  if (groups.size() == 1)
    return moir::rt::ok();
  std::vector<std::pair<uint64_t, std::vector<int>>> ordered(groups.begin(), groups.end());
  std::sort(ordered.begin(), ordered.end(), [](const auto &a, const auto &b) {
    return a.second.size() != b.second.size() ? a.second.size() > b.second.size()
                                              : a.second[0] < b.second[0];
  });
  std::string message = name + " differs between ranks (expected the same on every rank): ";
  for (size_t g = 0; g < ordered.size(); ++g) {
    const std::vector<int> &ranks = ordered[g].second;
    char number[64];
    std::snprintf(number, sizeof number, "%llu (0x%llx)",
                  static_cast<unsigned long long>(ordered[g].first),
                  static_cast<unsigned long long>(ordered[g].first));
    message += (g ? "; " : "") + std::string(ranks.size() == 1 ? "rank " : "ranks ") +
               rankList(ranks) + (ranks.size() == 1 ? " has " : " have ") + number;
  }
  return commFail(c, MOIR_ERROR_FORMAT, op, message);
}

moir_status moir_comm_dispatch(moir_comm *c, const void *rows, size_t count, size_t row_bytes,
                               const int32_t *dest, moir_comm_routes **out) {
  const char *op = "moir_comm_dispatch";
  if (!c)
    return nullComm(op);
  if (!out)
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op, "out is NULL");
  *out = nullptr;
  if (c->backend == "nccl")
    return commFail(c, MOIR_ERROR_UNSUPPORTED, op,
                    "dispatch/combine work on host memory; the nccl backend has none");
  if (row_bytes && count > std::numeric_limits<size_t>::max() / row_bytes)
    return commFail(c, MOIR_ERROR_OUT_OF_RANGE, op,
                    std::to_string(count) + " rows of " + std::to_string(row_bytes) +
                        " bytes overflow");
  if (count && (!dest || (!rows && row_bytes)))
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op,
                    std::string(!dest ? "dest" : "rows") + " is NULL for " +
                        std::to_string(count) + " rows");
  auto d = std::make_unique<moir_comm_routes>();
  size_t size = static_cast<size_t>(c->size);
  d->size = c->size;
  d->count = count;
  d->rowBytes = row_bytes;
  d->sendRows.assign(size, 0);
  d->recvRows.assign(size, 0);
  // A bad destination is announced to every rank through the count
  // exchange (a count of "all ones"), so all of them fail instead of the
  // others waiting for rows that never come.
  constexpr uint64_t kBad = std::numeric_limits<uint64_t>::max();
  std::string badDest;
  for (size_t i = 0; i < count && badDest.empty(); ++i) {
    if (dest[i] < 0 || dest[i] >= c->size)
      badDest = "dest[" + std::to_string(i) + "] = " + std::to_string(dest[i]) +
                " is not a rank (expected 0 to " + std::to_string(c->size - 1) + ")";
    else
      ++d->sendRows[static_cast<size_t>(dest[i])];
  }
  std::vector<uint64_t> sendCounts(size), recvCounts(size);
  std::vector<size_t> eight(size, sizeof(uint64_t)), offsets(size);
  for (size_t j = 0; j < size; ++j) {
    sendCounts[j] = badDest.empty() ? d->sendRows[j] : kBad;
    offsets[j] = j * sizeof(uint64_t);
  }
  if (moir_status status =
          moir_comm_all_to_all_v(c, sendCounts.data(), eight.data(), offsets.data(),
                                 recvCounts.data(), eight.data(), offsets.data()))
    return fail(status, std::string(moir_last_error()) + " (exchanging dispatch counts)");
  if (!badDest.empty())
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op, badDest);
  std::vector<int> badRanks;
  for (size_t s = 0; s < size; ++s)
    if (recvCounts[s] == kBad)
      badRanks.push_back(static_cast<int>(s));
  if (!badRanks.empty())
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op,
                    std::string(badRanks.size() == 1 ? "rank " : "ranks ") + rankList(badRanks) +
                        " passed a destination that is not a rank");
  size_t received = 0;
  for (size_t s = 0; s < size; ++s) {
    if (recvCounts[s] > std::numeric_limits<size_t>::max() - received ||
        (row_bytes && received + recvCounts[s] > std::numeric_limits<size_t>::max() / row_bytes))
      return commFail(c, MOIR_ERROR_OUT_OF_RANGE, op, "the rows received overflow");
    d->recvRows[s] = static_cast<size_t>(recvCounts[s]);
    received += d->recvRows[s];
  }
  d->received = received;
  d->data.resize(received * row_bytes);

  // Group the rows by destination (a stable counting sort), unless they are.
  std::vector<size_t> start(size, 0);
  for (size_t j = 1; j < size; ++j)
    start[j] = start[j - 1] + d->sendRows[j - 1];
  bool grouped = std::is_sorted(dest, dest + count);
  const unsigned char *sendData = static_cast<const unsigned char *>(rows);
  std::vector<unsigned char> staging;
  if (!grouped && row_bytes) {
    d->order.resize(count);
    std::vector<size_t> next = start;
    for (size_t i = 0; i < count; ++i)
      d->order[next[static_cast<size_t>(dest[i])]++] = i;
    staging.resize(count * row_bytes);
    for (size_t k = 0; k < count; ++k)
      std::memcpy(&staging[k * row_bytes], sendData + d->order[k] * row_bytes, row_bytes);
    sendData = staging.data();
  }
  std::vector<size_t> sendBytes(size), sendOffsets(size), recvBytes(size), recvOffsets(size);
  size_t at = 0;
  for (size_t j = 0; j < size; ++j) {
    sendBytes[j] = d->sendRows[j] * row_bytes;
    sendOffsets[j] = start[j] * row_bytes;
    recvBytes[j] = d->recvRows[j] * row_bytes;
    recvOffsets[j] = at;
    at += recvBytes[j];
  }
  if (moir_status status =
          moir_comm_all_to_all_v(c, sendData, sendBytes.data(), sendOffsets.data(),
                                 d->data.data(), recvBytes.data(), recvOffsets.data()))
    return fail(status, std::string(moir_last_error()) + " (dispatching rows)");
  *out = d.release();
  return moir::rt::ok();
}

size_t moir_comm_routes_received(const moir_comm_routes *d) { return d ? d->received : 0; }
void *moir_comm_routes_data(moir_comm_routes *d) { return d ? d->data.data() : nullptr; }
size_t moir_comm_routes_from(const moir_comm_routes *d, int source) {
  return d && source >= 0 && source < d->size ? d->recvRows[static_cast<size_t>(source)] : 0;
}

moir_status moir_comm_combine(moir_comm *c, moir_comm_routes *d, const void *processed,
                              size_t out_row_bytes, void *out) {
  const char *op = "moir_comm_combine";
  if (!c)
    return nullComm(op);
  if (!d)
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op, "the dispatch handle is NULL");
  if (d->size != c->size)
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op,
                    "the dispatch was made on a communicator of " + std::to_string(d->size) +
                        " ranks, not this one");
  if (out_row_bytes && (d->received > std::numeric_limits<size_t>::max() / out_row_bytes ||
                        d->count > std::numeric_limits<size_t>::max() / out_row_bytes))
    return commFail(c, MOIR_ERROR_OUT_OF_RANGE, op,
                    "rows of " + std::to_string(out_row_bytes) + " bytes overflow");
  if (out_row_bytes && ((!processed && d->received) || (!out && d->count)))
    return commFail(c, MOIR_ERROR_INVALID_ARGUMENT, op,
                    std::string(!out && d->count ? "out" : "processed") + " is NULL");
  size_t size = static_cast<size_t>(c->size);
  // The dispatch's exchange reversed: what came from rank s goes back to it.
  std::vector<size_t> sendBytes(size), sendOffsets(size), recvBytes(size), recvOffsets(size);
  size_t sendAt = 0, recvAt = 0;
  for (size_t j = 0; j < size; ++j) {
    sendBytes[j] = d->recvRows[j] * out_row_bytes;
    sendOffsets[j] = sendAt;
    sendAt += sendBytes[j];
    recvBytes[j] = d->sendRows[j] * out_row_bytes;
    recvOffsets[j] = recvAt;
    recvAt += recvBytes[j];
  }
  bool scatter = !d->order.empty() && out_row_bytes;
  std::vector<unsigned char> staging(scatter ? d->count * out_row_bytes : 0);
  void *target = scatter ? staging.data() : out;
  if (moir_status status = moir_comm_all_to_all_v(c, processed, sendBytes.data(),
                                                  sendOffsets.data(), target, recvBytes.data(),
                                                  recvOffsets.data()))
    return fail(status, std::string(moir_last_error()) + " (combining rows)");
  if (scatter)
    for (size_t k = 0; k < d->count; ++k)
      std::memcpy(static_cast<unsigned char *>(out) + d->order[k] * out_row_bytes,
                  &staging[k * out_row_bytes], out_row_bytes);
  return moir::rt::ok();
}

void moir_comm_routes_free(moir_comm_routes *d) { delete d; }

void moir_comm_finalize(moir_comm *c) {
  if (!c || c->world)
    return;
  c->ops->close(c->state);
  moir_comm_finalize(c->host);
  delete c;
}

} // extern "C"

namespace {

/// The world communicator for compiled code; ends the process when there is
/// none (compiled code cannot go on without it).
moir_comm *worldOrExit() {
  moir_comm *c = nullptr;
  if (moir_comm_world(&c)) {
    std::fprintf(stderr, "moir: %s: %s\n", launcherRank().c_str(), moir_last_error());
    std::fflush(stderr);
    std::exit(70);
  }
  return c;
}

/// Ends the whole job after a collective of compiled code failed: the other
/// ranks wait in the same collective.
[[noreturn]] void abortJob(moir_comm *c, const std::string &what, const char *why) {
  std::fprintf(stderr, "moir: rank %d of %d: %s: %s\n", c->rank, c->size, what.c_str(), why);
  std::fflush(stderr);
  c->ops->abort_job(c->state, 70);
  std::exit(70);
}

} // namespace

extern "C" {

void moir_rt_all_reduce_sum_f32(float *data, int64_t count) {
  moir_comm *c = worldOrExit();
  if (c->size == 1)
    return;
  std::string what = "all-reduce of " + std::to_string(count) + " floats from compiled code (" +
                     c->backend + ")";
  if (count < 0)
    abortJob(c, what, "the count is negative");
  if (static_cast<uint64_t>(count) > std::numeric_limits<size_t>::max() / sizeof(float) ||
      (!data && count))
    abortJob(c, what, !data ? "data is NULL" : "it overflows");
  moir_comm_error error{};
  int rc = 0;
  {
    std::lock_guard<std::mutex> lock(c->mutex);
    rc = c->ops->all_reduce_sum_f32(c->state, data, static_cast<size_t>(count), &error);
  }
  if (rc != 0)
    abortJob(c, what, error.text);
}

void moir_rt_all_gather_f32(const float *in, float *out, int64_t rows, int64_t cols,
                            int64_t unit) {
  moir_comm *c = worldOrExit();
  auto what = [&] {
    return "all-gather of " + std::to_string(rows) + "x" + std::to_string(cols) +
           " floats in units of " + std::to_string(unit) + " columns from compiled code (" +
           c->backend + ")";
  };
  int64_t ranks = c->size;
  if (rows < 0 || cols <= 0 || unit < 1 || (cols + unit - 1) / unit < ranks)
    abortJob(c, what(), "rows must be >= 0 and cols > 0, in at least one unit per rank");
  if (rows > 0 && (!in || !out))
    abortJob(c, what(), "a buffer is NULL");
  if (static_cast<uint64_t>(rows) >
      std::numeric_limits<size_t>::max() / sizeof(float) / static_cast<uint64_t>(cols))
    abortJob(c, what(), "it overflows");
  // Rank r's columns: units [r * U / ranks, (r + 1) * U / ranks) of the
  // U = ceil(cols / unit), the split llm.all_gather documents.
  int64_t units = (cols + unit - 1) / unit;
  auto first = [&](int64_t r) { return std::min(r * units / ranks * unit, cols); };
  size_t n = static_cast<size_t>(ranks), width = static_cast<size_t>(cols);
  size_t mine = static_cast<size_t>(first(c->rank + 1) - first(c->rank));
  // Blocks of rows of at most 64 MiB of the result: the byte counts and
  // offsets stay far below MPI's int limit, and so does the staging buffer.
  size_t block = std::max<size_t>(1, (size_t{64} << 20) / (width * sizeof(float)));
  std::vector<size_t> sendBytes(n), sendOffsets(n, 0), recvBytes(n), recvOffsets(n);
  thread_local std::vector<float> staging;
  for (size_t row0 = 0; row0 < static_cast<size_t>(rows); row0 += block) {
    size_t count = std::min(block, static_cast<size_t>(rows) - row0);
    for (size_t r = 0; r < n; ++r) {
      sendBytes[r] = count * mine * sizeof(float);
      recvBytes[r] = count * static_cast<size_t>(first(r + 1) - first(r)) * sizeof(float);
      recvOffsets[r] = count * static_cast<size_t>(first(r)) * sizeof(float);
    }
    // Received rank by rank ([count, cols_r] blocks), then interleaved into
    // rows; one row needs no interleaving.
    float *target = out + row0 * width;
    if (count > 1) {
      staging.resize(count * width);
      target = staging.data();
    }
    moir_comm_error error{};
    int rc = 0;
    {
      std::lock_guard<std::mutex> lock(c->mutex);
      rc = c->ops->all_to_all_v(c->state, in + row0 * mine, sendBytes.data(),
                                sendOffsets.data(), target, recvBytes.data(),
                                recvOffsets.data(), &error);
    }
    if (rc != 0)
      abortJob(c, what(), error.text);
    if (count == 1)
      continue;
    for (size_t r = 0; r < n; ++r) {
      size_t cw = static_cast<size_t>(first(r + 1) - first(r));
      const float *from = target + recvOffsets[r] / sizeof(float);
      for (size_t i = 0; i < count; ++i)
        std::memcpy(out + (row0 + i) * width + static_cast<size_t>(first(r)), from + i * cw,
                    cw * sizeof(float));
    }
  }
  // A long prompt's staging is not kept for the decode steps after it.
  if (staging.capacity() > (size_t{16} << 20) / sizeof(float))
    std::vector<float>().swap(staging);
}

} // extern "C"
