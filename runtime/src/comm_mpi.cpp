// The "mpi" backend of moir_comm, built as the plugin libmoir_comm_mpi.so
// against the system's MPI (only where CMake finds one) and loaded by the
// runtime with dlopen, so that libmoir_runtime.so builds and runs without MPI.
//
// Every collective is posted nonblocking and polled with MPI_Test until
// MOIR_COMM_TIMEOUT passes: a blocking MPI call waits forever for a rank that
// died or runs something else, and a forward pass would hang with it.
#include "comm.h"

#include "moir/runtime.h"

#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

/// MPI_THREAD_SERIALIZED (or FUNNELED) lets one thread call MPI at a time:
/// every MPI call holds this lock. Waits release it between polls, so
/// threads with collectives on different communicators do not block each
/// other for the length of a time-out.
std::mutex mpiMutex;
bool weInitialized = false;
int threadLevel = MPI_THREAD_SINGLE;
std::thread::id initThread;
/// Requests abandoned at a time-out and never completed. MPI_Finalize could
/// wait on them forever, so it is skipped while there are any.
int abandoned = 0;
int worldRank = 0, worldSize = 1;

struct State {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  double timeout = 300;
  /// Set at a time-out: the operation that put this communicator out of
  /// step with the other ranks; later operations fail at once.
  std::string brokenBy;
  std::vector<MPI_Request> abandonedRequests;
};

using moir::rt::comm::failWith;

std::string mpiErrorText(int code) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<size_t>(length > 0 ? length : 0));
}

/// Refuses calls MPI's thread level does not allow.
int checkThread(moir_comm_error *error) {
  if (threadLevel < MPI_THREAD_SERIALIZED && std::this_thread::get_id() != initThread)
    return failWith(error, MOIR_ERROR_UNSUPPORTED,
                    "this MPI provides only MPI_THREAD_FUNNELED: call moir_comm from the thread "
                    "that created the first communicator");
  return 0;
}

/// Runs one MPI call under the lock; returns its error code.
template <typename F> int locked(F &&call) {
  std::lock_guard<std::mutex> lock(mpiMutex);
  return call();
}

/// Polls `request` (the operation `what` just posted) until it completes or
/// the communicator's time-out passes.
int waitFor(State *s, MPI_Request request, const char *what, moir_comm_error *error) {
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(s->timeout));
  for (unsigned polls = 0;; ++polls) {
    int done = 0;
    int rc = locked([&] { return MPI_Test(&request, &done, MPI_STATUS_IGNORE); });
    if (rc != MPI_SUCCESS)
      return failWith(error, MOIR_ERROR_IO, "%s failed: %s", what, mpiErrorText(rc).c_str());
    if (done)
      return 0;
    if (Clock::now() > deadline) {
      // A nonblocking collective cannot be cancelled or freed: keep it, so
      // that it can still complete if the others arrive late.
      s->abandonedRequests.push_back(request);
      {
        std::lock_guard<std::mutex> lock(mpiMutex);
        ++abandoned;
      }
      failWith(error, MOIR_ERROR_IO,
               "%s timed out after %g s (MOIR_COMM_TIMEOUT) waiting for the other ranks: a rank "
               "is missing, dead or running a different program",
               what, s->timeout);
      s->brokenBy = error->text;
      return MOIR_ERROR_IO;
    }
    // Oversubscribed ranks (more ranks than cores) must let the others run.
    if (polls > 4096)
      std::this_thread::yield();
  }
}

/// Common prologue of an operation: thread level, earlier time-outs.
int usable(State *s, moir_comm_error *error) {
  if (int rc = checkThread(error))
    return rc;
  if (!s->brokenBy.empty())
    return failWith(error, MOIR_ERROR_IO,
                    "this communicator is out of step with the other ranks since an earlier "
                    "operation failed (%s); finalize it",
                    s->brokenBy.c_str());
  return 0;
}

/// Posts `post` (which fills in a request) and waits for it.
template <typename Post>
int collective(State *s, const char *what, moir_comm_error *error, Post &&post) {
  if (int rc = usable(s, error))
    return rc;
  MPI_Request request = MPI_REQUEST_NULL;
  int rc = locked([&] { return post(&request); });
  if (rc != MPI_SUCCESS)
    return failWith(error, MOIR_ERROR_IO, "%s failed: %s", what, mpiErrorText(rc).c_str());
  return waitFor(s, request, what, error);
}

