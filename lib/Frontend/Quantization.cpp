//===- Quantization.cpp - quantized weights, decoded and packed ------------===//
//
// Every source format is read as a sequence of rows; a row decodes to one
// code per element and one (scale, offset) per natural group of the source
// (32 for GGUF's 32-blocks and K-quant sub-blocks, 16 for Q6_K, the AWQ/GPTQ
// group size, the row for per-channel scales). The packer asks for rows one
// at a time, so memory stays in proportion to a row, and writes them in the
// requested packed form, whose group must divide the natural one (a scale
// pair is then repeated for each requested group it covers).
//
// The math of each GGUF type follows llama.cpp's dequantize_row_* (checked
// against gguf-py's dequantizers by test/unit/QuantizationTest.cpp).
//
//===----------------------------------------------------------------------===//

#include "moir/Frontend/Quantization.h"
#include "moir/Frontend/FloatBits.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/Endian.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>
#include <vector>

using namespace llvm;

namespace moir::frontend {

//===----------------------------------------------------------------------===//
// Format strings
//===----------------------------------------------------------------------===//

std::optional<CompileQuant> parseCompileQuant(StringRef text) {
  return StringSwitch<std::optional<CompileQuant>>(text)
      .Case("none", CompileQuant::None)
      .Case("q8_0", CompileQuant::Q8_0)
      .Case("q4_k", CompileQuant::Q4_K)
      .Case("q6_k", CompileQuant::Q6_K)
      .Case("int4", CompileQuant::Int4)
      .Case("fp8", CompileQuant::FP8)
      .Default(std::nullopt);
}

StringRef stringifyCompileQuant(CompileQuant quant) {
  switch (quant) {
  case CompileQuant::None: return "none";
  case CompileQuant::Q8_0: return "q8_0";
  case CompileQuant::Q4_K: return "q4_k";
  case CompileQuant::Q6_K: return "q6_k";
  case CompileQuant::Int4: return "int4";
  case CompileQuant::FP8: return "fp8";
  }
  return "?";
}

static StringRef stringifyStorage(PackedStorage storage) {
  switch (storage) {
  case PackedStorage::U4: return "u4";
  case PackedStorage::I8: return "i8";
  case PackedStorage::F8E4M3: return "f8e4m3";
  }
  return "?";
}

std::string stringifyPackedFormat(PackedFormat format) {
  std::string text = (stringifyStorage(format.storage) + ":" + Twine(format.group)).str();
  if (format.quantize != CompileQuant::None)
    text += (":" + stringifyCompileQuant(format.quantize)).str();
  if (format.halfScales)
    text += ":f16";
  if (!format.offsets)
    text += ":sym";
  if (format.superblocks)
    text += ":k";
  return text;
}

std::optional<PackedFormat> parsePackedFormat(StringRef text) {
  SmallVector<StringRef, 6> parts;
  text.split(parts, ':');
  if (parts.size() < 2 || parts.size() > 6)
    return std::nullopt;
  PackedFormat format;
  std::optional<PackedStorage> storage = StringSwitch<std::optional<PackedStorage>>(parts[0])
                                             .Case("u4", PackedStorage::U4)
                                             .Case("i8", PackedStorage::I8)
                                             .Case("f8e4m3", PackedStorage::F8E4M3)
                                             .Default(std::nullopt);
  if (!storage || parts[1].getAsInteger(10, format.group) || format.group <= 0)
    return std::nullopt;
  format.storage = *storage;
  // [:quantize][:f16][:sym][:k], in that order, each at most once.
  size_t i = 2;
  if (i < parts.size() && parts[i] != "f16" && parts[i] != "sym" && parts[i] != "k") {
    std::optional<CompileQuant> quant = parseCompileQuant(parts[i++]);
    if (!quant || *quant == CompileQuant::None)
      return std::nullopt;
    format.quantize = *quant;
  }
  if (i < parts.size() && parts[i] == "f16") {
    format.halfScales = true;
    ++i;
  }
  if (i < parts.size() && parts[i] == "sym") {
    format.offsets = false;
    ++i;
  }
  if (i < parts.size() && parts[i] == "k") {
    format.superblocks = true;
    ++i;
  }
  // Superblock forms keep their f16 numbers per superblock, not per group.
  if (i != parts.size() || (format.superblocks && format.halfScales))
    return std::nullopt;
  return format;
}

int64_t getPackedRowBytes(PackedFormat format, int64_t cols) {
  return format.storage == PackedStorage::U4 ? cols / 2 : cols;
}

bool isValidPackedShape(PackedFormat format, int64_t cols) {
  if (format.group <= 0 || cols <= 0 || cols % format.group != 0)
    return false;
  if (format.superblocks && (format.halfScales || cols % PackedFormat::kSuperblock != 0 ||
                             PackedFormat::kSuperblock % format.group != 0))
    return false;
  return format.storage != PackedStorage::U4 || format.group == 32;
}

uint64_t getPackedBytes(PackedFormat format, PackedPart part, int64_t rows, int64_t cols) {
  if (part == PackedPart::Data)
    return static_cast<uint64_t>(rows) * getPackedRowBytes(format, cols);
  return static_cast<uint64_t>(rows) * format.getScaleRowBytes(cols);
}

namespace {

//===----------------------------------------------------------------------===//
// Little-endian reads from mapped bytes (no alignment assumed)
//===----------------------------------------------------------------------===//

uint16_t readU16(const uint8_t *p) {
  return support::endian::read<uint16_t, endianness::little>(p);
}
uint32_t readU32(const uint8_t *p) {
  return support::endian::read<uint32_t, endianness::little>(p);
}
float readF16(const uint8_t *p) { return fromF16(readU16(p)); }

} // namespace

std::pair<float, float> readPackedParams(PackedFormat format, const uint8_t *rowScales,
                                         int64_t g) {
  float params[2] = {0, 0};
  int64_t parts = format.scaleParts();
  if (format.superblocks) {
    int64_t perBlock = PackedFormat::kSuperblock / format.group;
    const uint8_t *block = rowScales + g / perBlock * format.superblockBytes();
    for (int64_t p = 0; p < parts; ++p)
      params[p] = readF16(block + 2 * p) *
                  static_cast<float>(static_cast<int8_t>(block[2 * parts + p * perBlock + g % perBlock]));
    return {params[0], params[1]};
  }
  const uint8_t *p = rowScales + g * parts * format.scaleBytes();
  for (int i = 0; i < parts; ++i)
    params[i] = format.halfScales ? readF16(p + 2 * i) : bit_cast<float>(readU32(p + 4 * i));
  return {params[0], params[1]};
}

namespace {

/// Element `i` of a float tensor (F32, F16 or BF16) as f32.
float readFloat(DType dtype, const uint8_t *data, int64_t i) {
  switch (dtype) {
  case DType::F32: return bit_cast<float>(readU32(data + 4 * i));
  case DType::F16: return fromF16(readU16(data + 2 * i));
  case DType::BF16: return fromBF16(readU16(data + 2 * i));
  default: return 0;
  }
}

bool isFloat(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

void writeU16(uint8_t *p, uint16_t v) {
  support::endian::write<uint16_t, endianness::little>(p, v);
}

//===----------------------------------------------------------------------===//
// GGUF blocks: one block to codes and per-group (scale, offset)
//===----------------------------------------------------------------------===//

/// Elements of one natural group of a GGUF type.
int64_t ggufGroup(DType dtype) { return dtype == DType::Q6_K ? 16 : 32; }

/// Inclusive code range of a GGUF type (what the packed storage must hold).
std::pair<int, int> ggufCodeRange(DType dtype) {
  switch (dtype) {
  case DType::Q8_0: return {-128, 127};
  case DType::Q5_0: case DType::Q5_1: case DType::Q5_K: return {0, 31};
  case DType::Q6_K: return {-32, 31};
  default: return {0, 15};
  }
}

/// llama.cpp's get_scale_min_k4: the j-th 6-bit scale and min of a K-quant
/// block's 12 packed bytes.
void scaleMinK4(int j, const uint8_t *q, int &scale, int &min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

/// Decodes one block of `dtype` into getBlockElements(dtype) codes (in
/// element order) and one (scale, offset) pair per natural group.
void decodeGGUFBlock(DType dtype, const uint8_t *block, int16_t *codes, float *params) {
  switch (dtype) {
  case DType::Q8_0: {
    params[0] = readF16(block);
    params[1] = 0;
    for (int i = 0; i < 32; ++i)
      codes[i] = static_cast<int8_t>(block[2 + i]);
    return;
  }
  case DType::Q4_0:
  case DType::Q4_1: {
    float d = readF16(block);
    bool hasMin = dtype == DType::Q4_1;
    params[0] = d;
    params[1] = hasMin ? readF16(block + 2) : -8 * d;
    const uint8_t *qs = block + (hasMin ? 4 : 2);
    for (int j = 0; j < 16; ++j) {
      codes[j] = qs[j] & 0xF;
      codes[j + 16] = qs[j] >> 4;
    }
    return;
  }
  case DType::Q5_0:
  case DType::Q5_1: {
    float d = readF16(block);
    bool hasMin = dtype == DType::Q5_1;
    params[0] = d;
    params[1] = hasMin ? readF16(block + 2) : -16 * d;
    const uint8_t *rest = block + (hasMin ? 4 : 2);
    uint32_t qh = readU32(rest);
    const uint8_t *qs = rest + 4;
    for (int j = 0; j < 16; ++j) {
      codes[j] = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      codes[j + 16] = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    }
    return;
  }
  case DType::Q4_K:
  case DType::Q5_K: {
    // Sub-block s (elements 32s..32s+31) reads the low (s even) or high
    // nibbles of qs[32 (s/2) ...]; Q5_K's fifth bit is bit s of qh[k].
    float d = readF16(block), dmin = readF16(block + 2);
    const uint8_t *scales = block + 4;
    bool five = dtype == DType::Q5_K;
    const uint8_t *qh = block + 16;
    const uint8_t *qs = block + (five ? 48 : 16);
    for (int s = 0; s < 8; ++s) {
      int scale, min;
      scaleMinK4(s, scales, scale, min);
      params[2 * s] = d * scale;
      params[2 * s + 1] = -(dmin * min);
      const uint8_t *q = qs + 32 * (s / 2);
      int shift = (s % 2) * 4;
      for (int k = 0; k < 32; ++k) {
        int code = (q[k] >> shift) & 0xF;
        if (five)
          code |= ((qh[k] >> s) & 1) << 4;
        codes[32 * s + k] = static_cast<int16_t>(code);
      }
    }
    return;
  }
  case DType::Q6_K: {
    // Halves of 128: ql[64h..], qh[32h..]; element 128h + 32k + l takes
    // nibble k/2 of ql[64h + 32(k%2) + l] and bits 2k of qh[32h + l].
    const uint8_t *ql = block, *qh = block + 128;
    const int8_t *scales = reinterpret_cast<const int8_t *>(block + 192);
    float d = readF16(block + 208);
    for (int g = 0; g < 16; ++g) {
      params[2 * g] = d * scales[g];
      params[2 * g + 1] = 0;
    }
    for (int h = 0; h < 2; ++h)
      for (int k = 0; k < 4; ++k)
        for (int l = 0; l < 32; ++l) {
          int low = (ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0xF;
          int high = (qh[32 * h + l] >> (2 * k)) & 3;
          codes[128 * h + 32 * k + l] = static_cast<int16_t>((low | (high << 4)) - 32);
        }
    return;
  }
  default:
    return;
  }
}

//===----------------------------------------------------------------------===//
// Compile-time quantizers: one row of floats to llama.cpp block bytes
//===----------------------------------------------------------------------===//

float roundF16(float value) { return fromF16(toF16(value)); }

// Each quantizer returns false when the block's scales overflow f16 (values
// beyond about 8e6 for Q8_0): the block cannot be stored.

/// llama.cpp's quantize_row_q8_0_ref, except that a block whose d rounds
/// to f16 zero gets zero codes (1 / d could overflow) and codes are clamped.
bool quantizeQ8_0(const float *x, uint8_t *block) {
  float amax = 0;
  for (int i = 0; i < 32; ++i)
    amax = std::max(amax, std::fabs(x[i]));
  float d = amax / 127, stored = roundF16(d);
  if (!std::isfinite(stored))
    return false;
  float id = stored != 0 ? 1 / d : 0;
  writeU16(block, toF16(d));
  for (int i = 0; i < 32; ++i)
    block[2 + i] = static_cast<uint8_t>(
        static_cast<int8_t>(std::clamp(std::round(x[i] * id), -127.0f, 127.0f)));
  return true;
}

/// Q4_K: per sub-block of 32 the range [min(0, min x), max x] in 15 steps;
/// the 6-bit scales and mins quantize each sub-block's step and -min against
/// the block's largest (d = max step / 63, dmin = max -min / 63).
bool quantizeQ4_K(const float *x, uint8_t *block) {
  float step[8], negMin[8], maxStep = 0, maxNegMin = 0;
  for (int s = 0; s < 8; ++s) {
    float lo = 0, hi = x[32 * s];
    for (int k = 0; k < 32; ++k) {
      lo = std::min(lo, x[32 * s + k]);
      hi = std::max(hi, x[32 * s + k]);
    }
    step[s] = (hi - lo) / 15;
    negMin[s] = -lo;
    maxStep = std::max(maxStep, step[s]);
    maxNegMin = std::max(maxNegMin, negMin[s]);
  }
  float d = roundF16(maxStep / 63), dmin = roundF16(maxNegMin / 63);
  if (!std::isfinite(d) || !std::isfinite(dmin))
    return false;
  writeU16(block, toF16(d));
  writeU16(block + 2, toF16(dmin));
  uint8_t sc[8], mn[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = d > 0 ? static_cast<uint8_t>(std::clamp(std::round(step[s] / d), 0.0f, 63.0f)) : 0;
    mn[s] = dmin > 0
                ? static_cast<uint8_t>(std::clamp(std::round(negMin[s] / dmin), 0.0f, 63.0f))
                : 0;
  }
  uint8_t *scales = block + 4;
  for (int j = 0; j < 4; ++j) {
    scales[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
    scales[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
    scales[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4);
  }
  uint8_t *qs = block + 16;
  for (int s = 0; s < 8; ++s) {
    float scale = d * sc[s], offset = dmin * mn[s];
    for (int k = 0; k < 32; ++k) {
      float q = scale > 0 ? std::round((x[32 * s + k] + offset) / scale) : 0;
      uint8_t code = static_cast<uint8_t>(std::clamp(q, 0.0f, 15.0f));
      uint8_t &byte = qs[32 * (s / 2) + k];
      byte = s % 2 ? (byte & 0x0F) | (code << 4) : code;
    }
  }
  return true;
}

/// Q6_K: per sub-block of 16 a signed step mapping its largest magnitude to
/// -32; the int8 scales quantize the steps against d = max |step| / 127.
bool quantizeQ6_K(const float *x, uint8_t *block) {
  float step[16], maxStep = 0;
  for (int g = 0; g < 16; ++g) {
    float extreme = 0;
    for (int k = 0; k < 16; ++k)
      if (std::fabs(x[16 * g + k]) > std::fabs(extreme))
        extreme = x[16 * g + k];
    step[g] = extreme / -32;
    maxStep = std::max(maxStep, std::fabs(step[g]));
  }
  float d = roundF16(maxStep / 127);
  if (!std::isfinite(d))
    return false;
  int8_t *scales = reinterpret_cast<int8_t *>(block + 192);
  uint8_t q[256];
  for (int g = 0; g < 16; ++g) {
    float sc = d > 0 ? std::clamp(std::round(step[g] / d), -128.0f, 127.0f) : 0;
    scales[g] = static_cast<int8_t>(sc);
    float scale = d * sc;
    for (int k = 0; k < 16; ++k) {
      float v = scale != 0 ? std::round(x[16 * g + k] / scale) : 0;
      q[16 * g + k] = static_cast<uint8_t>(std::clamp(v, -32.0f, 31.0f) + 32);
    }
  }
  uint8_t *ql = block, *qh = block + 128;
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t *y = q + 128 * h + l;
      ql[64 * h + l] = (y[0] & 0xF) | ((y[64] & 0xF) << 4);
      ql[64 * h + 32 + l] = (y[32] & 0xF) | ((y[96] & 0xF) << 4);
      qh[32 * h + l] = (y[0] >> 4) | ((y[32] >> 4) << 2) | ((y[64] >> 4) << 4) |
                       ((y[96] >> 4) << 6);
    }
  writeU16(block + 208, toF16(d));
  return true;
}

//===----------------------------------------------------------------------===//
// Row sources
//===----------------------------------------------------------------------===//

/// One tensor (or a tensor with its companions) as rows of codes and
/// per-group (scale, offset).
class RowSource {
public:
  virtual ~RowSource() = default;
  /// Writes `cols` codes and 2 * cols / group params for row `r`.
  virtual Error row(int64_t r, int16_t *codes, float *params) = 0;

  int64_t rows = 0;
  /// The natural group along a row.
  int64_t group = 0;
  /// Codes are FP8 E4M3FN bytes (0..255) rather than integers.
  bool fp8 = false;
  int codeMin = 0, codeMax = 0;
  /// False while packing scales: a source may then skip its codes (AWQ's
  /// strided reads are most of its cost).
  bool wantCodes = true;
  /// Whether superblockScales gives the row's K-quant scales.
  bool hasSuperblocks = false;

  /// The superblock scales of the row row() read last: per superblock of
  /// 256, the f16 bits of d and of -dmin (`numbers`, two each; -dmin 0 when
  /// symmetric) and the group's signed bytes of each (`bytes`, 2 * 256 /
  /// group each: the scales, then the mins).
  virtual void superblockScales(uint16_t *numbers, int8_t *bytes) {}
};

using ErrorFn = std::function<Error(const Twine &)>;

/// A stored GGUF block type, or a float tensor quantized to one first.
class GGUFSource : public RowSource {
public:
  GGUFSource(DType blockType, const uint8_t *data, DType sourceType, int64_t cols,
             ErrorFn error)
      : blockType(blockType), data(data), sourceType(sourceType), cols(cols),
        error(std::move(error)) {
    group = ggufGroup(blockType);
    std::tie(codeMin, codeMax) = ggufCodeRange(blockType);
    hasSuperblocks =
        blockType == DType::Q4_K || blockType == DType::Q5_K || blockType == DType::Q6_K;
    blockElems = getBlockElements(blockType);
    rowBytes = cols / blockElems * getBlockBytes(blockType);
    if (isFloat(sourceType)) {
      floats.resize(cols);
      blocks.resize(rowBytes);
    }
  }

  Error row(int64_t r, int16_t *codes, float *params) override {
    const uint8_t *bytes = data + r * rowBytes;
    if (isFloat(sourceType)) {
      for (int64_t c = 0; c < cols; ++c) {
        floats[c] = readFloat(sourceType, data, r * cols + c);
        if (!std::isfinite(floats[c]))
          return error("element [" + Twine(r) + ", " + Twine(c) + "] is " +
                       (std::isnan(floats[c]) ? "NaN" : "infinite") +
                       " and cannot be quantized");
      }
      for (int64_t b = 0; b < cols / blockElems; ++b) {
        const float *x = floats.data() + b * blockElems;
        uint8_t *block = blocks.data() + b * getBlockBytes(blockType);
        bool stored = blockType == DType::Q8_0   ? quantizeQ8_0(x, block)
                      : blockType == DType::Q4_K ? quantizeQ4_K(x, block)
                                                 : quantizeQ6_K(x, block);
        if (!stored)
          return error("row " + Twine(r) + " has values too large for " +
                       stringifyDType(blockType) + "'s f16 scales (block " + Twine(b) + ")");
      }
      bytes = blocks.data();
    }
    last = bytes;
    int64_t groupsPerBlock = blockElems / group;
    for (int64_t b = 0; b < cols / blockElems; ++b)
      decodeGGUFBlock(blockType, bytes + b * getBlockBytes(blockType),
                      codes + b * blockElems, params + 2 * b * groupsPerBlock);
    return Error::success();
  }

  void superblockScales(uint16_t *numbers, int8_t *bytes) override {
    int64_t groups = blockElems / group;
    for (int64_t b = 0; b < cols / blockElems; ++b) {
      const uint8_t *block = last + b * getBlockBytes(blockType);
      uint16_t *n = numbers + 2 * b;
      int8_t *sc = bytes + 2 * groups * b, *mn = sc + groups;
      if (blockType == DType::Q6_K) {
        n[0] = readU16(block + 208);
        n[1] = 0;
        for (int64_t g = 0; g < groups; ++g) {
          sc[g] = static_cast<int8_t>(block[192 + g]);
          mn[g] = 0;
        }
        continue;
      }
      // Q4_K / Q5_K: d, dmin (negated: the offset is -dmin * min), then
      // the 6-bit scales and mins.
      n[0] = readU16(block);
      n[1] = readU16(block + 2) ^ 0x8000;
      for (int64_t g = 0; g < groups; ++g) {
        int scale, min;
        scaleMinK4(static_cast<int>(g), block + 4, scale, min);
        sc[g] = static_cast<int8_t>(scale);
        mn[g] = static_cast<int8_t>(min);
      }
    }
  }

private:
  DType blockType;
  const uint8_t *data;
  DType sourceType;
  int64_t cols, blockElems, rowBytes;
  ErrorFn error;
  std::vector<float> floats;
  std::vector<uint8_t> blocks;
  /// The blocks of the row read last.
  const uint8_t *last = nullptr;
};

/// Float rows quantized to asymmetric int4 per 32 or to FP8 per row.
class FloatSource : public RowSource {
public:
  FloatSource(CompileQuant quant, const uint8_t *data, DType dtype, int64_t cols, ErrorFn error)
      : data(data), dtype(dtype), cols(cols), error(std::move(error)), floats(cols) {
    fp8 = quant == CompileQuant::FP8;
    group = fp8 ? cols : 32;
    codeMin = 0;
    codeMax = fp8 ? 255 : 15;
  }

  Error row(int64_t r, int16_t *codes, float *params) override {
    for (int64_t c = 0; c < cols; ++c) {
      floats[c] = readFloat(dtype, data, r * cols + c);
      if (!std::isfinite(floats[c]))
        return error("element [" + Twine(r) + ", " + Twine(c) + "] is " +
                     (std::isnan(floats[c]) ? "NaN" : "infinite") +
                     " and cannot be quantized");
    }
    if (fp8) {
      float amax = 0;
      for (float x : floats)
        amax = std::max(amax, std::fabs(x));
      float scale = amax / 448;
      for (int64_t c = 0; c < cols; ++c)
        codes[c] = toFP8E4M3(scale > 0 ? floats[c] / scale : 0.0f);
      params[0] = scale;
      params[1] = 0;
      return Error::success();
    }
    for (int64_t g = 0; g < cols / 32; ++g) {
      const float *x = floats.data() + 32 * g;
      float lo = x[0], hi = x[0];
      for (int k = 0; k < 32; ++k) {
        lo = std::min(lo, x[k]);
        hi = std::max(hi, x[k]);
      }
      float scale = (hi - lo) / 15;
      if (!std::isfinite(scale))
        return error("row " + Twine(r) + " spans a range too large for int4 scales (group " +
                     Twine(g) + ")");
      for (int k = 0; k < 32; ++k)
        codes[32 * g + k] = static_cast<int16_t>(
            scale > 0 ? std::clamp(std::round((x[k] - lo) / scale), 0.0f, 15.0f) : 0.0f);
      params[2 * g] = scale;
      params[2 * g + 1] = lo;
    }
    return Error::success();
  }

private:
  const uint8_t *data;
  DType dtype;
  int64_t cols;
  ErrorFn error;
  std::vector<float> floats;
};

/// FP8 or INT8 codes with a separate scale tensor: DeepSeek-V3's 128x128
/// blocks (`block`), or one scale per row (`block` = 0).
class ScaledSource : public RowSource {
public:
  ScaledSource(const uint8_t *data, bool isFP8, int64_t cols, int64_t matrixRows,
               const uint8_t *scales, DType scaleType, int64_t block)
      : data(data), cols(cols), matrixRows(matrixRows), scales(scales),
        scaleType(scaleType), block(block) {
    fp8 = isFP8;
    codeMin = isFP8 ? 0 : -128;
    codeMax = isFP8 ? 255 : 127;
    group = block ? std::gcd(block, cols) : cols;
    rowBlocks = block ? divideCeil(matrixRows, block) : 0;
    colBlocks = block ? divideCeil(cols, block) : 0;
  }

  Error row(int64_t r, int16_t *codes, float *params) override {
    const uint8_t *bytes = data + r * cols;
    for (int64_t c = 0; wantCodes && c < cols; ++c)
      codes[c] = fp8 ? bytes[c] : static_cast<int8_t>(bytes[c]);
    if (!block) {
      params[0] = readFloat(scaleType, scales, r);
      params[1] = 0;
      return Error::success();
    }
    int64_t matrix = r / matrixRows, local = r % matrixRows;
    int64_t base = (matrix * rowBlocks + local / block) * colBlocks;
    for (int64_t g = 0; g < cols / group; ++g) {
      params[2 * g] = readFloat(scaleType, scales, base + g * group / block);
      params[2 * g + 1] = 0;
    }
    return Error::success();
  }

  int64_t rowBlocks, colBlocks;

private:
  const uint8_t *data;
  int64_t cols, matrixRows;
  const uint8_t *scales;
  DType scaleType;
  int64_t block;
};

/// AWQ (GEMM) and GPTQ (v1) 4-bit: int32 words of 8 nibbles, f16 scales and
/// packed zero points per group of `group` inputs.
class Int4Source : public RowSource {
public:
  Int4Source(bool awq, const uint8_t *qweight, const uint8_t *qzeros, const uint8_t *scales,
             DType scaleType, int64_t rows_, int64_t cols, int64_t groupSize)
      : awq(awq), qweight(qweight), qzeros(qzeros), scales(scales), scaleType(scaleType),
        cols(cols) {
    rows = rows_;
    group = groupSize;
    codeMin = 0;
    codeMax = 15;
  }

  Error row(int64_t r, int16_t *codes, float *params) override {
    // AWQ packs outputs 8 to a word in the order 0 2 4 6 1 3 5 7, so output
    // k sits in nibble kAWQNibble[k]; GPTQ packs in order.
    static constexpr int kAWQNibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    int64_t words = rows / 8;
    int outShift = 4 * (awq ? kAWQNibble[r % 8] : r % 8);
    if (wantCodes && awq)
      for (int64_t c = 0; c < cols; ++c)
        codes[c] = (readU32(qweight + 4 * (c * words + r / 8)) >> outShift) & 0xF;
    else if (wantCodes)
      for (int64_t c = 0; c < cols; ++c)
        codes[c] = (readU32(qweight + 4 * ((c / 8) * rows + r)) >> (4 * (c % 8))) & 0xF;
    for (int64_t g = 0; g < cols / group; ++g) {
      float scale = readFloat(scaleType, scales, g * rows + r);
      // GPTQ v1 stores zero - 1.
      int zero = ((readU32(qzeros + 4 * (g * words + r / 8)) >> outShift) & 0xF) + (awq ? 0 : 1);
      params[2 * g] = scale;
      params[2 * g + 1] = -zero * scale;
    }
    return Error::success();
  }

private:
  bool awq;
  const uint8_t *qweight, *qzeros, *scales;
  DType scaleType;
  int64_t cols;
};

/// compressed-tensors' pack-quantized 4- or 8-bit codes: `weight_packed`
/// [rows, cols * bits / 32], input c of row r at bit bits * (c % (32 /
/// bits)) of word c / (32 / bits), stored as its signed value + 2^(bits -
/// 1); `weight_scale` [rows, groups]; `weight_zero_point` (asymmetric)
/// [ceil(rows * bits / 32), groups], packed the same way along the rows.
/// w = scale * (q - zero), q and zero signed. 4-bit codes go out unsigned
/// (q + 8, offset -(zero + 8) * scale, the u4 form), 8-bit ones signed.
class PackedIntSource : public RowSource {
public:
  PackedIntSource(int bits, const uint8_t *packed, const uint8_t *zeros, const uint8_t *scales,
                  DType scaleType, int64_t rows_, int64_t cols, int64_t groupSize)
      : bits(bits), packed(packed), zeros(zeros), scales(scales), scaleType(scaleType),
        cols(cols) {
    rows = rows_;
    group = groupSize;
    codeMin = bits == 4 ? 0 : -128;
    codeMax = bits == 4 ? 15 : 127;
  }

  Error row(int64_t r, int16_t *codes, float *params) override {
    int perWord = 32 / bits, bias = 1 << (bits - 1);
    uint32_t mask = (1u << bits) - 1;
    // The codes' own offset: 4-bit codes stay unsigned.
    int shift = bits == 4 ? 0 : bias;
    int64_t groups = cols / group, words = cols / perWord;
    if (wantCodes)
      for (int64_t c = 0; c < cols; ++c)
        codes[c] = static_cast<int16_t>(
            ((readU32(packed + 4 * (r * words + c / perWord)) >> (bits * (c % perWord))) & mask) -
            shift);
    for (int64_t g = 0; g < groups; ++g) {
      float scale = readFloat(scaleType, scales, r * groups + g);
      int zero = bias;
      if (zeros)
        zero = (readU32(zeros + 4 * ((r / perWord) * groups + g)) >> (bits * (r % perWord))) &
               mask;
      params[2 * g] = scale;
      params[2 * g + 1] = -(zero - shift) * scale;
    }
    return Error::success();
  }

private:
  int bits;
  const uint8_t *packed, *zeros, *scales;
  DType scaleType;
  int64_t cols;
};

//===----------------------------------------------------------------------===//
// The packer
//===----------------------------------------------------------------------===//

std::string shapeText(ArrayRef<int64_t> shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

class Packer {
public:
  Packer(const WeightStore &store, int64_t cols, PackedFormat format, PackedPart part,
         function_ref<void(StringRef)> sink)
      : store(store), cols(cols), format(format), part(part), sink(sink) {}

  Error pack(StringRef name);
  void flush() {
    if (!buffer.empty())
      sink(StringRef(reinterpret_cast<const char *>(buffer.data()), buffer.size()));
    buffer.clear();
  }

private:
  Error tensorError(const TensorInfo &info, const Twine &message) const {
    return fileError(store.getFilePath(info.file), "tensor '" + info.name + "' (" +
                                                       stringifyDType(info.dtype) + ") " +
                                                       message);
  }
  /// The tensor's bytes, after checking they match its shape and lie in its
  /// file (a hand-made TensorInfo must not make the packer read astray).
  Expected<const uint8_t *> dataOf(const TensorInfo &info) const;
  /// A companion `name` of `owner`, checked to exist, be one of `dtypes`
  /// and have `shape` (or, with `elements`, that many elements).
  Expected<const TensorInfo *> companion(const TensorInfo &owner, const std::string &name,
                                         ArrayRef<DType> dtypes, ArrayRef<int64_t> shape,
                                         std::optional<int64_t> elements = std::nullopt) const;
  Expected<std::unique_ptr<RowSource>> open(const TensorInfo &info);
  Error emit(const TensorInfo &info, RowSource &source);
  /// Row `r`'s superblock scales (read after source.row(r)); each group's
  /// product is checked against the source's own (scale, offset).
  Error emitSuperblocks(RowSource &source, ArrayRef<float> params, int64_t r,
                        function_ref<Error(const Twine &)> error);

  const WeightStore &store;
  int64_t cols;
  PackedFormat format;
  PackedPart part;
  function_ref<void(StringRef)> sink;
  std::vector<uint8_t> buffer;
};

Expected<const uint8_t *> Packer::dataOf(const TensorInfo &info) const {
  std::optional<uint64_t> bytes = getStorageBytes(info.dtype, info.getNumElements());
  // A derived tensor's bytes are the store's own, made to its size.
  bool inBounds = info.derived >= 0;
  if (!inBounds) {
    uint64_t fileBytes = store.getFileData(info.file).size();
    inBounds = info.offset <= fileBytes && info.bytes <= fileBytes - info.offset;
  }
  if (!bytes || *bytes != info.bytes || !inBounds)
    return tensorError(info, "of shape " + shapeText(info.shape) +
                                 " does not match its stored bytes");
  return store.getData(info).data();
}

Expected<const TensorInfo *> Packer::companion(const TensorInfo &owner, const std::string &name,
                                               ArrayRef<DType> dtypes, ArrayRef<int64_t> shape,
                                               std::optional<int64_t> elements) const {
  const TensorInfo *info = store.lookup(name);
  std::string expected;
  for (DType dtype : dtypes)
    expected += (expected.empty() ? "" : " or ") + stringifyDType(dtype).str();
  expected += " " + (elements ? "with " + std::to_string(*elements) + " elements"
                              : shapeText(shape));
  if (!info)
    return tensorError(owner, "needs a companion tensor '" + name + "' (" + expected +
                                  "), which the checkpoint does not have");
  bool shapeOk = elements ? info->getNumElements() == *elements
                          : ArrayRef<int64_t>(info->shape) == shape;
  if (!is_contained(dtypes, info->dtype) || !shapeOk)
    return tensorError(owner, "has a companion '" + name + "' of " +
                                  stringifyDType(info->dtype) + " " + shapeText(info->shape) +
                                  "; expected " + expected);
  if (Expected<const uint8_t *> data = dataOf(*info); !data)
    return data.takeError();
  return info;
}

Expected<std::unique_ptr<RowSource>> Packer::open(const TensorInfo &info) {
  ArrayRef<int64_t> shape = info.shape;
  auto error = [this, &info](const Twine &message) { return tensorError(info, message); };
  Expected<const uint8_t *> data = dataOf(info);
  if (!data)
    return data.takeError();
  const DType floatScales[] = {DType::F32, DType::F16, DType::BF16};

  // compressed-tensors' pack-quantized: <module>.weight_packed, 4- or 8-bit
  // (told by its width against the logical columns).
  if (info.dtype == DType::I32 && StringRef(info.name).ends_with(".weight_packed")) {
    std::string base = StringRef(info.name).drop_back(strlen("_packed")).str();
    int bits = shape.size() == 2 && shape[1] * 8 == cols ? 4
               : shape.size() == 2 && shape[1] * 4 == cols ? 8
                                                           : 0;
    if (!bits || shape[0] <= 0 || cols % 32 != 0)
      return error("has shape " + shapeText(shape) + "; pack-quantized codes of " +
                   Twine(cols) + " inputs (a multiple of 32) are [outputs, " + Twine(cols) +
                   " / 8] (4-bit) or [outputs, " + Twine(cols) + " / 4] (8-bit)");
    int64_t rows = shape[0];
    const TensorInfo *scales = store.lookup(base + "_scale");
    if (!scales || scales->shape.size() != 2 || scales->shape[0] != rows ||
        scales->shape[1] <= 0 || cols % scales->shape[1] != 0 ||
        (cols / scales->shape[1]) % 32 != 0)
      return error("needs a companion '" + base + "_scale' of shape [" + Twine(rows) +
                   ", groups] with " + Twine(cols) + " / groups a multiple of 32");
    int64_t groups = scales->shape[1];
    if (Expected<const TensorInfo *> s = companion(info, base + "_scale", floatScales,
                                                   {rows, groups});
        !s)
      return s.takeError();
    const uint8_t *zeros = nullptr;
    if (store.lookup(base + "_zero_point")) {
      Expected<const TensorInfo *> z =
          companion(info, base + "_zero_point", {DType::I32},
                    {static_cast<int64_t>(divideCeil(rows, 32 / bits)), groups});
      if (!z)
        return z.takeError();
      zeros = store.getData(**z).data();
    }
    return std::make_unique<PackedIntSource>(bits, *data, zeros, store.getData(*scales).data(),
                                             scales->dtype, rows, cols, cols / groups);
  }

  // AWQ / GPTQ: <base>.qweight with its companions.
  if (info.dtype == DType::I32) {
    StringRef name = info.name;
    if (!name.consume_back(".qweight") || shape.size() != 2)
      return error("is not a weight: an I32 weight must be a 2-D AWQ or GPTQ "
                   "'<module>.qweight' or a compressed-tensors '<module>.weight_packed'");
    std::string base = name.str();
    const TensorInfo *gIdx = store.lookup(base + ".g_idx");
    // AWQ stores [inputs, outputs / 8], GPTQ [inputs / 8, outputs]; GPTQ
    // alone has g_idx.
    bool awq = !gIdx && shape[0] == cols;
    if (!awq && shape[0] * 8 != cols)
      return error("has shape " + shapeText(shape) + ", which is neither AWQ's [" +
                   Twine(cols) + ", outputs / 8] nor GPTQ's [" + Twine(cols) +
                   " / 8, outputs] for " + Twine(cols) + " inputs");
    int64_t rows = awq ? shape[1] * 8 : shape[1];
    const TensorInfo *scales = store.lookup(base + ".scales");
    if (!scales)
      return error("needs a companion tensor '" + base + ".scales' ([groups, " + Twine(rows) +
                   "]), which the checkpoint does not have");
    if (scales->shape.size() != 2 || scales->shape[0] <= 0 || cols % scales->shape[0] != 0 ||
        (cols / scales->shape[0]) % 32 != 0)
      return error("has a companion '" + base + ".scales' of shape " +
                   shapeText(scales->shape) + "; expected [groups, " + Twine(rows) +
                   "] with " + Twine(cols) + " / groups a multiple of 32");
    int64_t groups = scales->shape[0], groupSize = cols / groups;
    if (rows % 8 != 0)
      return error("has " + Twine(rows) + " outputs, not a multiple of 8");
    if (Expected<const TensorInfo *> s =
            companion(info, base + ".scales", floatScales, {groups, rows});
        !s)
      return s.takeError();
    Expected<const TensorInfo *> zeros =
        companion(info, base + ".qzeros", {DType::I32}, {groups, rows / 8});
    if (!zeros)
      return zeros.takeError();
    if (gIdx) {
      Expected<const TensorInfo *> g = companion(info, base + ".g_idx", {DType::I32}, {cols});
      if (!g)
        return g.takeError();
      const uint8_t *indices = store.getData(**g).data();
      for (int64_t k = 0; k < cols; ++k) {
        int32_t index = static_cast<int32_t>(readU32(indices + 4 * k));
        if (index < 0 || index >= groups)
          return error("has g_idx[" + Twine(k) + "] = " + Twine(index) +
                       ", outside the " + Twine(groups) + " groups of '" + base +
                       ".scales'");
        if (index != k / groupSize)
          return error("has an act-order g_idx (g_idx[" + Twine(k) + "] = " +
                       Twine(index) + ", not " + Twine(k / groupSize) +
                       "): pack its inputs sorted by group (addSortedGPTQ), as the importer "
                       "does");
      }
    }
    return std::make_unique<Int4Source>(awq, *data, store.getData(**zeros).data(),
                                        store.getData(*scales).data(), scales->dtype, rows,
                                        cols, groupSize);
  }

  if (shape.empty() || shape.back() != cols)
    return error("has shape " + shapeText(shape) + ", expected " + Twine(cols) + " columns");
  int64_t rows = info.getNumElements() / cols;

  if (isGGUFBlockType(info.dtype)) {
    auto source = std::make_unique<GGUFSource>(info.dtype, *data, info.dtype, cols, error);
    source->rows = rows;
    return std::move(source);
  }

  if (isFloat(info.dtype)) {
    switch (format.quantize) {
    case CompileQuant::None:
      return error("is a float tensor, but the packed format " +
                   stringifyPackedFormat(format) + " asks for quantized codes and no "
                   "quantization was requested");
    case CompileQuant::Q8_0:
    case CompileQuant::Q4_K:
    case CompileQuant::Q6_K: {
      DType block = format.quantize == CompileQuant::Q8_0   ? DType::Q8_0
                    : format.quantize == CompileQuant::Q4_K ? DType::Q4_K
                                                            : DType::Q6_K;
      if (cols % getBlockElements(block) != 0)
        return error("has " + Twine(cols) + " columns, not a multiple of " +
                     Twine(getBlockElements(block)) + ", and cannot be quantized as " +
                     stringifyDType(block));
      auto source = std::make_unique<GGUFSource>(block, *data, info.dtype, cols, error);
      source->rows = rows;
      return std::move(source);
    }
    case CompileQuant::Int4:
    case CompileQuant::FP8: {
      if (format.quantize == CompileQuant::Int4 && cols % 32 != 0)
        return error("has " + Twine(cols) + " columns, not a multiple of 32, and cannot "
                     "be quantized as int4");
      auto source = std::make_unique<FloatSource>(format.quantize, *data, info.dtype, cols,
                                                  error);
      source->rows = rows;
      return std::move(source);
    }
    }
  }

  if (info.dtype == DType::F8E4M3 || info.dtype == DType::I8) {
    bool isFP8 = info.dtype == DType::F8E4M3;
    int64_t matrixRows = shape.size() >= 2 ? shape[shape.size() - 2] : 1;
    if (isFP8) {
      if (store.lookup(info.name + "_scale_inv")) {
        // DeepSeek-V3: one scale per 128x128 tile, partial tiles included.
        SmallVector<int64_t> scaleShape(shape.drop_back(2));
        scaleShape.push_back(divideCeil(matrixRows, 128));
        scaleShape.push_back(divideCeil(cols, 128));
        if (shape.size() < 2)
          return error("is a vector, but 128x128-block scales need a matrix");
        Expected<const TensorInfo *> scale =
            companion(info, info.name + "_scale_inv", {DType::F32}, scaleShape);
        if (!scale)
          return scale.takeError();
        auto source = std::make_unique<ScaledSource>(*data, true, cols, matrixRows,
                                                     store.getData(**scale).data(),
                                                     DType::F32, 128);
        source->rows = rows;
        return std::move(source);
      }
    }
    // One scale per row: <name>_scale (fbgemm_fp8's weight_scale [rows, 1],
    // INT8's [rows]); of a row view "<name>[rows=a:b]" (tensor parallelism),
    // the same rows of the scales, "<name>_scale[rows=a:b]".
    // compressed-tensors' one scale per tensor (the FP8 preset): the
    // importer's derived per-row copy, "<name>_scale.rows".
    auto rowScales = [&](std::string scale) {
      std::string perRow = perRowScaleName(scale);
      return store.lookup(perRow) ? perRow : scale;
    };
    std::string scaleName = rowScales(info.name + "_scale");
    if (StringRef name = info.name; name.ends_with("]") && name.contains("[rows=")) {
      size_t open = name.rfind("[rows=");
      scaleName = rowScales((name.take_front(open) + "_scale").str()) + name.drop_front(open).str();
    }
    Expected<const TensorInfo *> scale = companion(info, scaleName, floatScales, {}, rows);
    if (!scale)
      return scale.takeError();
    auto source = std::make_unique<ScaledSource>(*data, isFP8, cols, matrixRows,
                                                 store.getData(**scale).data(),
                                                 (*scale)->dtype, 0);
    source->rows = rows;
    return std::move(source);
  }

  return error("is not a weight format the packer reads");
}

Error Packer::emit(const TensorInfo &info, RowSource &source) {
  auto error = [&](const Twine &message) { return tensorError(info, message); };
  std::string requested = stringifyPackedFormat(format);
  if (!isValidPackedShape(format, cols))
    return error("cannot be packed as " + requested + " with " + Twine(cols) +
                 " columns (the group must divide the columns, u4's group is 32, and superblock "
                 "scales need whole superblocks of 256 and no f16 group scales)");
  if (source.group % format.group != 0)
    return error("has groups of " + Twine(source.group) + " elements; the requested group " +
                 Twine(format.group) + " (" + requested + ") must divide it");
  if (source.fp8 != (format.storage == PackedStorage::F8E4M3))
    return error("holds " + Twine(source.fp8 ? "FP8" : "integer") + " codes, which " +
                 requested + " cannot store");
  if (format.storage == PackedStorage::U4 && (source.codeMin < 0 || source.codeMax > 15))
    return error("has codes " + Twine(source.codeMin) + ".." + Twine(source.codeMax) +
                 ", which do not fit u4 (0..15); request i8");
  if (format.superblocks && (!source.hasSuperblocks || source.group != format.group))
    return error("cannot be packed as " + requested +
                 ": superblock scales need a K-quant source (Q4_K, Q5_K, Q6_K) in its own "
                 "groups of " + Twine(source.group));

  std::vector<int16_t> codes(cols);
  std::vector<float> params(2 * (cols / source.group));
  source.wantCodes = part == PackedPart::Data;
  int64_t repeat = source.group / format.group;
  constexpr size_t kFlushBytes = 1 << 20;
  for (int64_t r = 0; r < source.rows; ++r) {
    if (Error err = source.row(r, codes.data(), params.data()))
      return err;
    for (size_t i = 0; i < params.size(); ++i)
      if (!std::isfinite(params[i]))
        return error("has a" + Twine(std::isnan(params[i]) ? " NaN" : "n infinite") +
                     (i % 2 ? " offset" : " scale") + " in row " + Twine(r) + ", group " +
                     Twine(i / 2));
    if (source.fp8 && source.wantCodes)
      for (int64_t c = 0; c < cols; ++c)
        if ((codes[c] & 0x7f) == 0x7f)
          return error("has a NaN element at [" + Twine(r) + ", " + Twine(c) + "]");
    if (part == PackedPart::Scales && format.superblocks) {
      if (Error err = emitSuperblocks(source, params, r, error))
        return err;
    } else if (part == PackedPart::Scales) {
      for (size_t g = 0; g < params.size() / 2; ++g) {
        if (!format.offsets && params[2 * g + 1] != 0)
          return error("has a nonzero offset in row " + Twine(r) + ", group " + Twine(g) +
                       ", which " + requested + " (scales alone) cannot hold");
        uint8_t bytes[8];
        size_t size = 0;
        for (int p = 0; p < format.scaleParts(); ++p) {
          float v = params[2 * g + p];
          if (format.halfScales) {
            uint16_t h = toF16(v);
            if (fromF16(h) != v) {
              char number[32];
              std::snprintf(number, sizeof(number), "%g", v);
              return error("has " + Twine(p ? "an offset" : "a scale") + " (" + number +
                           ") in row " + Twine(r) + ", group " + Twine(g) +
                           " that is not an f16 number, which " + requested +
                           " stores (Q4_0's offset -8d and Q5_0's -16d overflow f16 when d exceeds 8188 or 4094)");
            }
            writeU16(bytes + size, h);
            size += 2;
          } else {
            support::endian::write32le(bytes + size, bit_cast<uint32_t>(v));
            size += 4;
          }
        }
        for (int64_t k = 0; k < repeat; ++k)
          buffer.insert(buffer.end(), bytes, bytes + size);
      }
    } else if (format.storage == PackedStorage::U4) {
      for (int64_t g = 0; g < cols / 32; ++g)
        for (int j = 0; j < 16; ++j)
          buffer.push_back(static_cast<uint8_t>(codes[32 * g + j] |
                                                (codes[32 * g + 16 + j] << 4)));
    } else {
      for (int64_t c = 0; c < cols; ++c)
        buffer.push_back(static_cast<uint8_t>(codes[c]));
    }
    if (buffer.size() >= kFlushBytes)
      flush();
  }
  return Error::success();
}

Error Packer::emitSuperblocks(RowSource &source, ArrayRef<float> params, int64_t r,
                              function_ref<Error(const Twine &)> error) {
  int64_t blocks = cols / PackedFormat::kSuperblock;
  int64_t groups = PackedFormat::kSuperblock / format.group, parts = format.scaleParts();
  std::vector<uint16_t> numbers(2 * blocks);
  std::vector<int8_t> bytes(2 * groups * blocks);
  source.superblockScales(numbers.data(), bytes.data());
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t g = 0; g < groups; ++g) {
      int64_t index = b * groups + g;
      if (!format.offsets && params[2 * index + 1] != 0)
        return error("has a nonzero offset in row " + Twine(r) + ", group " + Twine(index) +
                     ", which " + stringifyPackedFormat(format) + " (scales alone) cannot hold");
      for (int64_t p = 0; p < parts; ++p) {
        float product = fromF16(numbers[2 * b + p]) *
                        static_cast<float>(bytes[2 * groups * b + p * groups + g]);
        if (product != params[2 * index + p])
          return error("has superblock scales in row " + Twine(r) + ", group " + Twine(index) +
                       " whose product differs from the block's " +
                       (p ? "offset" : "scale"));
      }
    }
    uint8_t out[4];
    for (int64_t p = 0; p < parts; ++p)
      writeU16(out + 2 * p, numbers[2 * b + p]);
    buffer.insert(buffer.end(), out, out + 2 * parts);
    for (int64_t p = 0; p < parts; ++p)
      for (int64_t g = 0; g < groups; ++g)
        buffer.push_back(static_cast<uint8_t>(bytes[2 * groups * b + p * groups + g]));
  }
  return Error::success();
}

Error Packer::pack(StringRef name) {
  const TensorInfo *info = store.lookup(name);
  if (!info)
    return fileError(store.size() ? store.getFilePath(store.lookup(store.names()[0])->file)
                                  : StringRef("checkpoint"),
                     "tensor '" + name + "' is not in the checkpoint");
  Expected<std::unique_ptr<RowSource>> source = open(*info);
  if (!source)
    return source.takeError();
  return emit(*info, **source);
}

} // namespace

bool canDequantize(DType dtype) { return isFloat(dtype) || isGGUFBlockType(dtype); }

void dequantizeTensor(const WeightStore &store, const TensorInfo &info, MutableArrayRef<float> out) {
  const uint8_t *data = store.getData(info).data();
  int64_t n = static_cast<int64_t>(out.size());
  if (isFloat(info.dtype)) {
    for (int64_t i = 0; i < n; ++i)
      out[i] = readFloat(info.dtype, data, i);
    return;
  }
  int64_t elements = getBlockElements(info.dtype), bytes = getBlockBytes(info.dtype);
  int64_t group = ggufGroup(info.dtype);
  std::vector<int16_t> codes(elements);
  std::vector<float> params(2 * (elements / group));
  for (int64_t block = 0; block * elements < n; ++block) {
    decodeGGUFBlock(info.dtype, data + block * bytes, codes.data(), params.data());
    for (int64_t e = 0; e < elements && block * elements + e < n; ++e)
      out[block * elements + e] = params[2 * (e / group)] * codes[e] + params[2 * (e / group) + 1];
  }
}

Error packWeights(const WeightStore &store, ArrayRef<std::string> names, int64_t cols,
                  PackedFormat format, PackedPart part, function_ref<void(StringRef)> sink) {
  Packer packer(store, cols, format, part, sink);
  for (const std::string &name : names)
    if (Error err = packer.pack(name))
      return err;
  packer.flush();
  return Error::success();
}

//===----------------------------------------------------------------------===//
// GPTQ act-order
//===----------------------------------------------------------------------===//

static int32_t readI32(const uint8_t *p) { return static_cast<int32_t>(readU32(p)); }

Expected<GPTQGroupOrder> readGPTQGroupOrder(const WeightStore &store, const TensorInfo &qweight,
                                            int64_t rows, int64_t cols) {
  StringRef file = store.getFilePath(qweight.file);
  if (!StringRef(qweight.name).ends_with(".qweight"))
    return fileError(file, "tensor '" + qweight.name + "' is not a GPTQ '<module>.qweight'");
  StringRef base = StringRef(qweight.name).drop_back(strlen(".qweight"));
  std::string gName = (base + ".g_idx").str(), sName = (base + ".scales").str();
  const TensorInfo *g = store.lookup(gName), *scales = store.lookup(sName);
  if (qweight.dtype != DType::I32 || rows <= 0 || rows % 8 != 0 || cols <= 0 || cols % 32 != 0 ||
      ArrayRef<int64_t>(qweight.shape) != ArrayRef<int64_t>{cols / 8, rows})
    return fileError(file, "tensor '" + qweight.name + "' (" + stringifyDType(qweight.dtype) +
                     " " + shapeString(qweight.shape) + ") must be I32 [" +
                     Twine(cols / 8) + ", " + Twine(rows) + "], GPTQ's " +
                     Twine(rows) + " outputs (a multiple of 8) by " + Twine(cols) +
                     " inputs (a multiple of 32) / 8");
  if (!scales || scales->shape.size() != 2 || scales->shape[0] <= 0 ||
      scales->shape[1] != rows ||
      !is_contained({DType::F32, DType::F16, DType::BF16}, scales->dtype))
    return fileError(file, "tensor '" + qweight.name + "' needs a companion '" + sName +
                     "' (F16, BF16 or F32) of shape [groups, " + Twine(rows) + "]");
  if (!g)
    return fileError(file, "tensor '" + qweight.name + "' has no '" + gName + "'");
  if (g->dtype != DType::I32 || ArrayRef<int64_t>(g->shape) != ArrayRef<int64_t>{cols})
    return fileError(store.getFilePath(g->file),
                     "tensor '" + gName + "' (" + stringifyDType(g->dtype) + " " +
                     shapeString(g->shape) + ") must be I32 [" + Twine(cols) +
                     "], the group of each input");
  int64_t groups = scales->shape[0];
  if (cols % groups != 0)
    return fileError(file, "tensor '" + sName + "' has " + Twine(groups) +
                     " groups, which do not divide the " + Twine(cols) +
                     " inputs");
  int64_t groupSize = cols / groups;
  const uint8_t *data = store.getData(*g).data();
  GPTQGroupOrder result;
  std::vector<int64_t> counts(groups, 0);
  std::vector<int32_t> groupOf(cols);
  for (int64_t k = 0; k < cols; ++k) {
    int32_t index = readI32(data + 4 * k);
    if (index < 0 || index >= groups)
      return fileError(store.getFilePath(g->file),
                       "tensor '" + gName + "' has g_idx[" + Twine(k) + "] = " +
                       Twine(index) + ", outside the " + Twine(groups) +
                       " groups of '" + sName + "'");
    groupOf[k] = index;
    ++counts[index];
    result.trivial &= index == k / groupSize;
  }
  // The kernels decode blocks of 32 inputs with one scale: every group must
  // fill whole blocks once sorted (addSortedGPTQ checks a trivial order's).
  for (int64_t i = 0; i < groups && !result.trivial; ++i)
    if (counts[i] % 32 != 0)
      return fileError(store.getFilePath(g->file),
                       "tensor '" + gName + "' (act-order) puts " + Twine(counts[i]) +
                       " inputs in group " + Twine(i) +
                       ", not a multiple of 32: MoIR sorts the inputs by group and "
                       "decodes them in blocks of 32 sharing one scale");
  result.order.resize(cols);
  std::iota(result.order.begin(), result.order.end(), 0);
  std::stable_sort(result.order.begin(), result.order.end(),
                   [&](int32_t a, int32_t b) { return groupOf[a] < groupOf[b]; });
  for (int64_t j = 0; j < cols; j += 32)
    result.blockGroup.push_back(groupOf[result.order[j]]);
  return result;
}

Expected<std::string> addSortedGPTQ(WeightStore &store, const TensorInfo &qweight, int64_t rows,
                                    int64_t cols, const GPTQGroupOrder &in,
                                    ArrayRef<int32_t> rowOrder) {
  StringRef base = StringRef(qweight.name).drop_back(strlen(".qweight"));
  std::string derived = (base + ".act_order").str();
  StringRef file = store.getFilePath(qweight.file);
  if (const TensorInfo *known = store.lookup(derived + ".qweight")) {
    if (known->derived >= 0)
      return derived + ".qweight";
    return fileError(store.getFilePath(known->file),
                     "the checkpoint has a tensor '" + derived +
                         ".qweight', the name of the sorted form MoIR derives");
  }
  // readGPTQGroupOrder checked the qweight, its scales and g_idx.
  const TensorInfo *scales = store.lookup((base + ".scales").str());
  const TensorInfo *zeros = store.lookup((base + ".qzeros").str());
  if (!scales || scales->shape.size() != 2 || scales->shape[0] <= 0)
    return fileError(file, "tensor '" + qweight.name + "' has no '" + base + ".scales'");
  int64_t groups = scales->shape[0];
  if (!zeros || zeros->dtype != DType::I32 ||
      ArrayRef<int64_t>(zeros->shape) != ArrayRef<int64_t>{groups, rows / 8})
    return fileError(file, "tensor '" + qweight.name + "' needs a companion '" + base +
                               ".qzeros' of I32 [" + Twine(groups) + ", " + Twine(rows / 8) +
                               "]");
  // A trivial order (only the rows move) still needs groups of whole blocks.
  if (in.trivial && (cols / groups) % 32 != 0)
    return fileError(file, "tensor '" + qweight.name + "' has groups of " +
                               Twine(cols / groups) + " inputs, not a multiple of 32");
  std::vector<int32_t> order = in.order, blockGroup = in.blockGroup;
  if (!rowOrder.empty() &&
      (static_cast<int64_t>(rowOrder.size()) != rows ||
       llvm::any_of(rowOrder, [&](int32_t r) { return r < 0 || r >= rows; })))
    return fileError(file, "tensor '" + qweight.name + "': a row order of " +
                               Twine(rowOrder.size()) + " entries for its " + Twine(rows) +
                               " outputs");
  std::vector<int32_t> rowsFrom(rowOrder.begin(), rowOrder.end());
  if (rowsFrom.empty()) {
    rowsFrom.resize(rows);
    std::iota(rowsFrom.begin(), rowsFrom.end(), 0);
  }
  int64_t blocks = static_cast<int64_t>(blockGroup.size()), width = getBlockBytes(scales->dtype);
  auto add = [&](StringRef suffix, DType dtype, SmallVector<int64_t> shape,
                 WeightStore::TensorProducer produce) -> Error {
    TensorInfo info;
    info.name = (derived + suffix).str();
    info.dtype = dtype;
    info.shape = std::move(shape);
    info.file = qweight.file;
    info.bytes = static_cast<uint64_t>(info.getNumElements() * getBlockBytes(dtype));
    return store.addDerivedTensor(std::move(info), std::move(produce));
  };
  WeightStore &s = store;
  TensorInfo q = qweight, sc = *scales, z = *zeros;
  // One copy of the orders for the three producers (they live as long as
  // the store: a model has thousands of such weights).
  struct Orders {
    std::vector<int32_t> inputs, rows, blockGroups;
  };
  auto o = std::make_shared<const Orders>(
      Orders{std::move(order), std::move(rowsFrom), std::move(blockGroup)});
  Error err = add(".qweight", DType::I32, {cols / 8, rows},
                  [&s, q, o, rows, cols](MutableArrayRef<uint8_t> out) {
    // qweight[i, n] bits 4j..4j+3: input 8i + j of output n.
    const std::vector<int32_t> &rowsFrom = o->rows;
    const uint8_t *from = s.getData(q).data();
    std::vector<uint32_t> words(static_cast<size_t>(cols / 8 * rows), 0);
    for (int64_t j = 0; j < cols; ++j) {
      int64_t k = o->inputs[j];
      for (int64_t n = 0; n < rows; ++n) {
        uint32_t word = static_cast<uint32_t>(readI32(from + 4 * ((k / 8) * rows + rowsFrom[n])));
        uint32_t nibble = (word >> (4 * (k % 8))) & 15;
        words[(j / 8) * rows + n] |= nibble << (4 * (j % 8));
      }
    }
    s.releaseData(q);
    std::memcpy(out.data(), words.data(), out.size());
  });
  if (!err)
    err = add(".scales", sc.dtype, {blocks, rows},
              [&s, sc, o, rows, width](MutableArrayRef<uint8_t> out) {
      const std::vector<int32_t> &blockGroup = o->blockGroups, &rowsFrom = o->rows;
      const uint8_t *from = s.getData(sc).data();
      for (size_t bl = 0; bl < blockGroup.size(); ++bl)
        for (int64_t n = 0; n < rows; ++n)
          std::memcpy(&out[(bl * rows + n) * width],
                      from + (blockGroup[bl] * rows + rowsFrom[n]) * width, width);
      s.releaseData(sc);
    });
  if (!err)
    err = add(".qzeros", DType::I32, {blocks, rows / 8},
              [&s, z, o, rows](MutableArrayRef<uint8_t> out) {
      // qzeros[g, m] bits 4j..4j+3: output 8m + j.
      const std::vector<int32_t> &blockGroup = o->blockGroups, &rowsFrom = o->rows;
      const uint8_t *from = s.getData(z).data();
      std::vector<uint32_t> words(blockGroup.size() * (rows / 8), 0);
      for (size_t bl = 0; bl < blockGroup.size(); ++bl)
        for (int64_t n = 0; n < rows; ++n) {
          int64_t src = rowsFrom[n];
          uint32_t word = static_cast<uint32_t>(
              readI32(from + 4 * (blockGroup[bl] * (rows / 8) + src / 8)));
          words[bl * (rows / 8) + n / 8] |= ((word >> (4 * (src % 8))) & 15) << (4 * (n % 8));
        }
      s.releaseData(z);
      std::memcpy(out.data(), words.data(), out.size());
    });
  if (err)
    return std::move(err);
  return derived + ".qweight";
}

} // namespace moir::frontend
