//===- VerifyInputContract.cpp - the imported-IR contract -----------------===//

#include "LLM/IR/LLMOps.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/ADT/StringSet.h"

namespace moir {
#define GEN_PASS_DEF_VERIFYINPUTCONTRACTPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

/// Number of elements of an embedded tensor constant, or 0 for anything else.
int64_t embeddedElements(Attribute attr) {
  if (auto elements = dyn_cast<ElementsAttr>(attr))
    return elements.getNumElements();
  return 0;
}

struct VerifyInputContractPass
    : moir::impl::VerifyInputContractPassBase<VerifyInputContractPass> {
  using Base::Base;

  void runOnOperation() override {
    static const llvm::StringSet<> allowedDialects = {
        "builtin", "func", "arith", "tensor", "linalg", "llm", "moe", "mla"};
    bool failedContract = false;
    getOperation()->walk([&](Operation *op) {
      StringRef dialect = op->getName().getDialectNamespace();
      if (!allowedDialects.contains(dialect)) {
        op->emitError() << "'" << op->getName()
                        << "' is outside the input contract (allowed dialects: "
                           "builtin, func, arith, tensor, linalg, llm, moe, mla)";
        failedContract = true;
      }
      for (NamedAttribute attr : op->getAttrs()) {
        int64_t elements = embeddedElements(attr.getValue());
        if (elements > maxConstantElements.getValue()) {
          op->emitError() << "embeds a " << elements << "-element constant in '"
                          << attr.getName().getValue()
                          << "'; weights must be referenced by name with "
                             "llm.weight (limit "
                          << maxConstantElements.getValue() << " elements)";
          failedContract = true;
        }
      }
      for (OpOperand &operand : op->getOpOperands()) {
        if (!isa<llm::QTensorType>(operand.get().getType()) ||
            isa<llm::DequantizeOp>(op))
          continue;
        auto consumer = dyn_cast<llm::QuantizedWeightConsumerOpInterface>(op);
        if (!consumer || !consumer.acceptsQuantizedOperand(operand.getOperandNumber())) {
          op->emitError() << "operand #" << operand.getOperandNumber()
                          << " is a quantized weight, which '" << op->getName()
                          << "' cannot read; insert llm.dequantize";
          failedContract = true;
        }
      }
      for (Value result : op->getResults()) {
        if (isa<llm::QTensorType>(result.getType()) &&
            !isa<llm::WeightRefOpInterface>(op)) {
          op->emitError() << "only llm.weight and llm.stacked_weight may "
                             "produce quantized weights";
          failedContract = true;
        }
      }
    });
    if (failedContract)
      signalPassFailure();
  }
};

} // namespace