void finalizeAtExit() {
  std::lock_guard<std::mutex> lock(mpiMutex);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized)
    return;
  if (abandoned) {
    std::fprintf(stderr,
                 "moir: rank %d of %d: not finalizing MPI: %d collective(s) timed out and never "
                 "completed\n",
                 worldRank, worldSize, abandoned);
    return;
  }
  MPI_Finalize();
}

int mpiOpen(const moir_comm_open_args *args, void **out, int *rank, int *size,
            moir_comm_error *error) {
  auto *s = new State;
  s->timeout = args->timeout_s;
  {
    std::lock_guard<std::mutex> lock(mpiMutex);
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized) {
      delete s;
      return failWith(error, MOIR_ERROR_UNSUPPORTED, "MPI was already finalized in this process");
    }
    if (!initialized) {
      // SERIALIZED lets sessions on any thread communicate; FUNNELED (the
      // least MoIR needs) confines it to this thread.
      int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &threadLevel);
      if (rc != MPI_SUCCESS) {
        delete s;
        return failWith(error, MOIR_ERROR_IO, "MPI_Init_thread failed: %s",
                        mpiErrorText(rc).c_str());
      }
      weInitialized = true;
      initThread = std::this_thread::get_id();
      MPI_Comm_rank(MPI_COMM_WORLD, &worldRank);
      MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
      std::atexit(finalizeAtExit);
    } else if (!weInitialized && initThread == std::thread::id()) {
      // The application initialized MPI itself (and finalizes it).
      MPI_Query_thread(&threadLevel);
      initThread = std::this_thread::get_id();
      MPI_Comm_rank(MPI_COMM_WORLD, &worldRank);
      MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
    }
  }
  if (threadLevel < MPI_THREAD_FUNNELED) {
    delete s;
    return failWith(error, MOIR_ERROR_UNSUPPORTED,
                    "MPI provides only MPI_THREAD_SINGLE; MoIR needs MPI_THREAD_FUNNELED or more");
  }
  if (int rc = checkThread(error)) {
    delete s;
    return rc;
  }
  // A communicator of our own: our collectives never match the
  // application's, nor those of another moir_comm.
  // MPI writes the new communicator when the request completes: into the
  // state, which outlives an abandoned request.
  MPI_Request request = MPI_REQUEST_NULL;
  int rc = locked([&] { return MPI_Comm_idup(MPI_COMM_WORLD, &s->comm, &request); });
  if (rc != MPI_SUCCESS) {
    delete s;
    return failWith(error, MOIR_ERROR_IO, "MPI_Comm_idup failed: %s", mpiErrorText(rc).c_str());
  }
  if (int failed = waitFor(s, request, "MPI_Comm_idup", error)) {
    // The request stays pending and refers to s: leak both.
    return failed;
  }
  locked([&] {
    MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(s->comm, &s->rank);
    return MPI_Comm_size(s->comm, &s->size);
  });
  *rank = s->rank;
  *size = s->size;
  *out = s;
  return 0;
}

int mpiBarrier(void *state, moir_comm_error *error) {
  auto *s = static_cast<State *>(state);
  return collective(s, "MPI_Ibarrier", error,
                    [&](MPI_Request *r) { return MPI_Ibarrier(s->comm, r); });
}

/// MPI counts are ints: large buffers go in pieces of this many elements.
constexpr size_t kMaxCount = static_cast<size_t>(INT_MAX);

int mpiBroadcast(void *state, void *data, size_t bytes, int root, moir_comm_error *error) {
  auto *s = static_cast<State *>(state);
  auto *at = static_cast<char *>(data);
  do {
    int n = static_cast<int>(bytes < kMaxCount ? bytes : kMaxCount);
    if (int rc = collective(s, "MPI_Ibcast", error, [&](MPI_Request *r) {
          return MPI_Ibcast(at, n, MPI_BYTE, root, s->comm, r);
        }))
      return rc;
    at += n;
    bytes -= static_cast<size_t>(n);
  } while (bytes);
  return 0;
}

