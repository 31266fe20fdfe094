// The "nccl" backend of moir_comm: NCCL (libnccl.so.2) and the CUDA driver
// (libcuda.so.1), both loaded with dlopen like the CUDA GPU driver loads
// libcuda, so the runtime builds without the CUDA toolkit. Bootstrapped over
// the host communicator comm.cpp opens first ("mpi" under a launcher): rank 0
// makes NCCL's unique id and broadcasts it. Buffers are device memory; every
// operation is enqueued on the legacy default stream, which is then polled
// until it finishes or MOIR_COMM_TIMEOUT passes (then the NCCL communicator
// is aborted, so the kernels waiting for a dead peer end).
//
// Not run on a GPU here: only the refusal without libnccl.so.2 is tested.
#include "comm.h"

#include "moir/runtime.h"

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

// NCCL's ABI as its public header nccl.h (src/nccl.h.in in NVIDIA/nccl)
// declares it: ncclComm_t is an opaque pointer, ncclUniqueId 128 bytes
// (NCCL_UNIQUE_ID_BYTES), ncclResult_t an enum with ncclSuccess = 0 and
// ncclInProgress = 7, ncclDataType_t ncclUint8 = 1 and ncclFloat32 = 7,
// ncclRedOp_t ncclSum = 0. Enums are passed as int.
using ncclComm_t = void *;
struct ncclUniqueId {
  char internal[128];
};
constexpr int ncclSuccess = 0;
constexpr int ncclInProgress = 7;
constexpr int ncclUint8 = 1;
constexpr int ncclFloat32 = 7;
constexpr int ncclSum = 0;
// CUDA driver API (cuda.h): CUDA_SUCCESS = 0, CUDA_ERROR_NOT_READY = 600;
// stream 0 is the legacy default stream.
constexpr int kCudaNotReady = 600;

struct NCCL {
  void *library = nullptr;
  int (*getUniqueId)(ncclUniqueId *);
  int (*commInitRank)(ncclComm_t *, int, ncclUniqueId, int);
  int (*commDestroy)(ncclComm_t);
  int (*commAbort)(ncclComm_t);
  int (*commGetAsyncError)(ncclComm_t, int *);
  const char *(*getErrorString)(int);
  int (*allReduce)(const void *, void *, size_t, int, int, ncclComm_t, void *);
  int (*broadcast)(const void *, void *, size_t, int, int, ncclComm_t, void *);
  int (*allGather)(const void *, void *, size_t, int, ncclComm_t, void *);
  int (*send)(const void *, size_t, int, int, ncclComm_t, void *);
  int (*recv)(void *, size_t, int, int, ncclComm_t, void *);
  int (*groupStart)();
  int (*groupEnd)();
};

struct CUDA {
  void *library = nullptr;
  int (*init)(unsigned);
  int (*ctxGetCurrent)(void **);
  int (*deviceGetCount)(int *);
  int (*deviceGet)(int *, int);
  int (*primaryCtxRetain)(void **, int);
  int (*ctxSetCurrent)(void *);
  int (*streamQuery)(void *);
};

std::mutex loadMutex;
NCCL nccl;
CUDA cuda;
std::string loadError;
bool loaded = false;

template <typename F> bool bind(void *library, F *slot, const char *name, std::string *missing) {
  *slot = reinterpret_cast<F>(dlsym(library, name));
  if (!*slot)
    *missing += std::string(missing->empty() ? "" : ", ") + name;
  return *slot != nullptr;
}

std::string loadLibraries() {
  nccl.library = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!nccl.library)
    return "libnccl.so.2 not found (NCCL comes with the CUDA toolkit on GPU machines)";
  std::string missing;
  void *l = nccl.library;
  bind(l, &nccl.getUniqueId, "ncclGetUniqueId", &missing);
  bind(l, &nccl.commInitRank, "ncclCommInitRank", &missing);
  bind(l, &nccl.commDestroy, "ncclCommDestroy", &missing);
  bind(l, &nccl.commAbort, "ncclCommAbort", &missing);
  bind(l, &nccl.commGetAsyncError, "ncclCommGetAsyncError", &missing);
  bind(l, &nccl.getErrorString, "ncclGetErrorString", &missing);
  bind(l, &nccl.allReduce, "ncclAllReduce", &missing);
  bind(l, &nccl.broadcast, "ncclBroadcast", &missing);
  bind(l, &nccl.allGather, "ncclAllGather", &missing);
  bind(l, &nccl.send, "ncclSend", &missing);
  bind(l, &nccl.recv, "ncclRecv", &missing);
  bind(l, &nccl.groupStart, "ncclGroupStart", &missing);
  bind(l, &nccl.groupEnd, "ncclGroupEnd", &missing);
  if (!missing.empty())
    return "libnccl.so.2 lacks " + missing + " (NCCL 2.7 or newer is needed)";
  cuda.library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!cuda.library)
    return "libcuda.so.1 not found (NCCL needs the NVIDIA driver)";
  l = cuda.library;
  bind(l, &cuda.init, "cuInit", &missing);
  bind(l, &cuda.ctxGetCurrent, "cuCtxGetCurrent", &missing);
  bind(l, &cuda.deviceGetCount, "cuDeviceGetCount", &missing);
  bind(l, &cuda.deviceGet, "cuDeviceGet", &missing);
  bind(l, &cuda.primaryCtxRetain, "cuDevicePrimaryCtxRetain", &missing);
  bind(l, &cuda.ctxSetCurrent, "cuCtxSetCurrent", &missing);
  bind(l, &cuda.streamQuery, "cuStreamQuery", &missing);
  if (!missing.empty())
    return "libcuda.so.1 lacks " + missing;
  return "";
}

