// Thread-local error state behind moir_last_error().
#ifndef MOIR_RUNTIME_STATUS_H
#define MOIR_RUNTIME_STATUS_H

#include "moir/runtime.h"

#include <string>

namespace moir::rt {

/// Records `message` as the thread's last error and returns `status`.
moir_status fail(moir_status status, std::string message);
/// Clears the thread's last error and returns MOIR_OK.
moir_status ok();

} // namespace moir::rt

#endif
