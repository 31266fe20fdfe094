//===- LLMDialect.cpp - common LLM dialect, attributes and types ----------===//

#include "LLM/IR/LLMDialect.h"
#include "LLM/IR/LLMOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>
#include <numeric>

using namespace mlir;
using namespace moir::llm;

#include "LLM/IR/LLMDialect.cpp.inc"
#include "LLM/IR/LLMEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "LLM/IR/LLMAttrs.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "LLM/IR/LLMTypes.cpp.inc"

void LLMDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "LLM/IR/LLMOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "LLM/IR/LLMAttrs.cpp.inc"
      >();
  addTypes<
#define GET_TYPEDEF_LIST
#include "LLM/IR/LLMTypes.cpp.inc"
      >();
}

FailureOr<SmallVector<int64_t>>
moir::llm::parseBracketedI64List(AsmParser &parser) {
  SmallVector<int64_t> values;
  if (parser.parseCommaSeparatedList(AsmParser::Delimiter::Square, [&] {
        return parser.parseInteger(values.emplace_back());
      }))
    return failure();
  return values;
}

void moir::llm::printBracketedI64List(AsmPrinter &printer, ArrayRef<int64_t> values) {
  printer << "[";
  llvm::interleaveComma(values, printer);
  printer << "]";
}

//===----------------------------------------------------------------------===//
// RopeAttr
//===----------------------------------------------------------------------===//

