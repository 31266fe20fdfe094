//===- HalideTarget.h - Halide as MoIR's second code generator --*- C++ -*-===//
//
// The MLIR side: the passes that select kernels for Halide and compile
// them, and the bufferization of moir.halide_call into calls on
// halide_buffer_t descriptors. Built with or without libHalide: without it
// the compile pass refuses a module that has Halide kernels.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_HALIDE_HALIDETARGET_H
#define MOIR_TARGET_HALIDE_HALIDETARGET_H

#include "MoIR/IR/MoIRDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/Pass.h"

#include <string>

namespace moir {

#define GEN_PASS_DECL
#include "moir/Target/Halide/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moir/Target/Halide/Passes.h.inc"

namespace halide {
/// Whether this build links libHalide (moirc --kernels=halide works).
bool isAvailable();
/// moir.halide_call's bufferization (into a call on halide_buffer_t's).
void registerHalideCallBufferization(mlir::DialectRegistry &registry);

/// The function a device call gets a weight's resident descriptor from:
/// `ptr moir_hl_resident(ptr descriptor, ptr device_interface, i64
/// signature, i64 bytes, i64 padded_bytes)`, declared by the bufferization
/// and defined by moir-halide-resident-weights (ResidentWeights.cpp).
inline llvm::StringLiteral residentFunctionName() { return "moir_hl_resident"; }
/// A Vulkan call's: `ptr moir_hl_resident_or_staged(ptr descriptor, ptr
/// device_interface, i64 signature, i64 bytes, i64 padded_bytes, ptr
/// slot)`, moir_hl_resident or, where the table has no room, `slot` (a
/// zeroed slot of the caller's) staged for this call; the caller frees it
/// after the call with `void moir_hl_resident_free(ptr slot)`.
inline llvm::StringLiteral residentOrStagedFunctionName() { return "moir_hl_resident_or_staged"; }
inline llvm::StringLiteral residentFreeFunctionName() { return "moir_hl_resident_free"; }
/// The function moir.halide_sync_rows calls: `i32 moir_hl_sync_rows(ptr
/// descriptor, ptr device_interface, i64 signature, i64 begin, i64 end, i64
/// total, i64 padded)` (bytes; padded > 0: kept staged, Vulkan), also
/// defined by moir-halide-resident-weights.
inline llvm::StringLiteral syncRowsFunctionName() { return "moir_hl_sync_rows"; }
/// What the artifact exports for the runtime to call before it frees a
/// buffer it handed to @forward: `void moir_hl_forget(void *host)`.
inline llvm::StringLiteral forgetFunctionName() { return "moir_hl_forget"; }
/// The activation table (moirc --target=halide, KeepActivations.cpp): a
/// call's kept result `i32 moir_hl_keep(ptr descriptor, ptr host, i32
/// copied, i32 staged)` (0: kept, the descriptor's device fields cleared;
/// where the table is full, Vulkan's -1, else the result copied back), an
/// input on the device `i32 moir_hl_bind(ptr descriptor, i32 staged)` (1:
/// bound to the kept buffer, on Vulkan a crop of it; 0: not kept after the
/// table overflowed, the host's bytes current; -1: not kept otherwise), `void
/// moir_hl_unbind(ptr descriptor, i32 staged)` after the call, `void
/// moir_hl_release_activation(ptr host)` before each free and `void
/// moir_hl_release_activations()` at the end of @forward.
inline llvm::StringLiteral keepFunctionName() { return "moir_hl_keep"; }
inline llvm::StringLiteral bindFunctionName() { return "moir_hl_bind"; }
inline llvm::StringLiteral unbindFunctionName() { return "moir_hl_unbind"; }
inline llvm::StringLiteral releaseActivationFunctionName() { return "moir_hl_release_activation"; }
inline llvm::StringLiteral releaseActivationsFunctionName() { return "moir_hl_release_activations"; }
/// The text (MLIR's LLVM dialect) of the stores that make `dims`, a
/// pointer to kResidentMaxRank halide_dimension_t (`!dims`), a padded byte
/// buffer's: dimension 0 {0, padded, 1, 0}, the others {0, 1, padded, 0}
/// (a crop of it keeps the dimensionality). `padded` names an i32, and
/// `%d0`/`%d1` the i32 constants 0 and 1, defined before it; `prefix`
/// names the GEPs. The resident and activation tables' IR use it.
std::string paddedDimStores(llvm::StringRef dims, llvm::StringRef padded, llvm::StringRef prefix);
/// The text of the stores that fill `buf`, a halide_buffer_t (`!buf`), as a
/// buffer of uint8 (code 1, 8 bits, 1 lane): device, device interface, host
/// and flags, its dimensionality and its halide_dimension_t array, no
/// padding. Each operand names an SSA value of the field's type defined
/// before it (`%null` for a null pointer); `prefix` names the GEPs
/// (`%<prefix>0` to `%<prefix>9`, the field's index) and the type's
/// constants. The resident and activation tables' IR use it.
struct ByteBufferFields {
  llvm::StringRef device, interface, host, flags, rank, dims;
};
std::string byteBufferStores(llvm::StringRef buf, llvm::StringRef prefix,
                             const ByteBufferFields &fields);
/// The slots of the activation table (per thread).
constexpr int64_t kActivationSlots = 256;
/// The most dimensions a resident descriptor keeps.
constexpr int64_t kResidentMaxRank = 4;
} // namespace halide

} // namespace moir

#endif // MOIR_TARGET_HALIDE_HALIDETARGET_H
