//===- ConvertMoIRToLinalg.cpp - the convert-moir-to-linalg pass -----------===//

#include "Patterns.h"

#include "LLM/IR/LLMOps.h"
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
    // Whatever is left has no lowering (weights and composites are handled by
    // earlier passes): name it.
    WalkResult result = getOperation()->walk([](Operation *op) {
      StringRef dialect = op->getName().getDialectNamespace();
      if ((dialect == "llm" && !isa<moir::llm::WeightOp, moir::llm::StackedWeightOp>(op)) ||
          dialect == "moe" || dialect == "mla") {
        op->emitError() << "'" << op->getName()
                        << "' has no CPU lowering for these operand types yet";
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
