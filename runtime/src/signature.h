// Checking an artifact's signature against trusted keys.
#ifndef MOIR_RUNTIME_SIGNATURE_H
#define MOIR_RUNTIME_SIGNATURE_H

#include "moir/runtime.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moir::rt {

/// Checks that the file's trailer holds a signature, by a key listed in
/// `trustedKeysPath`, of every byte before the trailer; on success
/// `signedBytes` is that byte count (the artifact proper). The first
/// `copy.size()` bytes are taken from `copy` (a private copy of the file's
/// start, the bytes the caller goes on to use), the rest from `data`.
moir_status verifySignature(const std::string &path, const uint8_t *data, size_t size,
                            const std::vector<uint8_t> &copy,
                            const std::string &trustedKeysPath, size_t *signedBytes);

} // namespace moir::rt

#endif
