// Artifact signatures: the trailer `moirc --sign` appends (docs/artifact.md,
// "Signature") checked against a trusted-keys file with libsodium's Ed25519ph.
#include "signature.h"
#include "status.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#ifdef MOIR_HAVE_SODIUM
#include <sodium.h>
#endif

using moir::rt::fail;

namespace {

constexpr size_t kKeyBytes = 32, kSignatureBytes = 64;
constexpr size_t kTrailerBytes = 8 + 4 + 4 + kKeyBytes + kSignatureBytes;
constexpr char kPublicTag[] = "moir-ed25519-public-key";

std::string hex(const uint8_t *data, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += digits[data[i] >> 4];
    s += digits[data[i] & 15];
  }
  return s;
}

bool fromHex(const std::string &text, std::vector<uint8_t> &out) {
  if (text.size() % 2)
    return false;
  out.clear();
  for (size_t i = 0; i < text.size(); i += 2) {
    auto nibble = [](char c) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    int hi = nibble(text[i]), lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out.push_back(static_cast<uint8_t>(hi * 16 + lo));
  }
  return true;
}

/// The public keys of a trusted-keys file: one "moir-ed25519-public-key
/// <64 hex digits> [comment]" per line; blank lines and '#' comments.
moir_status readTrustedKeys(const std::string &path, std::vector<std::vector<uint8_t>> &keys) {
  std::ifstream in(path);
  if (!in)
    return fail(MOIR_ERROR_IO, path + ": cannot read the trusted keys: " + std::strerror(errno));
  std::string line;
  for (int lineNo = 1; std::getline(in, line); ++lineNo) {
    std::istringstream words(line);
    std::string tag, digits;
    if (!(words >> tag) || tag[0] == '#')
      continue;
    std::vector<uint8_t> key;
    if (tag != kPublicTag || !(words >> digits) || !fromHex(digits, key) || key.size() != kKeyBytes)
      return fail(MOIR_ERROR_FORMAT, path + ":" + std::to_string(lineNo) + ": expected '" +
                                         kPublicTag + " <64 hex digits>' (a .pub file of moirc "
                                         "--generate-signing-key)");
    keys.push_back(std::move(key));
  }
  if (keys.empty())
    return fail(MOIR_ERROR_FORMAT, path + ": no trusted keys in the file");
  return MOIR_OK;
}

} // namespace

moir_status moir::rt::verifySignature(const std::string &path, const uint8_t *data, size_t size,
                                      const std::vector<uint8_t> &copy,
                                      const std::string &trustedKeysPath, size_t *signedBytes) {
  std::vector<std::vector<uint8_t>> keys;
  if (moir_status s = readTrustedKeys(trustedKeysPath, keys); s != MOIR_OK)
    return s;
  // The trailer, copied once: what is checked is what is used.
  uint8_t trailer[kTrailerBytes];
  if (size < kTrailerBytes)
    return fail(MOIR_ERROR_UNTRUSTED, path + ": not signed, and trusted keys are required (" +
                                          trustedKeysPath + "); sign it with moirc --sign");
  std::memcpy(trailer, data + size - kTrailerBytes, kTrailerBytes);
  if (std::memcmp(trailer, "MOIRSIG1", 8) != 0)
    return fail(MOIR_ERROR_UNTRUSTED, path + ": not signed, and trusted keys are required (" +
                                          trustedKeysPath + "); sign it with moirc --sign");
  uint32_t algorithm, bytes;
  std::memcpy(&algorithm, trailer + 8, 4);
  std::memcpy(&bytes, trailer + 12, 4);
  if (algorithm != 1 || bytes != kTrailerBytes)
    return fail(MOIR_ERROR_UNTRUSTED, path + ": signature of unknown kind (algorithm " +
                                          std::to_string(algorithm) + ", " +
                                          std::to_string(bytes) + " bytes)");
  const uint8_t *key = trailer + 16, *signature = key + kKeyBytes;
  bool trusted = false;
  for (const auto &k : keys)
    trusted = trusted || std::memcmp(k.data(), key, kKeyBytes) == 0;
  if (!trusted)
    return fail(MOIR_ERROR_UNTRUSTED, path + ": signed by key " + hex(key, kKeyBytes) +
                                          ", which is not in " + trustedKeysPath);
#ifdef MOIR_HAVE_SODIUM
  if (sodium_init() < 0)
    return fail(MOIR_ERROR_UNSUPPORTED,
                path + ": cannot check the signature: libsodium failed to initialize");
  size_t total = size - kTrailerBytes, fromCopy = std::min(copy.size(), total);
  crypto_sign_state state;
  crypto_sign_init(&state);
  crypto_sign_update(&state, copy.data(), fromCopy);
  crypto_sign_update(&state, data + fromCopy, total - fromCopy);
  if (crypto_sign_final_verify(&state, const_cast<uint8_t *>(signature), key) != 0)
    return fail(MOIR_ERROR_UNTRUSTED,
                path + ": signature does not match the contents (changed after signing, or "
                       "corrupted)");
  *signedBytes = size - kTrailerBytes;
  return MOIR_OK;
#else
  (void)signature;
  (void)signedBytes;
  return fail(MOIR_ERROR_UNSUPPORTED,
              path + ": this runtime was built without libsodium and cannot check signatures");
#endif
}