struct State {
  ncclComm_t comm = nullptr;
  int rank = 0, size = 1;
  double timeout = 300;
  std::string brokenBy;
  const moir_comm_backend_ops *hostOps = nullptr;
  void *hostState = nullptr;
};

using moir::rt::comm::failWith;

const char *ncclText(int rc) { return nccl.getErrorString ? nccl.getErrorString(rc) : "?"; }

/// The local rank among the processes on this node, as launchers tell it;
/// it picks the GPU when the caller has made no CUDA context current.
int localRank() {
  for (const char *name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                           "LOCAL_RANK"})
    if (const char *value = std::getenv(name))
      return std::atoi(value);
  return 0;
}

/// Makes a CUDA context current: the caller's, or the primary context of
/// GPU (local rank mod GPUs).
int ensureContext(moir_comm_error *error) {
  int rc = cuda.init(0);
  if (rc)
    return failWith(error, MOIR_ERROR_DEVICE, "cuInit failed (CUDA error %d)", rc);
  void *current = nullptr;
  if (cuda.ctxGetCurrent(&current) == 0 && current)
    return 0;
  int count = 0, device = 0;
  if ((rc = cuda.deviceGetCount(&count)) || count == 0)
    return failWith(error, MOIR_ERROR_DEVICE, "no CUDA device (CUDA error %d)", rc);
  int ordinal = localRank() % count;
  void *context = nullptr;
  if ((rc = cuda.deviceGet(&device, ordinal)) || (rc = cuda.primaryCtxRetain(&context, device)) ||
      (rc = cuda.ctxSetCurrent(context)))
    return failWith(error, MOIR_ERROR_DEVICE, "cannot open CUDA device %d (CUDA error %d)",
                    ordinal, rc);
  return 0;
}

/// After an operation was enqueued: polls the default stream until it is
/// done, NCCL reports an error, or the time-out passes.
int finish(State *s, const char *what, int enqueued, moir_comm_error *error) {
  if (enqueued != ncclSuccess && enqueued != ncclInProgress)
    return failWith(error, MOIR_ERROR_DEVICE, "%s failed: %s", what, ncclText(enqueued));
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(s->timeout));
  for (;;) {
    int rc = cuda.streamQuery(nullptr);
    if (rc == 0)
      return 0;
    if (rc != kCudaNotReady)
      return failWith(error, MOIR_ERROR_DEVICE, "%s: the stream failed (CUDA error %d)", what, rc);
    int async = ncclSuccess;
    if (nccl.commGetAsyncError(s->comm, &async) == ncclSuccess && async != ncclSuccess &&
        async != ncclInProgress) {
      nccl.commAbort(s->comm);
      s->comm = nullptr;
      failWith(error, MOIR_ERROR_DEVICE, "%s failed: %s", what, ncclText(async));
      s->brokenBy = error->text;
      return MOIR_ERROR_DEVICE;
    }
    if (Clock::now() > deadline) {
      // Aborting the communicator ends the kernels that wait for the peer.
      nccl.commAbort(s->comm);
      s->comm = nullptr;
      failWith(error, MOIR_ERROR_IO,
               "%s timed out after %g s (MOIR_COMM_TIMEOUT) waiting for the other ranks: a rank "
               "is missing, dead or running a different program",
               what, s->timeout);
      s->brokenBy = error->text;
      return MOIR_ERROR_IO;
    }
    std::this_thread::yield();
  }
}

int usable(State *s, moir_comm_error *error) {
  if (!s->brokenBy.empty())
    return failWith(error, MOIR_ERROR_IO,
                    "this communicator was aborted after an earlier failure (%s); finalize it",
                    s->brokenBy.c_str());
  return 0;
}

