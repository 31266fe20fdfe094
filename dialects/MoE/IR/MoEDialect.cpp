//===- MoEDialect.cpp - Mixture-of-Experts dialect and attributes ---------===//

#include "MoE/IR/MoEDialect.h"
#include "MoE/IR/MoEOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace moir::moe;

#include "MoE/IR/MoEDialect.cpp.inc"
#include "MoE/IR/MoEEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "MoE/IR/MoEAttrs.cpp.inc"

void MoEDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "MoE/IR/MoEOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "MoE/IR/MoEAttrs.cpp.inc"
      >();
}

LogicalResult RoutingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                  int64_t topK, Scoring scoring,
                                  TopkMethod method, int64_t nGroup,
                                  int64_t topkGroup, bool normTopkProb,
                                  FloatAttr scaling) {
  if (topK < 1)
    return emitError() << "top_k must be >= 1, got " << topK;
  if (nGroup < 1)
    return emitError() << "n_group must be >= 1, got " << nGroup;
  if (topkGroup < 1 || topkGroup > nGroup)
    return emitError() << "topk_group must be in [1, n_group = " << nGroup
                       << "], got " << topkGroup;
  if (method == TopkMethod::greedy && nGroup != 1)
    return emitError() << "greedy routing takes no expert groups (n_group = "
                       << nGroup << ")";
  if (scaling && scaling.getValueAsDouble() <= 0.0)
    return emitError() << "routed scaling factor must be positive";
  return success();
}

double RoutingAttr::getScalingFactor() const {
  if (FloatAttr scaling = getScaling())
    return scaling.getValueAsDouble();
  return 1.0;
}

LogicalResult RoutingAttr::verifyForExperts(
    function_ref<InFlightDiagnostic()> emitError, int64_t numExperts) const {
  if (getTopK() > numExperts)
    return emitError() << "top_k " << getTopK() << " exceeds the number of experts "
                       << numExperts;
  if (numExperts % getNGroup() != 0)
    return emitError() << numExperts << " experts do not split into n_group = "
                       << getNGroup() << " equal groups";
  int64_t perGroup = numExperts / getNGroup();
  if (getTopkGroup() * perGroup < getTopK())
    return emitError() << "topk_group = " << getTopkGroup() << " groups of "
                       << perGroup << " experts cannot supply top_k = "
                       << getTopK();
  if (getMethod() == TopkMethod::noaux_tc && perGroup < 2)
    return emitError() << "noaux_tc scores groups by their two best experts; "
                          "groups of "
                       << perGroup << " are too small";
  return success();
}
