//===- Compile.h - whole compiles, as moirc runs them -----------*- C++ -*-===//

#ifndef MOIR_DRIVER_COMPILE_H
#define MOIR_DRIVER_COMPILE_H

#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Target/GPU/GPUTarget.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/Error.h"

#include <string>

namespace moir::frontend {
class WeightStore;
} // namespace moir::frontend

namespace moir {

/// Target-independent choices of the graph phase.
struct GraphChoices {
  /// mla-absorb-weights: latent attention's form per phase by cost; false:
  /// materialized everywhere (the reference the absorbed form is checked
  /// against).
  bool absorbMLA = true;
  /// moe-fuse-experts: dispatch, expert FFNs, combine and the shared expert
  /// as one moe.fused_experts (CPU lowering only; GPU targets keep the steps).
  bool fuseExperts = true;
  /// moe-fuse-router: the router matmul and routing as one moe.fused_route
  /// (CPU lowering only, like fuseExperts).
  bool fuseRouter = true;
  /// flash-attention: attention by online softmax over key blocks (CPU
  /// lowering only, like fuseExperts).
  bool flashAttention = true;
  /// quantize-kv-cache: "int8" or "fp8" (E4M3) caches with row scales;
  /// empty: f32 caches.
  std::string quantizeKVCache;
};

/// The graph pipeline's options for `choices` (every compile and moirc's
/// --report and --compile-to read the choices through this).
void setGraphOptions(const GraphChoices &choices, GraphPipelineOptions &options);

/// Compiles an input-phase module (from the importer) for the CPU and writes
/// the artifact to `outputPath`: graph phase, lowering, code generation,
/// weight packing.
llvm::Error compileCPUArtifact(mlir::ModuleOp module, const frontend::WeightStore &store,
                               const cpu::TargetOptions &options,
                               llvm::StringRef outputPath, const GraphChoices &graph = {});

/// Compiles for a registered GPU target ("nvidia", "amd"): kernels in the
/// vendor's binary format inside a host shared object for x86-64. With
/// `deviceCodePath` set, also writes the device binaries there (for ptxas /
/// cuobjdump / readelf checks).
llvm::Error compileGPUArtifact(mlir::ModuleOp module, const frontend::WeightStore &store,
                               llvm::StringRef target, const gpu::GPUOptions &options,
                               llvm::StringRef outputPath,
                               llvm::StringRef deviceCodePath = "",
                               const GraphChoices &graph = {});

/// moirc --report: from a graph-phase module, per layer and in total, the
/// contractions' FLOPs and the weight and cache bytes they read per decode
/// token at `context` and per token of a `prompt`-token prefill, with the
/// graph phase's fusion choices and without them, and the fusions applied.
llvm::Error printReport(mlir::ModuleOp module, int64_t context, int64_t prompt,
                        llvm::raw_ostream &os);

} // namespace moir

#endif // MOIR_DRIVER_COMPILE_H