LogicalResult RopeAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                               FloatAttr theta, int64_t dim,
                               RopeScaling scaling, FloatAttr factor,
                               FloatAttr lowFreqFactor,
                               FloatAttr highFreqFactor,
                               int64_t originalMaxPosition, FloatAttr betaFast,
                               FloatAttr betaSlow, FloatAttr mscale,
                               FloatAttr mscaleAllDim, bool interleaved,
                               DenseF64ArrayAttr freqFactors) {
  if (!theta || theta.getValueAsDouble() <= 0.0)
    return emitError() << "rope theta must be positive";
  if (dim <= 0 || dim % 2 != 0)
    return emitError() << "rope dim must be positive and even, got " << dim;
  if (freqFactors) {
    if (freqFactors.size() != dim / 2)
      return emitError() << "rope freq_factors needs dim / 2 = " << dim / 2
                         << " values, got " << freqFactors.size();
    for (double f : freqFactors.asArrayRef())
      if (!(f > 0.0) || !std::isfinite(f))
        return emitError() << "rope freq_factors must be positive and finite, got " << f;
  }
  bool hasLlama3Params = lowFreqFactor || highFreqFactor;
  bool hasYarnParams = betaFast || betaSlow || mscale || mscaleAllDim;
  if (scaling == RopeScaling::none) {
    if (factor || hasLlama3Params || hasYarnParams || originalMaxPosition)
      return emitError() << "rope scaling parameters given without a scaling type";
    return success();
  }
  if (!factor || factor.getValueAsDouble() <= 0.0)
    return emitError() << "rope scaling '" << stringifyRopeScaling(scaling)
                       << "' needs a positive factor";
  switch (scaling) {
  case RopeScaling::none:
  case RopeScaling::linear:
    if (hasLlama3Params || hasYarnParams || originalMaxPosition)
      return emitError() << "linear rope scaling takes only a factor";
    break;
  case RopeScaling::llama3:
    if (!lowFreqFactor || !highFreqFactor || originalMaxPosition <= 0)
      return emitError() << "llama3 rope scaling needs low_freq_factor, "
                            "high_freq_factor and original_max_position";
    if (lowFreqFactor.getValueAsDouble() >= highFreqFactor.getValueAsDouble())
      return emitError() << "llama3 rope scaling needs low_freq_factor < "
                            "high_freq_factor";
    if (hasYarnParams)
      return emitError() << "llama3 rope scaling does not take yarn parameters";
    break;
  case RopeScaling::yarn:
    if (originalMaxPosition <= 0)
      return emitError() << "yarn rope scaling needs original_max_position";
    if (hasLlama3Params)
      return emitError() << "yarn rope scaling does not take llama3 parameters";
    break;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// QuantSchemeAttr
//===----------------------------------------------------------------------===//

LogicalResult
QuantSchemeAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                        QuantKind kind, ArrayRef<int64_t> block, int64_t axis,
                        int64_t group, bool zeroPoint, GGUFBlockType format,
                        Type scale) {
  StringRef name = stringifyQuantKind(kind);
  if (scale && !isa<FloatType>(scale))
    return emitError() << "quantization scale type must be a float type";
  if (zeroPoint && kind != QuantKind::group)
    return emitError() << "zero_point is only supported for group quantization";
  if (!block.empty() && kind != QuantKind::block)
    return emitError() << "'" << name << "' quantization takes no block shape";
  if (axis != -1 && kind != QuantKind::per_channel)
    return emitError() << "'" << name << "' quantization takes no axis";
  if (group != 0 && kind != QuantKind::group)
    return emitError() << "'" << name << "' quantization takes no group size";
  if (format != GGUFBlockType::none && kind != QuantKind::gguf)
    return emitError() << "'" << name << "' quantization takes no GGUF format";
  switch (kind) {
  case QuantKind::per_tensor:
    break;
  case QuantKind::per_channel:
    if (axis < 0)
      return emitError() << "per_channel quantization needs axis >= 0";
    break;
  case QuantKind::block:
    if (block.empty() || llvm::any_of(block, [](int64_t b) { return b <= 0; }))
      return emitError() << "block quantization needs positive block sizes";
    break;
  case QuantKind::group:
    if (group <= 0)
      return emitError() << "group quantization needs a positive group size";
    break;
  case QuantKind::gguf:
    if (format == GGUFBlockType::none)
      return emitError() << "gguf quantization needs a format";
    if (scale)
      return emitError() << "gguf formats embed their scales; no scale type";
    break;
  }
  return success();
}

Type QuantSchemeAttr::getScaleElementType() const {
  if (Type scale = getScale())
    return scale;
  return Float32Type::get(getContext());
}

int64_t QuantSchemeAttr::getGGUFBlockElements(GGUFBlockType format) {
  switch (format) {
  case GGUFBlockType::q8_0:
  case GGUFBlockType::q4_0:
  case GGUFBlockType::q4_1:
  case GGUFBlockType::q5_0:
  case GGUFBlockType::q5_1:
    return 32;
  case GGUFBlockType::q4_k:
  case GGUFBlockType::q5_k:
  case GGUFBlockType::q6_k:
    return 256;
  case GGUFBlockType::none:
    return 0;
  }
  return 0;
}

unsigned QuantSchemeAttr::getGGUFBits(GGUFBlockType format) {
  switch (format) {
  case GGUFBlockType::q8_0:
    return 8;
  case GGUFBlockType::q6_k:
    return 6;
  case GGUFBlockType::q5_0:
  case GGUFBlockType::q5_1:
  case GGUFBlockType::q5_k:
    return 5;
  default:
    return 4;
  }
}

int64_t QuantSchemeAttr::getGGUFBlockBytes(GGUFBlockType format) {
  // Layouts of llama.cpp's ggml-common.h: block_q8_0 {f16 d; i8 qs[32]},
  // block_q4_0 {f16 d; u8 qs[16]}, block_q4_K {f16 d, dmin; u8 scales[12];
  // u8 qs[128]}, block_q6_K {u8 ql[128], qh[64]; i8 scales[16]; f16 d};
  // block_q4_1 {f16 d, m; u8 qs[16]}, block_q5_0 {f16 d; u8 qh[4]; u8
  // qs[16]}, block_q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]}, block_q5_K {f16 d,
  // dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}.
  switch (format) {
  case GGUFBlockType::q8_0:
    return 2 + 32;
  case GGUFBlockType::q4_0:
    return 2 + 16;
  case GGUFBlockType::q4_1:
    return 2 + 2 + 16;
  case GGUFBlockType::q5_0:
    return 2 + 4 + 16;
  case GGUFBlockType::q5_1:
    return 2 + 2 + 4 + 16;
  case GGUFBlockType::q4_k:
    return 2 + 2 + 12 + 128;
  case GGUFBlockType::q5_k:
    return 2 + 2 + 12 + 32 + 128;
  case GGUFBlockType::q6_k:
    return 128 + 64 + 16 + 2;
  case GGUFBlockType::none:
    return 0;
  }
  return 0;
}

//===----------------------------------------------------------------------===//
// QTensorType
//===----------------------------------------------------------------------===//

static unsigned getStorageBits(Type storage) {
  if (auto intType = dyn_cast<IntegerType>(storage))
    return intType.getWidth();
  if (isa<Float8E4M3FNType, Float8E5M2Type>(storage))
    return 8;
  return 0;
}

Type QTensorType::parse(AsmParser &parser) {
  SmallVector<int64_t> shape;
  Type storage;
  QuantSchemeAttr scheme;
  SMLoc loc = parser.getCurrentLocation();
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/false,
                                /*withTrailingX=*/true) ||
      parser.parseType(storage) || parser.parseComma() ||
      parser.parseAttribute(scheme) || parser.parseGreater())
    return {};
  return getChecked([&] { return parser.emitError(loc); },
                    parser.getContext(), shape, storage, scheme);
}

