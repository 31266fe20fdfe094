//===- Artifact.h - writing MoIR's compiled-model file ----------*- C++ -*-===//
//
// Format (docs/artifact.md): a 64-byte header, a text manifest, the compiled
// code and the packed weights, each section and each tensor 64-byte aligned
// so the runtime maps the file and uses the weights where they lie.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_ARTIFACT_H
#define MOIR_TARGET_ARTIFACT_H

#include "moir/Frontend/WeightStore.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace moir {

/// One argument of the compiled entry, in call order.
struct ArtifactArg {
  /// tokens, positions, offset, cache, weight or logits.
  std::string kind;
  /// i32, i64, index, f32, f16, bf16.
  std::string dtype;
  /// -1 for a dynamic (token) dimension.
  llvm::SmallVector<int64_t> shape;
  /// Weight-store tensors packed into this argument (weights only).
  llvm::SmallVector<std::string> names;
  /// For a quantized weight's part, its packed form and part
  /// ("u4:32:q4_k/data"; include/moir/Frontend/Quantization.h); empty for
  /// float weights.
  std::string packing;
  /// The fraction of this weight one decode step reads: 1 for dense weights,
  /// top_k / experts for stacked experts; rows gathered (the embedding table)
  /// read one row and do no arithmetic.
  double decodeFraction = 1.0;
  bool gathered = false;
  /// An expert stack: its MoE layer (the k-th, as routing profiles number
  /// them; -1 for other weights) and the layer's experts along its leading
  /// dimension, in order.
  int64_t moeLayer = -1;
  llvm::SmallVector<int64_t> experts;
};

/// One component's work per token as the compiler counts it (the manifest's
/// `cost` lines, the runtime's energy attribution): a decode token at
/// context S does decodeFlops + S * decodeFlopsPerRow FLOPs and reads
/// decodeBytes + S * decodeBytesPerRow bytes; a token of a `prompt`-token
/// prefill from an empty cache does prefillFlops and reads prefillBytes.
/// Components: layer.<i>.{attention,router,experts,projections} and
/// head.projections (the LM head); `experts` is the routed experts an
/// experts component holds.
struct CostComponent {
  std::string name;
  double decodeFlops = 0, decodeFlopsPerRow = 0, decodeBytes = 0, decodeBytesPerRow = 0;
  double prefillFlops = 0, prefillBytes = 0;
  int64_t experts = 0;
};

struct ArtifactInfo {
  /// "cpu <triple> <cpu-name>".
  std::string target;
  std::string family;
  int64_t vocab = 0, layers = 0, capacity = 0;
  std::vector<ArtifactArg> args;
  /// GPU kernels the code launches ("module.function"), listed for
  /// inspection; CPU artifacts have none.
  std::vector<std::string> kernels;
  /// The compiler's work model per component (manifest `cost` lines), the
  /// prefill counted for `costPrompt` tokens; empty: no cost lines.
  std::vector<CostComponent> costs;
  int64_t costPrompt = 0;
  /// Files packed after the weights (manifest `resource` lines): name and
  /// bytes, e.g. ("tokenizer.json", its text).
  std::vector<std::pair<std::string, std::string>> resources;
  /// Expert or tensor parallelism (manifest `parallel` line): this artifact
  /// is rank `rank` of `ranks`; `group` is shared by the ranks of one compile
  /// and checked by the runtime; `parallelKind` says what is split:
  /// "experts", "tensor" or "experts+tensor". ranks == 1: no line.
  std::string parallelKind = "experts";
  int64_t ranks = 1, rank = 0;
  uint64_t group = 0;
  /// Expert residency (moirc --expert-resident-budget): the bytes of expert
  /// weights to keep resident, chosen by `expertLoads` (moe-expert-parallel's
  /// "<layer>=<count>,...;..." form); 0: no `experts` lines.
  uint64_t residentBudget = 0;
  std::string expertLoads;
};

/// Writes the artifact; weights are copied from `store` in argument order.
/// The file appears at `path` only once complete (written beside it, then
/// renamed); with `signingKey` (a key file of moirc --generate-signing-key)
/// it is signed first. Errors name the file or the tensor.
llvm::Error writeArtifact(llvm::StringRef path, const ArtifactInfo &info,
                          llvm::StringRef code, const frontend::WeightStore &store,
                          llvm::StringRef signingKey = "");

/// Writes the f32 values of every quantized weight of `info` as the packed
/// form holds them (scale * code + offset), one safetensors tensor per
/// checkpoint tensor (an AWQ/GPTQ `<m>.qweight` as `<m>.weight`), so a
/// reference can run exactly the weights the artifact runs. Holds one
/// tensor at a time.
llvm::Error writeDequantizedWeights(llvm::StringRef path, const ArtifactInfo &info,
                                    const frontend::WeightStore &store);

/// FNV-1a 64 of `data` (the manifest's checksums).
uint64_t fnv1a64(llvm::StringRef data, uint64_t seed = 0xcbf29ce484222325ull);

} // namespace moir

#endif // MOIR_TARGET_ARTIFACT_H
