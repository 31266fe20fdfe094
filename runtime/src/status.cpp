#include "status.h"

namespace {
thread_local std::string lastError;
} // namespace

moir_status moir::rt::fail(moir_status status, std::string message) {
  lastError = std::move(message);
  return status;
}

moir_status moir::rt::ok() {
  lastError.clear();
  return MOIR_OK;
}

extern "C" const char *moir_last_error(void) { return lastError.c_str(); }

extern "C" const char *moir_status_name(moir_status status) {
  switch (status) {
  case MOIR_OK:
    return "MOIR_OK";
  case MOIR_ERROR_INVALID_ARGUMENT:
    return "MOIR_ERROR_INVALID_ARGUMENT";
  case MOIR_ERROR_IO:
    return "MOIR_ERROR_IO";
  case MOIR_ERROR_FORMAT:
    return "MOIR_ERROR_FORMAT";
  case MOIR_ERROR_OUT_OF_RANGE:
    return "MOIR_ERROR_OUT_OF_RANGE";
  case MOIR_ERROR_UNSUPPORTED:
    return "MOIR_ERROR_UNSUPPORTED";
  case MOIR_ERROR_DEVICE:
    return "MOIR_ERROR_DEVICE";
  case MOIR_ERROR_UNTRUSTED:
    return "MOIR_ERROR_UNTRUSTED";
  }
  return "MOIR_ERROR_UNKNOWN";
}
