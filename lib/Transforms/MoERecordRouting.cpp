//===- MoERecordRouting.cpp - expert choices to the runtime's recorder -----===//

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "MoE/IR/MoEOps.h"
#include "moir/Transforms/Passes.h"

#include "mlir/IR/Builders.h"

namespace moir {
#define GEN_PASS_DEF_MOERECORDROUTINGPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

struct MoERecordRoutingPass : moir::impl::MoERecordRoutingPassBase<MoERecordRoutingPass> {
  void runOnOperation() override {
    getOperation()->walk([](Operation *op) {
      Value ids;
      int64_t experts = 0;
      if (auto fused = dyn_cast<moe::FusedExpertsOp>(op)) {
        ids = fused.getIds();
        experts = llm::getWeightShape(fused.getGate().getType())[0];
      } else if (auto dispatch = dyn_cast<moe::DispatchOp>(op)) {
        ids = dispatch.getIds();
        experts = dispatch.getNumExperts();
      } else {
        return;
      }
      std::optional<int64_t> layer = attrs::getLayer(op);
      if (!layer)
        return;
      OpBuilder b(op);
      auto record = moe::RecordRoutingOp::create(b, op->getLoc(), ids, b.getI64IntegerAttr(experts));
      attrs::setLayer(record, *layer);
    });
  }
};

} // namespace