void QTensorType::print(AsmPrinter &printer) const {
  printer << "<";
  for (int64_t dim : getShape())
    printer << dim << "x";
  printer << getStorageType() << ", " << getScheme() << ">";
}

LogicalResult QTensorType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  ArrayRef<int64_t> shape, Type storage,
                                  QuantSchemeAttr scheme) {
  if (shape.empty())
    return emitError() << "quantized tensor must have rank >= 1";
  if (llvm::any_of(shape, [](int64_t d) { return d <= 0; }))
    return emitError() << "quantized tensor dimensions must be static and positive";
  bool isFloat8 = isa<Float8E4M3FNType, Float8E5M2Type>(storage);
  auto intType = dyn_cast<IntegerType>(storage);
  if (!isFloat8 && !(intType && intType.isSignless() &&
                     llvm::is_contained({4u, 5u, 6u, 8u}, intType.getWidth())))
    return emitError() << "quantized storage type must be f8E4M3FN, f8E5M2, "
                          "i8, i6, i5 or i4, got "
                       << storage;
  int64_t rank = shape.size();
  switch (scheme.getKind()) {
  case QuantKind::per_tensor:
  case QuantKind::per_channel:
  case QuantKind::block:
    if (intType && intType.getWidth() != 8)
      return emitError() << "'" << stringifyQuantKind(scheme.getKind())
                         << "' quantization needs 8-bit storage, got " << storage;
    if (scheme.getKind() == QuantKind::per_channel && scheme.getAxis() >= rank)
      return emitError() << "per_channel axis " << scheme.getAxis()
                         << " out of range for rank " << rank;
    if (scheme.getKind() == QuantKind::block &&
        static_cast<int64_t>(scheme.getBlock().size()) != rank)
      return emitError() << "block quantization needs one block size per "
                            "dimension: got "
                         << scheme.getBlock().size() << " for rank " << rank;
    break;
  case QuantKind::group:
    if (!intType || (intType.getWidth() != 4 && intType.getWidth() != 8))
      return emitError() << "group quantization needs i4 or i8 storage, got "
                         << storage;
    if (shape.back() % scheme.getGroup() != 0)
      return emitError() << "innermost dimension " << shape.back()
                         << " is not a multiple of the group size "
                         << scheme.getGroup();
    break;
  case QuantKind::gguf: {
    GGUFBlockType format = scheme.getFormat();
    unsigned bits = QuantSchemeAttr::getGGUFBits(format);
    if (!intType || intType.getWidth() != bits)
      return emitError() << "GGUF format " << stringifyGGUFBlockType(format)
                         << " stores i" << bits << " values, got " << storage;
    int64_t blockElems = QuantSchemeAttr::getGGUFBlockElements(format);
    if (shape.back() % blockElems != 0)
      return emitError() << "innermost dimension " << shape.back()
                         << " is not a multiple of the "
                         << stringifyGGUFBlockType(format) << " block size "
                         << blockElems;
    break;
  }
  }
  return success();
}

int64_t QTensorType::getNumElements() const {
  int64_t n = 1;
  for (int64_t d : getShape())
    n *= d;
  return n;
}

