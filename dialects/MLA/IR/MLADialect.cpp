//===- MLADialect.cpp - Multi-head Latent Attention dialect ---------------===//

#include "MLA/IR/MLADialect.h"
#include "MLA/IR/MLAOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace moir::mla;

#include "MLA/IR/MLADialect.cpp.inc"
#include "MLA/IR/MLAEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "MLA/IR/MLAAttrs.cpp.inc"

void MLADialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "MLA/IR/MLAOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "MLA/IR/MLAAttrs.cpp.inc"
      >();
}

LogicalResult ConfigAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                 int64_t numHeads, int64_t qLoraRank,
                                 int64_t kvLoraRank, int64_t qkNopeHeadDim,
                                 int64_t qkRopeHeadDim, int64_t vHeadDim) {
  if (numHeads < 1 || kvLoraRank < 1 || qkNopeHeadDim < 1 || vHeadDim < 1)
    return emitError() << "MLA num_heads, kv_lora_rank, qk_nope_head_dim and "
                          "v_head_dim must be positive";
  if (qkRopeHeadDim < 2 || qkRopeHeadDim % 2 != 0)
    return emitError() << "MLA qk_rope_head_dim must be positive and even, got "
                       << qkRopeHeadDim;
  if (qLoraRank < 0)
    return emitError() << "MLA q_lora_rank must be >= 0 (0: no query "
                          "compression), got "
                       << qLoraRank;
  return success();
}
