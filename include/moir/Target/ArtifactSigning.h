//===- ArtifactSigning.h - Ed25519 signatures of artifacts ------*- C++ -*-===//
//
// An artifact holds code the runtime loads and runs, so it can be signed like
// code: `moirc --sign KEY` appends a trailer (docs/artifact.md, "Signature")
// holding an Ed25519ph signature (libsodium) of every byte before it and the
// signer's public key; a runtime given trusted keys refuses artifacts that are
// unsigned, signed by another key or changed after signing.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_ARTIFACTSIGNING_H
#define MOIR_TARGET_ARTIFACTSIGNING_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

namespace moir {

/// Whether this build can sign (it was built with libsodium).
bool canSignArtifacts();

/// Writes a new key pair: `prefix.key` (the secret key, readable by its
/// owner only) and `prefix.pub` (the public key, one line a runtime's
/// trusted-keys file takes as it is).
llvm::Error generateSigningKey(llvm::StringRef prefix);

/// Checks that `keyPath` holds a signing key (before a compile that would
/// sign with it).
llvm::Error checkSigningKey(llvm::StringRef keyPath);

/// Appends the signature trailer, made with the secret key in `keyPath`, to
/// the unsigned artifact at `artifactPath`.
llvm::Error signArtifact(llvm::StringRef artifactPath, llvm::StringRef keyPath);

} // namespace moir

#endif // MOIR_TARGET_ARTIFACTSIGNING_H
