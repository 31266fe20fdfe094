// Where a run's threads spend their time, per parallel region: with
// MOIR_PROFILE_REGIONS set, the thread pool times every fork (its wall time and
// each thread's work in it, less its barrier waits) and the process prints a
// table at exit, one row per outlined region, named from the compiled code's
// symbol table. Unset, the pool pays one predictable branch per fork.
#ifndef MOIR_RUNTIME_REGION_PROFILE_H
#define MOIR_RUNTIME_REGION_PROFILE_H

#include <cstdint>

namespace moir::rt {

/// True when MOIR_PROFILE_REGIONS is set (read once).
bool regionProfiling();

/// Monotonic nanoseconds.
int64_t profileNow();

/// One fork of `region` (the outlined function's address) on `threads`
/// threads: its wall time and each thread's busy time (ns).
void recordRegion(const void *region, int64_t wallNs, const int64_t *busyNs, int32_t threads);

} // namespace moir::rt

#endif
