//===- MoIROps.cpp - verifiers and accessors of the contract attributes ---===//

#include "MoIR/IR/MoIRDialect.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;
using namespace moir;

LogicalResult EntryArgAttr::verify(function_ref<InFlightDiagnostic()> emitError, ArgKind kind,
                                   ArrayAttr names, StringAttr packing) {
  if (packing && (kind != ArgKind::weight ||
                  !(packing.getValue().ends_with("/data") || packing.getValue().ends_with("/scales"))))
    return emitError() << "#moir.arg: packing belongs to weights and ends in /data or /scales";
  bool isWeight = kind == ArgKind::weight;
  if (isWeight != (names && !names.empty()))
    return emitError() << "#moir.arg: weights, and only weights, carry their names";
  if (names && llvm::any_of(names, [](Attribute a) { return !isa<StringAttr>(a); }))
    return emitError() << "#moir.arg: weight names must be strings";
  return success();
}

LogicalResult LoweringConfigAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                         bool parallel, int64_t workItems, int64_t minSplitKeys,
                                         int64_t keyBlock, int64_t queryRows, int64_t ffnBlock,
                                         int64_t tokenBlock, int64_t vectorWidth, bool rowQuant,
                                         int64_t decodeFfnBlock) {
  for (auto [name, value] : {std::pair<StringRef, int64_t>{"work_items", workItems},
                             {"min_split_keys", minSplitKeys},
                             {"key_block", keyBlock},
                             {"query_rows", queryRows},
                             {"ffn_block", ffnBlock},
                             {"token_block", tokenBlock},
                             {"vector_width", vectorWidth}})
    if (value < 1)
      return emitError() << "#moir.lowering_config: " << name << " must be positive, got "
                         << value;
  if (decodeFfnBlock < 0)
    return emitError() << "#moir.lowering_config: decode_ffn_block must not be negative (0: "
                          "ffn_block), got "
                       << decodeFfnBlock;
  return success();
}

/// Every `moir.*` attribute on an op must be one the dialect declares, of its
/// declared type; each also has a place it belongs.
LogicalResult MoIRDialect::verifyOperationAttribute(Operation *op, NamedAttribute attribute) {
  StringRef name = attribute.getName().getValue();
  Attribute value = attribute.getValue();
  auto wrongType = [&](StringRef expected) {
    return op->emitOpError() << "attribute '" << name << "' must be " << expected << ", got "
                             << value;
  };
  if (name == attrs::familyName() || name == attrs::sourceName())
    return isa<StringAttr>(value) ? success() : wrongType("a string");
  if (name == attrs::layerName()) {
    auto layer = dyn_cast<IntegerAttr>(value);
    if (!layer || !layer.getType().isInteger(64))
      return wrongType("an i64 integer");
    return layer.getInt() >= 0 ? success()
                               : op->emitOpError() << "'" << name << "' must not be negative";
  }
  if (name == attrs::loweringConfigName()) {
    if (!isa<LoweringConfigAttr>(value))
      return wrongType("a #moir.lowering_config");
    return isa<ModuleOp>(op) ? success()
                             : op->emitOpError() << "'" << name << "' belongs on the module";
  }
  if (name == attrs::packedName())
    return isa<StringAttr>(value) ? success() : wrongType("a string");
  if (name == attrs::linkObjectsName()) {
    auto files = dyn_cast<ArrayAttr>(value);
    if (!files || !llvm::all_of(files, [](Attribute a) { return isa<StringAttr>(a); }))
      return wrongType("an array of file names");
    return isa<ModuleOp>(op) ? success()
                             : op->emitOpError() << "'" << name << "' belongs on the module";
  }
  if (name == attrs::abiName())
    return isa<DenseI64ArrayAttr>(value) ? success() : wrongType("an array<i64>");
  if (name == attrs::parallelName() || name == attrs::kernelName() ||
      name == attrs::preciseName() || name == attrs::rowQuantName() ||
      name == attrs::serialName() ||
      name == attrs::warpReduceName() || name == attrs::hostCopyName())
    return isa<UnitAttr>(value) ? success() : wrongType("a unit attribute");
  if (name == attrs::keepResultsName() || name == attrs::deviceInputsName() ||
      name == attrs::hostResultsName()) {
    auto call = dyn_cast<HalideCallOp>(op);
    if (!call)
      return op->emitOpError() << "'" << name << "' belongs on a moir.halide_call";
    if (name == attrs::keepResultsName())
      return isa<UnitAttr>(value) ? success() : wrongType("a unit attribute");
    auto indices = dyn_cast<DenseI64ArrayAttr>(value);
    if (!indices)
      return wrongType("an array<i64>");
    int64_t bound = name == attrs::deviceInputsName()
                        ? static_cast<int64_t>(call.getInputs().size())
                        : static_cast<int64_t>(call.getNumResults());
    for (int64_t i : indices.asArrayRef())
      if (i < 0 || i >= bound)
        return op->emitOpError() << "'" << name << "' names " << i << ", which is not one of its "
                                 << bound << (name == attrs::deviceInputsName() ? " inputs" : " results");
    return success();
  }
  if (name == attrs::argName())
    return op->emitOpError() << "'" << name << "' belongs on arguments of @forward";
  return op->emitOpError() << "unknown MoIR attribute '" << name << "'";
}

