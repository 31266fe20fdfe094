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
      if (auto attention = dyn_cast<llm::AttentionOp>(op)) {
        attention.setFlashAttr(flash);
        return;
      }
      auto attend = dyn_cast<mla::AttendOp>(op);
      if (!attend)
        return;
      // Only the materialized form runs ordinary attention; absorbed MLA
      // attends in the latent space.
      auto prefill = attend->getAttrOfType<StringAttr>("mla.prefill_form");
      bool materialized =
          attend.getForm() == mla::Form::materialized ||
          (prefill && prefill.getValue() == mla::stringifyForm(mla::Form::materialized));
      if (materialized)
        attend.setFlashAttr(flash);
    });
  }
};

} // namespace
