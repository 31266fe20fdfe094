//===- Pipelines.h - the passes that build each compile phase ---*- C++ -*-===//
//
// Every phase's pipeline is a plain function in lib/Pipelines: the
// target-neutral input, graph and linalg phases here, the CPU's lowering to
// LLVM in CPUPipelines.h, the GPUs' kernels, device and host phases in
// GPUPipelines.h (each in a library of its own, so a GPU backend never links
// the CPU's passes). Target backends (moir/Target/TargetBackend.h) call them;
// moir-opt registers them.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_PIPELINES_PIPELINES_H
#define MOIR_PIPELINES_PIPELINES_H

#include "moir/Pipelines/Options.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

namespace moir {
class TargetBackend;

/// moir-graph-pipeline's options: the graph section of Options.def, plus the
/// input contract's limit.
struct GraphPipelineOptions : public mlir::PassPipelineOptions<GraphPipelineOptions> {
#define MOIR_GRAPH_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP)                               \
  Option<TYPE> FIELD{*this, FLAG, llvm::cl::desc(HELP), llvm::cl::init(DEFAULT)};
#include "moir/Pipelines/Options.def"
  Option<int64_t> maxConstantElements{
      *this, "max-constant-elements",
      llvm::cl::desc("largest constant tensor the input contract allows"), llvm::cl::init(4096)};
  Option<bool> decompose{*this, "decompose",
                         llvm::cl::desc("expand moe.layer and mla.attention into their steps "
                                        "(=false: only the contract check and canonicalization)"),
                         llvm::cl::init(true)};

  GraphSection toSection() const;
};

/// Input phase: verify the importer's output against the contract.
void buildInputPipeline(mlir::OpPassManager &pm, int64_t maxConstantElements = 4096);

/// Input -> Graph: the contract check, decomposition of composite ops (unless
/// `decompose` is false, for tests of the composite ops), the fusions `graph`
/// asks for, canonicalization.
void buildGraphPipeline(mlir::OpPassManager &pm, const GraphSection &graph,
                        int64_t maxConstantElements = 4096, bool decompose = true);

/// Graph -> Linalg, after a target wrote its #moir.lowering_config: weights
/// bound to entry arguments, layers outlined, MoIR ops lowered to linalg.
/// Knows no target.
void buildLoweringToLinalgPipeline(mlir::OpPassManager &pm, bool kQuantSuperblocks = true);

/// The passes that produce `phase` from the phase before it, for `backend`
/// (input, graph and linalg are target-neutral; linalg starts with the
/// backend's lowering configuration). The compile driver runs these phase by
/// phase; moir-compile runs them in one pipeline. Fails for a phase the
/// backend does not have.
llvm::Error buildPhasePipeline(mlir::OpPassManager &pm, const TargetBackend &backend,
                               CompilePhase phase, const CompileOptions &options);

/// Adds a step that fails the run with `message`: a pipeline that cannot be
/// built says why instead of running nothing.
void addPipelineError(mlir::OpPassManager &pm, const llvm::Twine &message);

/// Registers the target-neutral pipelines with the pass registry for
/// moir-opt: moir-graph-pipeline and moir-compile (any target to any phase).
/// The CPU's and GPUs' own are in CPUPipelines.h and GPUPipelines.h.
void registerPipelines();

} // namespace moir

#endif // MOIR_PIPELINES_PIPELINES_H