int mpiAllReduce(void *state, float *data, size_t count, moir_comm_error *error) {
  auto *s = static_cast<State *>(state);
  do {
    int n = static_cast<int>(count < kMaxCount ? count : kMaxCount);
    if (int rc = collective(s, "MPI_Iallreduce", error, [&](MPI_Request *r) {
          return MPI_Iallreduce(MPI_IN_PLACE, data, n, MPI_FLOAT, MPI_SUM, s->comm, r);
        }))
      return rc;
    data += n;
    count -= static_cast<size_t>(n);
  } while (count);
  return 0;
}

int mpiAllGather(void *state, const void *send, size_t bytes, void *recv, moir_comm_error *error) {
  auto *s = static_cast<State *>(state);
  if (bytes > kMaxCount)
    return failWith(error, MOIR_ERROR_OUT_OF_RANGE,
                    "%zu bytes per rank exceed MPI's int count limit (%d)", bytes, INT_MAX);
  int n = static_cast<int>(bytes);
  return collective(s, "MPI_Iallgather", error, [&](MPI_Request *r) {
    return MPI_Iallgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, s->comm, r);
  });
}

int mpiAllToAllV(void *state, const void *send, const size_t *sendBytes,
                 const size_t *sendOffsets, void *recv, const size_t *recvBytes,
                 const size_t *recvOffsets, moir_comm_error *error) {
  auto *s = static_cast<State *>(state);
  size_t n = static_cast<size_t>(s->size);
  std::vector<int> counts(4 * n);
  int *sc = counts.data(), *sd = sc + n, *rc = sd + n, *rd = rc + n;
  for (size_t j = 0; j < n; ++j) {
    const size_t values[4] = {sendBytes[j], sendOffsets[j], recvBytes[j], recvOffsets[j]};
    static const char *const names[4] = {"send_bytes", "send_offsets", "recv_bytes",
                                         "recv_offsets"};
    for (int k = 0; k < 4; ++k) {
      if (values[k] > kMaxCount)
        return failWith(error, MOIR_ERROR_OUT_OF_RANGE,
                        "%s[%zu] = %zu exceeds MPI's int count limit (%d)", names[k], j,
                        values[k], INT_MAX);
      counts[static_cast<size_t>(k) * n + j] = static_cast<int>(values[k]);
    }
  }
  // MPI reads the buffers through non-null pointers even for zero counts.
  static char empty;
  const void *sendBuffer = send ? send : &empty;
  void *recvBuffer = recv ? recv : &empty;
  return collective(s, "MPI_Ialltoallv", error, [&](MPI_Request *r) {
    return MPI_Ialltoallv(sendBuffer, sc, sd, MPI_BYTE, recvBuffer, rc, rd, MPI_BYTE, s->comm, r);
  });
}

void mpiAbort(void *, int code) {
  // Not under the lock: the thread holding it may be the one that hangs.
  MPI_Abort(MPI_COMM_WORLD, code);
}

void mpiClose(void *state) {
  auto *s = static_cast<State *>(state);
  if (!s->abandonedRequests.empty()) {
    // Give the requests abandoned at a time-out one more time-out to
    // complete (the others may have arrived late); otherwise the
    // communicator cannot be freed safely, and is leaked.
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(s->timeout));
    for (;;) {
      int done = 0;
      locked([&] {
        return MPI_Testall(static_cast<int>(s->abandonedRequests.size()),
                           s->abandonedRequests.data(), &done, MPI_STATUSES_IGNORE);
      });
      if (done) {
        std::lock_guard<std::mutex> lock(mpiMutex);
        abandoned -= static_cast<int>(s->abandonedRequests.size());
        s->abandonedRequests.clear();
        break;
      }
      if (std::chrono::steady_clock::now() > deadline)
        return;
      std::this_thread::yield();
    }
  }
  locked([&] { return MPI_Comm_free(&s->comm); });
  delete s;
}

const moir_comm_backend_ops mpiBackend = {
    MOIR_COMM_BACKEND_ABI, "mpi",        mpiOpen,  mpiBarrier, mpiBroadcast, mpiAllReduce,
    mpiAllGather,          mpiAllToAllV, mpiAbort, mpiClose,
};

} // namespace

extern "C" __attribute__((visibility("default"))) const moir_comm_backend_ops *
moir_comm_mpi_plugin(uint32_t abi) {
  return abi == MOIR_COMM_BACKEND_ABI ? &mpiBackend : nullptr;
}