std::optional<SmallVector<int64_t>> QTensorType::getScaleShape() const {
  QuantSchemeAttr scheme = getScheme();
  ArrayRef<int64_t> shape = getShape();
  switch (scheme.getKind()) {
  case QuantKind::per_tensor:
    return SmallVector<int64_t>{};
  case QuantKind::per_channel:
    return SmallVector<int64_t>{shape[scheme.getAxis()]};
  case QuantKind::block: {
    SmallVector<int64_t> result;
    for (auto [dim, block] : llvm::zip_equal(shape, scheme.getBlock()))
      result.push_back(llvm::divideCeil(dim, block));
    return result;
  }
  case QuantKind::group: {
    SmallVector<int64_t> result(shape);
    result.back() /= scheme.getGroup();
    return result;
  }
  case QuantKind::gguf:
    return std::nullopt;
  }
  return std::nullopt;
}

int64_t QTensorType::getStorageBytes() const {
  QuantSchemeAttr scheme = getScheme();
  if (scheme.getKind() == QuantKind::gguf) {
    GGUFBlockType format = scheme.getFormat();
    return getNumElements() / QuantSchemeAttr::getGGUFBlockElements(format) *
           QuantSchemeAttr::getGGUFBlockBytes(format);
  }
  // Sub-byte values are packed; each row starts on a byte boundary.
  int64_t rowElems = getShape().back();
  int64_t rows = getNumElements() / rowElems;
  return rows * llvm::divideCeil(rowElems * getStorageBits(getStorageType()), 8);
}

std::optional<QTensorType::PackedLayout> QTensorType::getPackedLayout() const {
  QuantSchemeAttr scheme = getScheme();
  int64_t cols = getShape().back();
  auto fits = [&](PackedLayout layout) -> std::optional<PackedLayout> {
    if (layout.group <= 0 || cols % layout.group != 0 ||
        (layout.storage == "u4" && layout.group != 32) ||
        (layout.superblocks && (cols % 256 != 0 || 256 % layout.group != 0)))
      return std::nullopt;
    return layout;
  };
  switch (scheme.getKind()) {
  case QuantKind::gguf:
    switch (scheme.getFormat()) {
    case GGUFBlockType::q4_0:
    case GGUFBlockType::q4_1:
      return fits({"u4", 32, "", /*halfScales=*/true});
    // K-quants keep their two-level scales (superblocks).
    case GGUFBlockType::q4_k:
      return fits({"u4", 32, "q4_k", /*halfScales=*/false, /*offsets=*/true,
                   /*superblocks=*/true});
    case GGUFBlockType::q5_0:
    case GGUFBlockType::q5_1:
      return fits({"i8", 32, "", /*halfScales=*/true});
    case GGUFBlockType::q5_k:
      return fits({"i8", 32, "", /*halfScales=*/false, /*offsets=*/true, /*superblocks=*/true});
    case GGUFBlockType::q6_k:
      return fits({"i8", 16, "q6_k", /*halfScales=*/false, /*offsets=*/false,
                   /*superblocks=*/true});
    case GGUFBlockType::q8_0:
      return fits({"i8", 32, "q8_0", /*halfScales=*/true, /*offsets=*/false});
    case GGUFBlockType::none:
      return std::nullopt;
    }
    return std::nullopt;
  case QuantKind::group:
    if (getStorageType().isInteger(4) && scheme.getGroup() % 32 == 0)
      return fits({"u4", 32, "int4"});
    if (getStorageType().isInteger(8))
      return fits({"i8", scheme.getGroup(), ""});
    return std::nullopt;
  case QuantKind::per_channel:
    if (scheme.getAxis() != getRank() - 2)
      return std::nullopt;
    if (getStorageType().isInteger(8))
      return fits({"i8", cols, "", /*halfScales=*/false, /*offsets=*/false});
    if (isa<Float8E4M3FNType>(getStorageType()))
      return fits({"f8e4m3", cols, "fp8", /*halfScales=*/false, /*offsets=*/false});
    return std::nullopt;
  case QuantKind::block: {
    ArrayRef<int64_t> block = scheme.getBlock();
    if (!isa<Float8E4M3FNType>(getStorageType()) || block.empty())
      return std::nullopt;
    return fits({"f8e4m3", std::gcd(block.back(), cols), "", /*halfScales=*/false,
                 /*offsets=*/false});
  }
  case QuantKind::per_tensor:
    return std::nullopt;
  }
  return std::nullopt;
}

RankedTensorType QTensorType::getDequantizedType(Type elementType) const {
  return RankedTensorType::get(getShape(), elementType);
}
