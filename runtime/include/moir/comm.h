/*===- moir/comm.h - MoIR communication layer C API ------------------------===
 *
 * Collectives between the ranks (processes) that run one model together:
 * tensor-parallel all-reduces, expert-parallel dispatch and combine, and the
 * checks that every rank runs the same artifact. Transport-neutral: one API
 * over several backends, chosen by name:
 *
 *   "self"  one rank, no transport: every operation is a copy or nothing.
 *   "mpi"   MPI (Open MPI, MPICH) through the plugin libmoir_comm_mpi.so,
 *           built only where MPI was found and loaded with dlopen, so the
 *           runtime itself needs no MPI. Buffers are host memory.
 *   "nccl"  NCCL (libnccl.so.2, loaded with dlopen) bootstrapped over "mpi"
 *           (or "self" for one rank). BUFFERS ARE DEVICE MEMORY (CUDA device
 *           pointers in the current context); operations run on the legacy
 *           default stream and return once it has finished them.
 *           Dispatch/combine are not available with NCCL.
 *   "auto"  "mpi" when the process was started by an MPI launcher (mpirun,
 *           srun: it sets OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK or
 *           MPI_LOCALNRANKS), "self" otherwise.
 *
 * Every operation is collective: each rank of the communicator calls it, in
 * the same order, with matching arguments. None waits forever: an operation
 * that the other ranks have not joined within MOIR_COMM_TIMEOUT seconds
 * (default 300; read when the communicator is created) fails, saying which
 * operation and that a rank is missing, dead or running a different program.
 * After such a time-out the communicator is out of step with the other
 * ranks: later operations on it fail at once; finalize it.
 *
 * Environment:
 *   MOIR_COMM_BACKEND     the backend of moir_comm_world() (default "auto").
 *   MOIR_COMM_TIMEOUT     seconds an operation may wait (default 300).
 *   MOIR_COMM_MPI_PLUGIN  path of libmoir_comm_mpi.so (default: the one next
 *                         to libmoir_runtime.so).
 *
 * Functions return a moir_status; on failure moir_last_error() (runtime.h)
 * says what failed, on which rank. Arguments are checked before anything is
 * sent, so bad arguments given alike on every rank fail alike on every rank.
 * Calls from several threads are serialized.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOIR_COMM_H
#define MOIR_COMM_H

#include "moir/runtime.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moir_comm moir_comm;

/* A new communicator over all the processes of the job, with its own message
 * space (an MPI communicator of its own): operations on it never match those
 * on another. backend: "auto", "mpi", "nccl", "self" (NULL: "auto").
 * Collective for mpi and nccl. */
moir_status moir_comm_init(const char *backend, moir_comm **out);

/* The process-wide communicator, created on first use with the backend named
 * by MOIR_COMM_BACKEND (default "auto"); compiled code uses it. It lives
 * until the process exits: moir_comm_finalize ignores it. */
moir_status moir_comm_world(moir_comm **out);

int moir_comm_rank(const moir_comm *c);
int moir_comm_size(const moir_comm *c);
/* "self", "mpi" or "nccl" (never "auto"). */
const char *moir_comm_backend(const moir_comm *c);

moir_status moir_comm_barrier(moir_comm *c);
/* Copies `bytes` bytes at `data` on rank `root` to `data` on every rank. */
moir_status moir_comm_broadcast(moir_comm *c, void *data, size_t bytes, int root);
/* In place: data[i] becomes the sum over ranks of data[i]. The order of the
 * additions is the backend's; results may differ from a sequential sum in
 * the last bits, but agree on every rank. */
moir_status moir_comm_all_reduce_sum_f32(moir_comm *c, float *data, size_t count);
/* recv (size * bytes bytes) gets every rank's `bytes` bytes of send, in rank
 * order. */
moir_status moir_comm_all_gather(moir_comm *c, const void *send, size_t bytes, void *recv);
/* Personalized exchange: this rank sends send_bytes[j] bytes from
 * send + send_offsets[j] to rank j, and receives recv_bytes[i] bytes from
 * rank i at recv + recv_offsets[i]; arrays of moir_comm_size() entries.
 * recv_bytes[i] on rank j must equal send_bytes[j] on rank i. Counts may be
 * 0; regions may come in any order but must not overlap. With "mpi", each
 * count and offset must be below 2 GiB (MPI's int counts). */
