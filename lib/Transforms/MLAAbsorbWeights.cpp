//===- MLAAbsorbWeights.cpp - per-phase form of latent attention -----------===//

#include "moir/Transforms/Passes.h"

#include "MLA/IR/MLAOps.h"

namespace moir {
#define GEN_PASS_DEF_MLAABSORBWEIGHTSPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

struct MLAAbsorbWeightsPass : moir::impl::MLAAbsorbWeightsPassBase<MLAAbsorbWeightsPass> {
  void runOnOperation() override {
    getOperation()->walk([](mla::AttendOp op) {
      if (op.getForm() != mla::Form::materialized)
        return;
      mla::ConfigAttr c = op.getConfig();
      MLIRContext *ctx = op.getContext();
      op.setFormAttr(mla::FormAttr::get(ctx, mla::Form::absorbed));
      // A prefill from an empty cache (S = T), per head and row pair:
      // materialized nope + rope + v (+ the expansion, shared over T rows)
      // against absorbed 2 * rank + rope.
      if (c.getQkNopeHeadDim() + c.getVHeadDim() < 2 * c.getKvLoraRank())
        op.setPrefillForm(mla::Form::materialized);
    });
  }
};

} // namespace
