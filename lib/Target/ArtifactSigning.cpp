//===- ArtifactSigning.cpp - Ed25519 signatures of artifacts --------------===//

#include "moir/Target/ArtifactSigning.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdio>
#include <cstring>
#include <vector>

#ifdef MOIR_HAVE_SODIUM
#include <sodium.h>
#endif

using namespace llvm;

namespace moir {

namespace {

Error fail(const Twine &message) { return createStringError(inconvertibleErrorCode(), message); }

constexpr char kSecretTag[] = "moir-ed25519-secret-key";
constexpr char kPublicTag[] = "moir-ed25519-public-key";

} // namespace

bool canSignArtifacts() {
#ifdef MOIR_HAVE_SODIUM
  return true;
#else
  return false;
#endif
}

#ifndef MOIR_HAVE_SODIUM

Error generateSigningKey(StringRef) {
  return fail("this moirc was built without libsodium: it cannot make signing keys "
              "(install libsodium-dev and rebuild)");
}

Error checkSigningKey(StringRef keyPath) {
  return fail(keyPath + ": this moirc was built without libsodium: it cannot sign artifacts "
                        "(install libsodium-dev and rebuild)");
}

Error signArtifact(StringRef path, StringRef) {
  return fail(path + ": this moirc was built without libsodium: it cannot sign artifacts "
                     "(install libsodium-dev and rebuild)");
}

#else

namespace {

Error initSodium() {
  if (sodium_init() < 0)
    return fail("libsodium failed to initialize");
  return Error::success();
}

/// Writes `text` to `path`, with the permissions given, replacing nothing.
Error writeNewFile(StringRef path, StringRef text, unsigned mode) {
  int fd = -1;
  if (std::error_code ec = sys::fs::openFileForWrite(path, fd, sys::fs::CD_CreateNew,
                                                     sys::fs::OF_None, mode))
    return fail(path + ": cannot create: " + ec.message());
  raw_fd_ostream os(fd, /*shouldClose=*/true);
  os << text;
  os.close();
  if (os.has_error()) {
    std::string why = os.error().message();
    os.clear_error();
    sys::fs::remove(path);
    return fail(path + ": write failed: " + why);
  }
  return Error::success();
}

} // namespace

Error generateSigningKey(StringRef prefix) {
  if (Error err = initSodium())
    return err;
  unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(pk, sk);
  std::string secret = std::string(kSecretTag) + " " + toHex(ArrayRef<uint8_t>(sk, sizeof sk), true) + "\n";
  std::string pub = std::string(kPublicTag) + " " + toHex(ArrayRef<uint8_t>(pk, sizeof pk), true) + "\n";
  sodium_memzero(sk, sizeof sk);
  if (Error err = writeNewFile((prefix + ".key").str(), secret, 0600))
    return err;
  sodium_memzero(secret.data(), secret.size());
  return writeNewFile((prefix + ".pub").str(), pub, 0644);
}

Error checkSigningKey(StringRef keyPath) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> keyFile = MemoryBuffer::getFile(keyPath);
  if (!keyFile)
    return fail(keyPath + ": cannot read the signing key: " + keyFile.getError().message());
  auto [tag, hex] = (*keyFile)->getBuffer().trim().split(' ');
  std::string sk;
  bool ok = tag == kSecretTag && tryGetFromHex(hex.trim(), sk) &&
            sk.size() == crypto_sign_SECRETKEYBYTES;
  // The public half must be the secret half's: else every signature fails.
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  ok = ok && crypto_sign_ed25519_sk_to_pk(pk, reinterpret_cast<const unsigned char *>(sk.data())) == 0;
  unsigned char seed[crypto_sign_SEEDBYTES], pk2[crypto_sign_PUBLICKEYBYTES],
      sk2[crypto_sign_SECRETKEYBYTES];
  ok = ok && crypto_sign_ed25519_sk_to_seed(seed, reinterpret_cast<const unsigned char *>(sk.data())) == 0 &&
       crypto_sign_seed_keypair(pk2, sk2, seed) == 0 && std::memcmp(pk, pk2, sizeof pk) == 0;
  sodium_memzero(seed, sizeof seed);
  sodium_memzero(sk2, sizeof sk2);
  sodium_memzero(sk.data(), sk.size());
  if (!ok)
    return fail(keyPath + ": not a MoIR signing key (expected '" + kSecretTag + " <" +
                Twine(2 * crypto_sign_SECRETKEYBYTES) + " hex digits>', as moirc "
                "--generate-signing-key writes)");
  return Error::success();
}

