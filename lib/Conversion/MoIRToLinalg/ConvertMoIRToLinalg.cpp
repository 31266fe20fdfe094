//===- ConvertMoIRToLinalg.cpp - the moir-lower-to-linalg pass ------------===//

#include "Patterns.h"

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "MLA/IR/MLAOps.h"
#include "MoE/IR/MoEOps.h"
#include "moir/Conversion/Passes.h"

#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace moir {
#define GEN_PASS_DEF_CONVERTMOIRTOLINALGPASS
#include "moir/Conversion/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct ConvertMoIRToLinalgPass
    : moir::impl::ConvertMoIRToLinalgPassBase<ConvertMoIRToLinalgPass> {
  void runOnOperation() override {
    // Everything target-dependent (block sizes, work items, the thread pool)
    // comes from the configuration a target's pass wrote.
    moir::LoweringConfigAttr config = moir::attrs::getLoweringConfig(getOperation());
    if (!config) {
      getOperation()->emitError()
          << "moir-lower-to-linalg: no " << moir::attrs::loweringConfigName()
          << " on the module (run a target's configuration pass first: "
             "moir-cpu-configure-lowering or moir-gpu-configure-lowering)";
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    moir::lowering::populateLLMToLinalgPatterns(patterns);
    moir::lowering::populateMoEToLinalgPatterns(patterns);
    moir::lowering::populateMLAToLinalgPatterns(patterns);
    walkAndApplyPatterns(getOperation(), std::move(patterns));
    // Dequantized caches the attention lowerings read fused (storage and
    // scales directly) are left without users.
    getOperation()->walk([](moir::llm::DequantizeCacheOp op) {
      if (op->use_empty())
        op->erase();
    });
    // So are packed weights: their consumers read the data and scales.
    getOperation()->walk([](moir::llm::PackedWeightOp op) {
      if (op->use_empty())
        op->erase();
    });
    // Whatever is left has no lowering (weights and composites are handled by
    // earlier passes): name it.
    WalkResult result = getOperation()->walk([](Operation *op) {
      StringRef dialect = op->getName().getDialectNamespace();
      if ((dialect == "llm" && !isa<moir::llm::WeightOp, moir::llm::StackedWeightOp,
                                         moir::llm::AllReduceOp, moir::llm::AllGatherOp>(op)) ||
          (dialect == "moe" && !isa<moir::moe::RecordRoutingOp>(op)) || dialect == "mla") {
        op->emitError() << "'" << op->getName()
                        << "' has no lowering for these operand types yet";
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      return signalPassFailure();
    // A target without a thread pool (GPUs map every loop themselves) gets
    // no markers for one.
    if (!config.getParallel())
      getOperation()->walk([](Operation *op) { op->removeAttr(moir::attrs::parallelName()); });
  }
};

} // namespace
