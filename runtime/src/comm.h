// The backends behind moir_comm (moir/comm.h): each is one table of entry
// points. comm.cpp checks the arguments, picks the backend and words the
// errors; a backend only moves bytes. The table is plain C because the MPI
// backend lives in a plugin (libmoir_comm_mpi.so) that the runtime loads
// with dlopen, so that libmoir_runtime.so itself needs no MPI.
#ifndef MOIR_RUNTIME_COMM_H
#define MOIR_RUNTIME_COMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Bumped whenever the table below changes: a plugin built against another
/// table is refused instead of called wrongly.
#define MOIR_COMM_BACKEND_ABI 1

/// A failed operation's description, written by the backend. A fixed buffer
/// rather than a std::string so that nothing C++ crosses the plugin boundary.
typedef struct moir_comm_error {
  char text[1024];
} moir_comm_error;

typedef struct moir_comm_backend_ops moir_comm_backend_ops;

typedef struct moir_comm_open_args {
  /// Seconds an operation may wait for the other ranks (MOIR_COMM_TIMEOUT).
  double timeout_s;
  /// A host-memory communicator over the same processes (NCCL bootstraps
  /// over it); NULL for backends that need none.
  const moir_comm_backend_ops *host_ops;
  void *host_state;
  int host_rank, host_size;
} moir_comm_open_args;

/// Every entry point but abort_job and close returns 0 on success and a
/// moir_status code otherwise, with `error` filled in. Arguments have been
/// checked by comm.cpp (non-null where bytes are moved, root and counts in
/// range, sums of offsets and counts without overflow).
struct moir_comm_backend_ops {
  uint32_t abi; // MOIR_COMM_BACKEND_ABI
  const char *name;
  /// Creates a communicator over every process of the job.
  int (*open)(const moir_comm_open_args *args, void **state, int *rank, int *size,
              moir_comm_error *error);
  int (*barrier)(void *state, moir_comm_error *error);
  int (*broadcast)(void *state, void *data, size_t bytes, int root, moir_comm_error *error);
  int (*all_reduce_sum_f32)(void *state, float *data, size_t count, moir_comm_error *error);
  int (*all_gather)(void *state, const void *send, size_t bytes, void *recv,
                    moir_comm_error *error);
  int (*all_to_all_v)(void *state, const void *send, const size_t *send_bytes,
                      const size_t *send_offsets, void *recv, const size_t *recv_bytes,
                      const size_t *recv_offsets, moir_comm_error *error);
  /// Ends every process of the job with exit status `code`; does not return
  /// when the backend can reach the other processes.
  void (*abort_job)(void *state, int code);
  /// Frees the communicator (not collective).
  void (*close)(void *state);
};

/// The MPI plugin's one exported entry point: its table, or NULL when it was
/// built for another `abi`.
typedef const moir_comm_backend_ops *(*moir_comm_mpi_plugin_fn)(uint32_t abi);
#define MOIR_COMM_MPI_PLUGIN_ENTRY "moir_comm_mpi_plugin"

#ifdef __cplusplus
}

#include <cstdarg>
#include <cstdio>
#include <string>

namespace moir::rt::comm {

/// How a backend's entry point fails: `format` (printf) written into
/// `error`, `status` returned.
inline int failWith(moir_comm_error *error, int status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
inline int failWith(moir_comm_error *error, int status, const char *format, ...) {
  va_list args;
  va_start(args, format);
  std::vsnprintf(error->text, sizeof error->text, format, args);
  va_end(args);
  return status;
}

extern const moir_comm_backend_ops selfBackend; // comm.cpp
extern const moir_comm_backend_ops ncclBackend; // comm_nccl.cpp

/// Loads libnccl.so.2 (once); "" when it is there, otherwise why not. Checked
/// before the bootstrap communicator is created, so a missing NCCL costs no
/// collective.
std::string loadNCCL();

} // namespace moir::rt::comm
#endif

#endif