moir_status moir_comm_all_to_all_v(moir_comm *c, const void *send, const size_t *send_bytes,
                                   const size_t *send_offsets, void *recv,
                                   const size_t *recv_bytes, const size_t *recv_offsets);
/* Every rank passes a value; succeeds on every rank when all are equal, and
 * otherwise fails on every rank (MOIR_ERROR_FORMAT) naming `what`, the ranks
 * and their values. For artifact checksums, rank counts, configuration. */
moir_status moir_comm_check_agree(moir_comm *c, const char *what, uint64_t value);

/* ---- Expert dispatch and combine ---------------------------------------- */

/* Dispatch sends each of this rank's `count` rows (row_bytes bytes each, row
 * i at rows + i * row_bytes) to rank dest[i], the rank that holds the row's
 * expert; dest may name the ranks in any order. row_bytes must be the same
 * on every rank. Every rank receives the rows sent to it grouped by source
 * rank in rank order and, within a source, in that source's row order:
 * moir_comm_routes_received() rows at moir_comm_routes_data() (owned by the
 * handle and writable, so experts may work in place), of which
 * moir_comm_routes_from(r, s) came from rank s. A destination that is not a
 * rank fails the dispatch on every rank (the others are told which rank
 * passed it).
 *
 * The handle, *out, keeps the counts and the row order for combine, which
 * sends processed rows back over one all-to-all-v with the counts reversed:
 * `processed` holds moir_comm_routes_received() rows of out_row_bytes bytes
 * in the order they were received (it may be moir_comm_routes_data() when
 * the row size is unchanged), and `out` (count rows of out_row_bytes) gets in
 * row i the processed version of the dispatch's row i. out_row_bytes may
 * differ from row_bytes but must be the same on every rank. A handle may be
 * combined several times (several outputs per dispatch); free it with
 * moir_comm_routes_free. Host memory only: "nccl" refuses dispatch. */
typedef struct moir_comm_routes moir_comm_routes;

moir_status moir_comm_dispatch(moir_comm *c, const void *rows, size_t count, size_t row_bytes,
                               const int32_t *dest, moir_comm_routes **out);
size_t moir_comm_routes_received(const moir_comm_routes *r);
void *moir_comm_routes_data(moir_comm_routes *r);
size_t moir_comm_routes_from(const moir_comm_routes *r, int source);
moir_status moir_comm_combine(moir_comm *c, moir_comm_routes *r, const void *processed,
                              size_t out_row_bytes, void *out);
void moir_comm_routes_free(moir_comm_routes *r);

/* Ends the communicator (not collective). NULL and the world communicator
 * are ignored. MPI itself is finalized at process exit when the runtime
 * initialized it. */
void moir_comm_finalize(moir_comm *c);

/* ---- Called by compiled code --------------------------------------------- */

/* In-place sum over the world communicator of `count` floats at `data`. On
 * any error it prints "moir: rank R of N: <what failed>" to stderr and ends
 * the whole job (MPI_Abort; exit(70) without MPI), because a compiled forward
 * pass cannot continue after a failed collective. Returns normally on
 * success; with one rank it does nothing. The compiler emits calls to it; it
 * is resolved from libmoir_runtime.so when the runtime loads an artifact. */
void moir_rt_all_reduce_sum_f32(float *data, int64_t count);

/* Tensor parallelism's all-gather: `out` (rows x cols floats, row-major)
 * gets every rank's columns. The cols columns are U = ceil(cols / unit)
 * units of `unit` columns (the last may be shorter); rank r holds units
 * [r * U / N, (r + 1) * U / N) (rounded down; N ranks), and passes in `in`
 * its columns of every row (rows x its column count, row-major). Copies
 * only: the values arrive bit for bit. Errors end the job as
 * moir_rt_all_reduce_sum_f32's do. */
void moir_rt_all_gather_f32(const float *in, float *out, int64_t rows, int64_t cols,
                            int64_t unit);

#ifdef __cplusplus
}
#endif

#endif /* MOIR_COMM_H */
