//===- MoIRDialect.h - MoIR's contract attributes ---------------*- C++ -*-===//

#ifndef MOIR_DIALECT_MOIR_IR_MOIRDIALECT_H
#define MOIR_DIALECT_MOIR_IR_MOIRDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/Operation.h"
#include "mlir/IR/PatternMatch.h"

#include "MoIR/IR/MoIREnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "MoIR/IR/MoIRAttrs.h.inc"

#include "MoIR/IR/MoIRDialect.h.inc"

#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "MoIR/IR/MoIROps.h.inc"

namespace moir {

/// The contract attributes by name, for code that sets or reads them: each
/// wraps the dialect's generated helper so no `moir.*` name is spelled twice.
namespace attrs {
using Dialect = MoIRDialect;
inline llvm::StringLiteral familyName() { return Dialect::FamilyAttrHelper::getNameStr(); }
inline llvm::StringLiteral sourceName() { return Dialect::SourceAttrHelper::getNameStr(); }
inline llvm::StringLiteral layerName() { return Dialect::LayerAttrHelper::getNameStr(); }
inline llvm::StringLiteral argName() { return Dialect::ArgAttrHelper::getNameStr(); }
inline llvm::StringLiteral loweringConfigName() {
  return Dialect::LoweringConfigAttrHelper::getNameStr();
}
inline llvm::StringLiteral parallelName() { return Dialect::ParallelAttrHelper::getNameStr(); }
inline llvm::StringLiteral kernelName() { return Dialect::KernelAttrHelper::getNameStr(); }
inline llvm::StringLiteral preciseName() { return Dialect::PreciseAttrHelper::getNameStr(); }
inline llvm::StringLiteral rowQuantName() { return Dialect::RowQuantAttrHelper::getNameStr(); }
inline llvm::StringLiteral serialName() { return Dialect::SerialAttrHelper::getNameStr(); }
inline llvm::StringLiteral warpReduceName() { return Dialect::WarpReduceAttrHelper::getNameStr(); }
inline llvm::StringLiteral hostCopyName() { return Dialect::HostCopyAttrHelper::getNameStr(); }
inline llvm::StringLiteral abiName() { return Dialect::AbiAttrHelper::getNameStr(); }
inline llvm::StringLiteral packedName() { return Dialect::PackedAttrHelper::getNameStr(); }
inline llvm::StringLiteral linkObjectsName() {
  return Dialect::LinkObjectsAttrHelper::getNameStr();
}
inline llvm::StringLiteral keepResultsName() {
  return Dialect::KeepResultsAttrHelper::getNameStr();
}
inline llvm::StringLiteral deviceInputsName() {
  return Dialect::DeviceInputsAttrHelper::getNameStr();
}
inline llvm::StringLiteral hostResultsName() {
  return Dialect::HostResultsAttrHelper::getNameStr();
}

/// A unit marker (moir.parallel, moir.kernel, ...) on `op`.
inline void mark(mlir::Operation *op, llvm::StringLiteral name) {
  op->setAttr(name, mlir::UnitAttr::get(op->getContext()));
}

/// The decoder layer `op` belongs to (moir.layer), if any.
std::optional<int64_t> getLayer(mlir::Operation *op);
void setLayer(mlir::Operation *op, int64_t layer);

/// The entry argument description of @forward's argument `index`.
EntryArgAttr getEntryArg(mlir::Operation *func, unsigned index);

/// The lowering configuration of the module holding `op`, or null.
LoweringConfigAttr getLoweringConfig(mlir::Operation *op);
} // namespace attrs

/// Keeps rewritten ops in their decoder layer: a graph rewrite inserts its
/// new ops before the op it replaces, so an op inserted without moir.layer
/// takes the layer of the first op after it that has one. Give it to a
/// greedy rewrite (GreedyRewriteConfig::setListener) or an OpBuilder.
class KeepLayers : public mlir::RewriterBase::Listener {
public:
  void notifyOperationInserted(mlir::Operation *op, mlir::OpBuilder::InsertPoint) override;
};

/// applyPatternsGreedily with KeepLayers: what the graph passes rewrite stays
/// in its layer.
llvm::LogicalResult applyPatternsKeepingLayers(mlir::Operation *root,
                                               mlir::RewritePatternSet &&patterns);

} // namespace moir

#endif // MOIR_DIALECT_MOIR_IR_MOIRDIALECT_H