LogicalResult MoIRDialect::verifyRegionArgAttribute(Operation *op, unsigned, unsigned,
                                                    NamedAttribute attribute) {
  if (attribute.getName().getValue() != attrs::argName())
    return op->emitOpError() << "unknown MoIR argument attribute '" << attribute.getName().getValue()
                             << "'";
  if (!isa<EntryArgAttr>(attribute.getValue()))
    return op->emitOpError() << "'" << attrs::argName() << "' must be a #moir.arg, got "
                             << attribute.getValue();
  return success();
}

std::optional<int64_t> attrs::getLayer(Operation *op) {
  if (auto layer = op->getAttrOfType<IntegerAttr>(layerName()))
    return layer.getInt();
  return std::nullopt;
}

void attrs::setLayer(Operation *op, int64_t layer) {
  op->setAttr(layerName(), IntegerAttr::get(IntegerType::get(op->getContext(), 64), layer));
}

EntryArgAttr attrs::getEntryArg(Operation *func, unsigned index) {
  auto function = dyn_cast<FunctionOpInterface>(func);
  if (!function || index >= function.getNumArguments())
    return {};
  return function.getArgAttrOfType<EntryArgAttr>(index, argName());
}

LoweringConfigAttr attrs::getLoweringConfig(Operation *op) {
  if (!op)
    return {};
  auto module = isa<ModuleOp>(op) ? cast<ModuleOp>(op) : op->getParentOfType<ModuleOp>();
  while (module) {
    if (auto config = module->getAttrOfType<LoweringConfigAttr>(loweringConfigName()))
      return config;
    module = module->getParentOfType<ModuleOp>();
  }
  return {};
}

void KeepLayers::notifyOperationInserted(Operation *op, OpBuilder::InsertPoint) {
  if (op->hasAttr(attrs::layerName()) || op->hasTrait<OpTrait::ConstantLike>() ||
      !isa_and_nonnull<FunctionOpInterface>(op->getParentOp()))
    return;
  for (Operation *next = op->getNextNode(); next; next = next->getNextNode())
    if (std::optional<int64_t> layer = attrs::getLayer(next)) {
      attrs::setLayer(op, *layer);
      return;
    }
}

LogicalResult moir::applyPatternsKeepingLayers(Operation *root, RewritePatternSet &&patterns) {
  KeepLayers keep;
  GreedyRewriteConfig config;
  config.setListener(&keep);
  return applyPatternsGreedily(root, std::move(patterns), config);
}

LogicalResult HalideCallOp::verify() {
  static const char *kKernels[] = {"rms_norm", "linear",  "glu",       "activation",
                                   "rope",     "glu_linear", "router", "experts",
                                   "attention", "mla",     "add",       "embed",
                                   "xielu"};
  if (!llvm::is_contained(kKernels, getKernel()))
    return emitOpError() << "unknown Halide kernel '" << getKernel()
                         << "' (rms_norm, linear, glu, activation, rope, glu_linear, router, "
                            "experts, attention, mla, add, embed, xielu)";
  size_t results = getKernel() == "router" ? 2 : 1;
  if (getNumResults() != results)
    return emitOpError() << "Halide kernel '" << getKernel() << "' has " << results
                         << " result(s), not " << getNumResults();
  if (!getCallee().starts_with("moir_hl_"))
    return emitOpError() << "callee '" << getCallee() << "' must start with moir_hl_";
  // Tensors, or quantized weights (!llm.qtensor) until their expansion.
  for (Type type : getInputs().getTypes())
    if (!isa<RankedTensorType>(type) && type.getDialect().getNamespace() != "llm")
      return emitOpError() << "operand of type " << type
                           << " is neither a ranked tensor nor a quantized weight";
  if (std::optional<ArrayRef<int64_t>> resident = getResident())
    for (int64_t index : *resident)
      if (index < 0 || index >= static_cast<int64_t>(getInputs().size()))
        return emitOpError() << "resident input " << index << " is not an operand (it has "
                             << getInputs().size() << ")";
  return success();
}

LogicalResult HalideSyncRowsOp::verify() {
  auto type = cast<RankedTensorType>(getCache().getType());
  if (getDevice() != "opencl" && getDevice() != "vulkan")
    return emitOpError() << "device '" << getDevice()
                         << "': only OpenCL and Vulkan keep KV caches on the device";
  int64_t bytes = type.hasStaticShape()
                      ? type.getNumElements() * type.getElementTypeBitWidth() / 8
                      : 0;
  if (getDevice() == "vulkan" && bytes % 64)
    return emitOpError() << "cache " << type << " of " << bytes
                         << " bytes: Vulkan keeps only caches whose size is a multiple of 64 "
                            "bytes (Halide 21's Vulkan allocator)";
  if (type.getRank() < 1 || type.getRank() > 4 || !type.hasStaticShape())
    return emitOpError() << "cache " << type << " must be static, of rank 1 to 4";
  return success();
}