int ncclOpen(const moir_comm_open_args *args, void **out, int *rank, int *size,
             moir_comm_error *error) {
  if (!args->host_ops)
    return failWith(error, MOIR_ERROR_INVALID_ARGUMENT, "NCCL needs a bootstrap communicator");
  // Rank 0's id, and whether it got one, go to every rank in one broadcast:
  // a failure there must not leave the others waiting.
  struct {
    ncclUniqueId id;
    int rootError;
  } boot{};
  int rc = ensureContext(error);
  if (args->host_rank == 0)
    boot.rootError = rc ? rc : (nccl.getUniqueId(&boot.id) != ncclSuccess ? -1 : 0);
  moir_comm_error hostError{};
  if (int hrc = args->host_ops->broadcast(args->host_state, &boot, sizeof boot, 0, &hostError))
    return failWith(error, hrc, "broadcasting NCCL's unique id: %s", hostError.text);
  // ncclCommInitRank waits for every rank: go on only if all of them can.
  std::string why = rc ? error->text : "";
  std::vector<int> ready(static_cast<size_t>(args->host_size));
  int mine = rc ? 1 : 0;
  if (int hrc = args->host_ops->all_gather(args->host_state, &mine, sizeof mine, ready.data(),
                                           &hostError))
    return failWith(error, hrc, "checking every rank's GPU: %s", hostError.text);
  if (rc)
    return failWith(error, rc, "%s", why.c_str());
  if (boot.rootError)
    return failWith(error, MOIR_ERROR_DEVICE, "rank 0 could not create NCCL's unique id");
  for (size_t r = 0; r < ready.size(); ++r)
    if (ready[r])
      return failWith(error, MOIR_ERROR_DEVICE, "rank %zu could not open its CUDA device", r);
  auto *s = new State;
  s->rank = args->host_rank;
  s->size = args->host_size;
  s->timeout = args->timeout_s;
  s->hostOps = args->host_ops;
  s->hostState = args->host_state;
  // Blocking: NCCL's own bootstrap has no time-out here.
  if ((rc = nccl.commInitRank(&s->comm, s->size, boot.id, s->rank)) != ncclSuccess) {
    delete s;
    return failWith(error, MOIR_ERROR_DEVICE, "ncclCommInitRank failed: %s", ncclText(rc));
  }
  *rank = s->rank;
  *size = s->size;
  *out = s;
  return 0;
}

int ncclBarrier(void *state, moir_comm_error *error) {
  // NCCL has no barrier: an all-reduce of nothing is not one either (it may
  // return at once), so the host communicator provides it.
  auto *s = static_cast<State *>(state);
  if (int rc = usable(s, error))
    return rc;
  return s->hostOps->barrier(s->hostState, error);
}

int ncclBroadcastOp(void *state, void *data, size_t bytes, int root, moir_comm_error *error) {
  auto *s = static_cast<State *>(state);
  if (int rc = usable(s, error))
    return rc;
  return finish(s, "ncclBroadcast",
                nccl.broadcast(data, data, bytes, ncclUint8, root, s->comm, nullptr), error);
}

int ncclAllReduceOp(void *state, float *data, size_t count, moir_comm_error *error) {
  auto *s = static_cast<State *>(state);
  if (int rc = usable(s, error))
    return rc;
  return finish(s, "ncclAllReduce",
                nccl.allReduce(data, data, count, ncclFloat32, ncclSum, s->comm, nullptr), error);
}

int ncclAllGatherOp(void *state, const void *send, size_t bytes, void *recv,
                    moir_comm_error *error) {
  auto *s = static_cast<State *>(state);
  if (int rc = usable(s, error))
    return rc;
  return finish(s, "ncclAllGather", nccl.allGather(send, recv, bytes, ncclUint8, s->comm, nullptr),
                error);
}

int ncclAllToAllV(void *state, const void *send, const size_t *sendBytes,
                  const size_t *sendOffsets, void *recv, const size_t *recvBytes,
                  const size_t *recvOffsets, moir_comm_error *error) {
  auto *s = static_cast<State *>(state);
  if (int rc = usable(s, error))
    return rc;
  // One group of point-to-point calls: NCCL runs them together, so the
  // order of peers cannot deadlock.
  int rc = nccl.groupStart();
  for (int j = 0; rc == ncclSuccess && j < s->size; ++j) {
    if (sendBytes[j])
      rc = nccl.send(static_cast<const char *>(send) + sendOffsets[j], sendBytes[j], ncclUint8, j,
                     s->comm, nullptr);
    if (rc == ncclSuccess && recvBytes[j])
      rc = nccl.recv(static_cast<char *>(recv) + recvOffsets[j], recvBytes[j], ncclUint8, j,
                     s->comm, nullptr);
  }
  int end = nccl.groupEnd();
  return finish(s, "ncclSend/ncclRecv (all-to-all-v)", rc != ncclSuccess ? rc : end, error);
}

void ncclAbortJob(void *state, int code) {
  auto *s = static_cast<State *>(state);
  if (s->comm)
    nccl.commAbort(s->comm);
  s->comm = nullptr;
  s->hostOps->abort_job(s->hostState, code);
}

void ncclClose(void *state) {
  auto *s = static_cast<State *>(state);
  if (s->comm)
    nccl.commDestroy(s->comm);
  delete s;
}

} // namespace

std::string moir::rt::comm::loadNCCL() {
  std::lock_guard<std::mutex> lock(loadMutex);
  if (!loaded) {
    loadError = loadLibraries();
    loaded = true;
  }
  return loadError;
}

const moir_comm_backend_ops moir::rt::comm::ncclBackend = {
    MOIR_COMM_BACKEND_ABI, "nccl",        ncclOpen,     ncclBarrier, ncclBroadcastOp,
    ncclAllReduceOp,       ncclAllGatherOp, ncclAllToAllV, ncclAbortJob, ncclClose,
};