Error signArtifact(StringRef path, StringRef keyPath) {
  if (Error err = initSodium())
    return err;
  if (Error err = checkSigningKey(keyPath))
    return err;
  // The secret key: "moir-ed25519-secret-key <128 hex digits>".
  ErrorOr<std::unique_ptr<MemoryBuffer>> keyFile = MemoryBuffer::getFile(keyPath);
  if (!keyFile)
    return fail(keyPath + ": cannot read the signing key: " + keyFile.getError().message());
  StringRef text = (*keyFile)->getBuffer().trim();
  auto [tag, hex] = text.split(' ');
  std::string sk;
  if (tag != kSecretTag || !tryGetFromHex(hex.trim(), sk) || sk.size() != crypto_sign_SECRETKEYBYTES)
    return fail(keyPath + ": not a MoIR signing key (expected '" + kSecretTag + " <" +
                Twine(2 * crypto_sign_SECRETKEYBYTES) + " hex digits>', as moirc "
                "--generate-signing-key writes)");
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  crypto_sign_ed25519_sk_to_pk(pk, reinterpret_cast<const unsigned char *>(sk.data()));
  // Ed25519ph over every byte of the unsigned artifact, read in pieces.
  crypto_sign_state state;
  crypto_sign_init(&state);
  std::FILE *in = std::fopen(path.str().c_str(), "rb");
  if (!in) {
    sodium_memzero(sk.data(), sk.size());
    return fail(path + ": cannot read for signing: " + std::strerror(errno));
  }
  std::vector<unsigned char> chunk(1 << 22);
  size_t n;
  while ((n = std::fread(chunk.data(), 1, chunk.size(), in)) > 0)
    crypto_sign_update(&state, chunk.data(), n);
  bool readError = std::ferror(in);
  std::fclose(in);
  if (readError) {
    sodium_memzero(sk.data(), sk.size());
    return fail(path + ": read failed while signing");
  }
  unsigned char signature[crypto_sign_BYTES];
  crypto_sign_final_create(&state, signature, nullptr,
                           reinterpret_cast<const unsigned char *>(sk.data()));
  sodium_memzero(sk.data(), sk.size());
  // Trailer: magic, algorithm (1: Ed25519ph), trailer bytes, public key (the
  // secret key's second half), signature.
  std::string trailer("MOIRSIG1", 8);
  uint32_t algorithm = 1, bytes = 8 + 4 + 4 + crypto_sign_PUBLICKEYBYTES + crypto_sign_BYTES;
  trailer.append(reinterpret_cast<const char *>(&algorithm), 4);
  trailer.append(reinterpret_cast<const char *>(&bytes), 4);
  trailer.append(reinterpret_cast<const char *>(pk), sizeof pk);
  trailer.append(reinterpret_cast<const char *>(signature), sizeof signature);
  std::error_code ec;
  raw_fd_ostream os(path, ec, sys::fs::OF_Append);
  if (ec)
    return fail(path + ": cannot append the signature: " + ec.message());
  os << trailer;
  os.close();
  if (os.has_error()) {
    std::string why = os.error().message();
    os.clear_error();
    return fail("appending the signature failed: " + why);
  }
  return Error::success();
}

#endif

} // namespace moir
