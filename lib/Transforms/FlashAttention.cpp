//===- FlashAttention.cpp - attention by online softmax --------------------===//

#include "LLM/IR/LLMOps.h"
#include "MLA/IR/MLAOps.h"
#include "moir/Transforms/Passes.h"

namespace moir {
#define GEN_PASS_DEF_FLASHATTENTIONPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

struct FlashAttentionPass : moir::impl::FlashAttentionPassBase<FlashAttentionPass> {
  void runOnOperation() override {
    UnitAttr flash = UnitAttr::get(&getContext());
    getOperation()->walk([&](Operation *op) {
      if (auto attention = dyn_cast<llm::AttentionOp>(op))
        attention.setFlashAttr(flash);
      else if (auto attend = dyn_cast<mla::AttendOp>(op))
        attend.setFlashAttr(flash);
    });
  }
};

} // namespace
