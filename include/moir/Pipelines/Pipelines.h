//===- Pipelines.h - MoIR's compile phases and pipelines --------*- C++ -*-===//

#ifndef MOIR_PIPELINES_PIPELINES_H
#define MOIR_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"
#include "llvm/ADT/StringRef.h"

#include <optional>

namespace moir {

/// The phases a compile goes through, in order; `--compile-to=<phase>`
/// stops after one and dumps its IR.
enum class CompilePhase {
  /// The importer's output, checked against the input contract.
  Input,
  /// Graph-level IR: composite ops decomposed, canonicalized.
  Graph,
  /// Weights bound to entry arguments, every MoIR op lowered to linalg,
  /// tensor, scf, arith and math on tensors.
  Linalg,
  /// Bufferized, lowered to loops and to the LLVM dialect, with the exported
  /// entry `moir_forward` (CPU).
  LLVM,
};

/// Phase names as `--compile-to` spells them.
llvm::StringRef stringifyCompilePhase(CompilePhase phase);
std::optional<CompilePhase> parseCompilePhase(llvm::StringRef name);

struct GraphPipelineOptions
    : public mlir::PassPipelineOptions<GraphPipelineOptions> {
  Option<bool> decomposeMoE{*this, "decompose-moe",
                            llvm::cl::desc("expand moe.layer into its steps"),
                            llvm::cl::init(true)};
  Option<bool> decomposeMLA{
      *this, "decompose-mla",
      llvm::cl::desc("expand mla.attention into its steps"),
      llvm::cl::init(true)};
  Option<bool> absorbMLA{
      *this, "absorb-mla",
      llvm::cl::desc("choose the form of latent attention per phase by cost "
                     "(mla-absorb-weights): absorbed for decode, materialized "
                     "for prefill where cheaper; off: materialized everywhere"),
      llvm::cl::init(true)};
  Option<bool> fuseRouter{
      *this, "fuse-router",
      llvm::cl::desc("fuse the router matmul into the routing step "
                     "(moe.fused_route, moe-fuse-router)"),
      llvm::cl::init(true)};
  Option<bool> fuseExperts{
      *this, "fuse-experts",
      llvm::cl::desc("fuse dispatch, the expert FFNs, combine and the shared "
                     "expert into moe.fused_experts (moe-fuse-experts)"),
      llvm::cl::init(true)};
  Option<bool> flashAttention{
      *this, "flash-attention",
      llvm::cl::desc("attention by online softmax over key blocks, scores "
                     "never materialized (flash-attention)"),
      llvm::cl::init(true)};
  Option<std::string> quantizeKVCache{
      *this, "quantize-kv-cache",
      llvm::cl::desc("store the KV caches quantized: int8 or fp8 (E4M3), row "
                     "scales (quantize-kv-cache); empty: f32"),
      llvm::cl::init("")};
  Option<int64_t> maxConstantElements{
      *this, "max-constant-elements",
      llvm::cl::desc("largest constant tensor the input contract allows"),
      llvm::cl::init(4096)};
};

/// Input phase: verify the importer's output against the contract.
void buildInputPipeline(mlir::OpPassManager &pm,
                        const GraphPipelineOptions &options);

/// Input -> Graph: the contract check, then decomposition of composite ops
/// and canonicalization.
void buildGraphPipeline(mlir::OpPassManager &pm,
                        const GraphPipelineOptions &options);

/// Adds the passes that take a module from the input phase to `phase`.
void buildPipelineToPhase(mlir::OpPassManager &pm, CompilePhase phase,
                          const GraphPipelineOptions &options);

/// Registers the pipelines with the pass registry (moir-graph-pipeline).
void registerPipelines();

} // namespace moir

#endif // MOIR_PIPELINES_PIPELINES_H
