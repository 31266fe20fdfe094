//===- QuantizationTest.cpp - the weight packer against reference math -----===//
//
// Each source format is packed and the packed form dequantized by the
// formula Quantization.h documents; the result must equal the source's own
// dequantization: gguf-py's for GGUF blocks (QuantizationVectors.inc, from
// make_quant_vectors.py), the published formulas for AWQ, GPTQ and FP8.
//
//===----------------------------------------------------------------------===//

#include "moir/Frontend/FloatBits.h"
#include "moir/Frontend/Quantization.h"

#include "llvm/Support/Endian.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <numeric>
#include <random>

using namespace llvm;
using namespace moir::frontend;

namespace {

#include "QuantizationVectors.inc"

/// Tensors laid one after another in one in-memory file.
struct StoreBuilder {
  std::string bytes;
  std::vector<TensorInfo> infos;

  void add(StringRef name, DType dtype, SmallVector<int64_t> shape, ArrayRef<uint8_t> data) {
    TensorInfo info;
    info.name = name.str();
    info.dtype = dtype;
    info.shape = shape;
    info.offset = bytes.size();
    info.bytes = data.size();
    bytes.append(reinterpret_cast<const char *>(data.data()), data.size());
    infos.push_back(std::move(info));
  }
  template <typename T>
  void addValues(StringRef name, DType dtype, SmallVector<int64_t> shape, ArrayRef<T> values) {
    add(name, dtype, shape,
        ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(values.data()),
                          values.size() * sizeof(T)));
  }
  void build(WeightStore &store) {
    unsigned file = store.addFile(MemoryBuffer::getMemBufferCopy(bytes, "test"), "test.bin");
    for (TensorInfo &info : infos) {
      info.file = file;
      cantFail(store.addTensor(info));
    }
  }
};

struct Packed {
  std::vector<uint8_t> data;
  /// The scales part as written (f32 or f16, pairs or scales alone).
  std::vector<uint8_t> scales;
};

Expected<Packed> pack(const WeightStore &store, ArrayRef<std::string> names, int64_t cols,
                      StringRef formatText) {
  std::optional<PackedFormat> format = parsePackedFormat(formatText);
  EXPECT_TRUE(format) << formatText.str();
  Packed packed;
  if (Error err = packWeights(store, names, cols, *format, PackedPart::Data, [&](StringRef s) {
        packed.data.insert(packed.data.end(), s.begin(), s.end());
      }))
    return std::move(err);
  if (Error err = packWeights(store, names, cols, *format, PackedPart::Scales, [&](StringRef s) {
        packed.scales.insert(packed.scales.end(), s.begin(), s.end());
      }))
    return std::move(err);
  return packed;
}

/// The header's formula: w = scale * value(code) + offset.
std::vector<float> dequantize(const Packed &packed, StringRef formatText, int64_t cols) {
  PackedFormat format = *parsePackedFormat(formatText);
  int64_t rows = packed.data.size() / getPackedRowBytes(format, cols);
  EXPECT_EQ(packed.data.size(), getPackedBytes(format, PackedPart::Data, rows, cols));
  EXPECT_EQ(packed.scales.size(), getPackedBytes(format, PackedPart::Scales, rows, cols));
  std::vector<float> w(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float value;
      const uint8_t *row = packed.data.data() + r * getPackedRowBytes(format, cols);
      if (format.storage == PackedStorage::U4) {
        int64_t g = c / 32, j = c % 32;
        uint8_t byte = row[16 * g + j % 16];
        value = j < 16 ? (byte & 0xF) : (byte >> 4);
      } else if (format.storage == PackedStorage::I8) {
        value = static_cast<int8_t>(row[c]);
      } else {
        value = fromFP8E4M3(row[c]);
      }
      auto [scale, offset] = readPackedParams(
          format, packed.scales.data() + r * format.getScaleRowBytes(cols), c / format.group);
      w[r * cols + c] = scale * value + offset;
    }
  return w;
}

void expectClose(ArrayRef<float> got, ArrayRef<float> want, float relative = 1e-6f) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], relative * std::max(1e-3f, std::fabs(want[i])))
        << "element " << i;
}

std::string errorText(Expected<Packed> result) {
  if (result)
    return "(no error)";
  return toString(result.takeError());
}

struct GGUFCase {
  DType dtype;
  ArrayRef<uint8_t> blocks;
  ArrayRef<float> reference;
  const char *format;
};

TEST(Quantization, GGUFBlocksMatchGGUFPy) {
  const GGUFCase cases[] = {
      {DType::Q8_0, kQ8_0Blocks, kQ8_0Reference, "i8:32"},
      {DType::Q8_0, kQ8_0Blocks, kQ8_0Reference, "i8:16"},
      {DType::Q8_0, kQ8_0Blocks, kQ8_0Reference, "i8:32:q8_0:f16:sym"},
      {DType::Q4_0, kQ4_0Blocks, kQ4_0Reference, "u4:32"},
      {DType::Q4_0, kQ4_0Blocks, kQ4_0Reference, "u4:32:f16"},
      {DType::Q4_0, kQ4_0Blocks, kQ4_0Reference, "i8:8"},
      {DType::Q4_1, kQ4_1Blocks, kQ4_1Reference, "u4:32"},
      {DType::Q4_1, kQ4_1Blocks, kQ4_1Reference, "u4:32:f16"},
      {DType::Q5_0, kQ5_0Blocks, kQ5_0Reference, "i8:32"},
      {DType::Q5_0, kQ5_0Blocks, kQ5_0Reference, "i8:32:f16"},
      {DType::Q5_1, kQ5_1Blocks, kQ5_1Reference, "i8:32:f16"},
      {DType::Q4_K, kQ4_KBlocks, kQ4_KReference, "u4:32"},
      {DType::Q4_K, kQ4_KBlocks, kQ4_KReference, "u4:32:q4_k:k"},
      {DType::Q5_K, kQ5_KBlocks, kQ5_KReference, "i8:32"},
      {DType::Q5_K, kQ5_KBlocks, kQ5_KReference, "i8:32:k"},
      {DType::Q6_K, kQ6_KBlocks, kQ6_KReference, "i8:16"},
      {DType::Q6_K, kQ6_KBlocks, kQ6_KReference, "i8:16:q6_k:sym:k"},
      {DType::Q6_K, kQ6_KBlocks, kQ6_KReference, "i8:16:q6_k:sym"},
      {DType::Q6_K, kQ6_KBlocks, kQ6_KReference, "i8:4"},
  };
  for (const GGUFCase &c : cases) {
    SCOPED_TRACE(stringifyDType(c.dtype).str() + " as " + c.format);
    // Two rows of two blocks, stored as one 3-D stack of one matrix.
    int64_t cols = 2 * getBlockElements(c.dtype);
    ASSERT_EQ(c.reference.size(), static_cast<size_t>(2 * cols));
    ASSERT_EQ(c.blocks.size(), static_cast<size_t>(4 * getBlockBytes(c.dtype)));
    StoreBuilder builder;
    builder.add("blk.0.ffn_down.weight", c.dtype, {1, 2, cols}, c.blocks);
    WeightStore store;
    builder.build(store);
    Expected<Packed> packed = pack(store, {"blk.0.ffn_down.weight"}, cols, c.format);
    ASSERT_TRUE(bool(packed)) << toString(packed.takeError());
    expectClose(dequantize(*packed, c.format, cols), c.reference);
  }
}

TEST(Quantization, DequantizeTensorMatchesGGUFPy) {
  const std::pair<DType, std::pair<ArrayRef<uint8_t>, ArrayRef<float>>> cases[] = {
      {DType::Q8_0, {kQ8_0Blocks, kQ8_0Reference}}, {DType::Q4_0, {kQ4_0Blocks, kQ4_0Reference}},
      {DType::Q4_1, {kQ4_1Blocks, kQ4_1Reference}}, {DType::Q5_0, {kQ5_0Blocks, kQ5_0Reference}},
      {DType::Q5_1, {kQ5_1Blocks, kQ5_1Reference}}, {DType::Q4_K, {kQ4_KBlocks, kQ4_KReference}},
      {DType::Q5_K, {kQ5_KBlocks, kQ5_KReference}}, {DType::Q6_K, {kQ6_KBlocks, kQ6_KReference}},
  };
  for (const auto &[dtype, vectors] : cases) {
    SCOPED_TRACE(stringifyDType(dtype).str());
    int64_t cols = 2 * getBlockElements(dtype);
    StoreBuilder builder;
    builder.add("w", dtype, {2, cols}, vectors.first);
    WeightStore store;
    builder.build(store);
    ASSERT_TRUE(canDequantize(dtype));
    std::vector<float> out(2 * cols, std::nanf(""));
    dequantizeTensor(store, *store.lookup("w"), out);
    expectClose(out, vectors.second);
  }
  EXPECT_FALSE(canDequantize(DType::I32));
}

TEST(Quantization, DerivedTensors) {
  // A derived tensor is produced when first read, dropped on release and
  // produced again on the next read.
  StoreBuilder builder;
  std::vector<float> base = {1, 2, 3, 4};
  builder.addValues<float>("base", DType::F32, {2, 2}, base);
  WeightStore store;
  builder.build(store);
  int produced = 0;
  TensorInfo info;
  info.name = "t";
  info.dtype = DType::F32;
  info.shape = {2, 2};
  info.bytes = 16;
  cantFail(store.addDerivedTensor(info, [&](MutableArrayRef<uint8_t> out) {
    ++produced;
    std::vector<float> values(4);
    dequantizeTensor(store, *store.lookup("base"), values);
    for (int i = 0; i < 4; ++i) {
      float transposed = values[(i % 2) * 2 + i / 2];
      std::memcpy(&out[4 * i], &transposed, 4);
    }
  }));
  const TensorInfo &t = *store.lookup("t");
  EXPECT_GE(t.derived, 0);
  std::vector<float> got(4);
  dequantizeTensor(store, t, got);
  dequantizeTensor(store, t, got);
  EXPECT_EQ(produced, 1);
  EXPECT_EQ(got, (std::vector<float>{1, 3, 2, 4}));
  store.releaseData(t);
  std::fill(got.begin(), got.end(), 0.0f);
  dequantizeTensor(store, t, got);
  EXPECT_EQ(produced, 2);
  EXPECT_EQ(got, (std::vector<float>{1, 3, 2, 4}));
  // A view of its rows (tensor parallelism's "<name>[rows=a:b]") is derived
  // too: the whole's bytes, those rows; out of range, no view.
  const TensorInfo *row1 = store.lookup("t[rows=1:2]");
  ASSERT_NE(row1, nullptr);
  EXPECT_GE(row1->derived, 0);
  EXPECT_EQ(row1->shape, (SmallVector<int64_t>{1, 2}));
  std::vector<float> part(2);
  dequantizeTensor(store, *row1, part);
  EXPECT_EQ(part, (std::vector<float>{2, 4}));
  EXPECT_EQ(store.lookup("t[rows=1:3]"), nullptr);
  // A name the store holds already is refused, derived or not.
  EXPECT_TRUE(bool(store.addDerivedTensor(info, [](MutableArrayRef<uint8_t>) {})));
}

TEST(Quantization, GGUFRefusals) {
  StoreBuilder builder;
  builder.add("q5", DType::Q5_0, {2, 64}, kQ5_0Blocks);
  builder.add("q6", DType::Q6_K, {2, 512}, kQ6_KBlocks);
  std::vector<uint8_t> nan(kQ8_0Blocks, kQ8_0Blocks + 4 * 34);
  nan[34] = 0x00; // second block's d = f16 NaN
  nan[35] = 0x7e;
  builder.add("nan", DType::Q8_0, {2, 64}, nan);
  // A Q4_0 block with d = 10000: its offset -8d overflows f16.
  std::vector<uint8_t> big(kQ4_0Blocks, kQ4_0Blocks + 4 * 18);
  big[0] = 0xE2;
  big[1] = 0x70;
  builder.add("big", DType::Q4_0, {2, 64}, big);
  WeightStore store;
  builder.build(store);
  std::string overflow = errorText(pack(store, {"big"}, 64, "u4:32:f16"));
  EXPECT_NE(overflow.find("test.bin: tensor 'big' (Q4_0) has an offset (-80000"), std::string::npos)
      << overflow;
  EXPECT_NE(overflow.find("in row 0, group 0 that is not an f16 number, which u4:32:f16 stores"),
            std::string::npos)
      << overflow;
  EXPECT_TRUE(bool(pack(store, {"big"}, 64, "u4:32")));
  EXPECT_EQ(errorText(pack(store, {"q5"}, 64, "i8:32:sym")),
            "test.bin: tensor 'q5' (Q5_0) has a nonzero offset in row 0, group 0, which "
            "i8:32:sym (scales alone) cannot hold");
  EXPECT_EQ(errorText(pack(store, {"q5"}, 64, "u4:32")),
            "test.bin: tensor 'q5' (Q5_0) has codes 0..31, which do not fit u4 (0..15); "
            "request i8");
  EXPECT_EQ(errorText(pack(store, {"q6"}, 512, "i8:32")),
            "test.bin: tensor 'q6' (Q6_K) has groups of 16 elements; the requested group 32 "
            "(i8:32) must divide it");
  EXPECT_EQ(errorText(pack(store, {"q6"}, 256, "i8:16")),
            "test.bin: tensor 'q6' (Q6_K) has shape [2, 512], expected 256 columns");
  EXPECT_EQ(errorText(pack(store, {"nan"}, 64, "i8:32")),
            "test.bin: tensor 'nan' (Q8_0) has a NaN scale in row 0, group 1");
  EXPECT_EQ(errorText(pack(store, {"absent"}, 64, "i8:32")),
            "test.bin: tensor 'absent' is not in the checkpoint");
  EXPECT_EQ(errorText(pack(store, {"q6"}, 512, "i8:8:sym:k")),
            "test.bin: tensor 'q6' (Q6_K) cannot be packed as i8:8:sym:k: superblock scales "
            "need a K-quant source (Q4_K, Q5_K, Q6_K) in its own groups of 16");
  EXPECT_EQ(errorText(pack(store, {"q5"}, 64, "i8:32:k")),
            "test.bin: tensor 'q5' (Q5_0) cannot be packed as i8:32:k with 64 columns (the "
            "group must divide the columns, u4's group is 32, and superblock scales need whole "
            "superblocks of 256 and no f16 group scales)");
  EXPECT_FALSE(parsePackedFormat("u4:32:f16:k"));
  EXPECT_EQ(stringifyPackedFormat(*parsePackedFormat("i8:16:q6_k:sym:k")), "i8:16:q6_k:sym:k");
  EXPECT_EQ(errorText(pack(store, {"q6"}, 512, "f8e4m3:16")),
            "test.bin: tensor 'q6' (Q6_K) holds integer codes, which f8e4m3:16 cannot store");
}

std::vector<float> randomFloats(size_t n, unsigned seed, float sigma = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> values(n);
  for (float &v : values)
    v = normal(gen);
  return values;
}

/// Quantizes `x` [rows, cols] (F32) as `format` and returns the dequantized
/// result.
std::vector<float> roundTrip(ArrayRef<float> x, int64_t rows, int64_t cols, StringRef format) {
  StoreBuilder builder;
  builder.addValues<float>("w", DType::F32, {rows, cols}, x);
  WeightStore store;
  builder.build(store);
  Expected<Packed> packed = pack(store, {"w"}, cols, format);
  EXPECT_TRUE(bool(packed)) << toString(packed.takeError());
  return packed ? dequantize(*packed, format, cols) : std::vector<float>();
}

TEST(Quantization, CompileQ8_0) {
  int64_t rows = 4, cols = 512;
  std::vector<float> x = randomFloats(rows * cols, 1);
  std::vector<float> y = roundTrip(x, rows, cols, "i8:32:q8_0");
  ASSERT_EQ(y.size(), x.size());
  for (int64_t b = 0; b < rows * cols / 32; ++b) {
    float amax = 0;
    for (int k = 0; k < 32; ++k)
      amax = std::max(amax, std::fabs(x[32 * b + k]));
    float d = fromF16(toF16(amax / 127));
    for (int k = 0; k < 32; ++k) // d/2 plus the f16 rounding of d on 127 steps
      EXPECT_LE(std::fabs(y[32 * b + k] - x[32 * b + k]), d / 2 + 127 * amax / 127 * 1e-3f);
  }
}

double relativeRMS(ArrayRef<float> x, ArrayRef<float> y) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (x[i] - y[i]) * (x[i] - y[i]);
    ref += x[i] * x[i];
  }
  return std::sqrt(err / ref);
}

TEST(Quantization, CompileKQuants) {
  int64_t rows = 8, cols = 512;
  std::vector<float> x = randomFloats(rows * cols, 2);
  // 4-bit: step ~ range/15 ~ 0.3 sigma, RMS error ~ step / sqrt(12).
  std::vector<float> q4 = roundTrip(x, rows, cols, "u4:32:q4_k");
  ASSERT_EQ(q4.size(), x.size());
  EXPECT_LT(relativeRMS(x, q4), 0.12);
  std::vector<float> q6 = roundTrip(x, rows, cols, "i8:16:q6_k");
  ASSERT_EQ(q6.size(), x.size());
  EXPECT_LT(relativeRMS(x, q6), 0.035);
  // Q4_K's codes fit u4 and i8 alike; the same bytes decode the same way.
  expectClose(roundTrip(x, rows, cols, "i8:32:q4_k"), q4);
  // Superblock scales hold the same numbers exactly (d * sc in f32), in 20
  // bytes per 256 elements for Q4_K (64 as f32 pairs) and 18 for Q6_K.
  std::vector<float> q4k = roundTrip(x, rows, cols, "u4:32:q4_k:k");
  std::vector<float> q6k = roundTrip(x, rows, cols, "i8:16:q6_k:sym:k");
  ASSERT_EQ(q4k.size(), q4.size());
  ASSERT_EQ(q6k.size(), q6.size());
  for (size_t i = 0; i < q4.size(); ++i) {
    ASSERT_EQ(q4k[i], q4[i]) << "element " << i;
    ASSERT_EQ(q6k[i], q6[i]) << "element " << i;
  }
  EXPECT_EQ(getPackedBytes(*parsePackedFormat("u4:32:q4_k:k"), PackedPart::Scales, rows, cols),
            static_cast<uint64_t>(rows * 2 * 20));
  EXPECT_EQ(getPackedBytes(*parsePackedFormat("i8:16:q6_k:sym:k"), PackedPart::Scales, rows, cols),
            static_cast<uint64_t>(rows * 2 * 18));
}

TEST(Quantization, CompileInt4AndFP8) {
  int64_t rows = 3, cols = 96;
  std::vector<float> x = randomFloats(rows * cols, 3, 0.02f);
  std::vector<float> i4 = roundTrip(x, rows, cols, "u4:32:int4");
  ASSERT_EQ(i4.size(), x.size());
  for (int64_t g = 0; g < rows * cols / 32; ++g) {
    float lo = *std::min_element(&x[32 * g], &x[32 * g] + 32);
    float hi = *std::max_element(&x[32 * g], &x[32 * g] + 32);
    for (int k = 0; k < 32; ++k)
      EXPECT_LE(std::fabs(i4[32 * g + k] - x[32 * g + k]), (hi - lo) / 15 / 2 * 1.0001f);
  }
  std::vector<float> f8 = roundTrip(x, rows, cols, "f8e4m3:96:fp8");
  ASSERT_EQ(f8.size(), x.size());
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (int64_t c = 0; c < cols; ++c)
      amax = std::max(amax, std::fabs(x[r * cols + c]));
    for (int64_t c = 0; c < cols; ++c) {
      float v = x[r * cols + c];
      // Half an ulp of 3 mantissa bits, or of the subnormal step.
      EXPECT_LE(std::fabs(f8[r * cols + c] - v),
                std::max(std::fabs(v) / 16, amax / 448 * 0x1p-10f) * 1.0001f);
    }
  }
}

TEST(Quantization, CompileRefusals) {
  StoreBuilder builder;
  std::vector<float> x = randomFloats(2 * 96, 4);
  x[100] = NAN;
  builder.addValues<float>("w", DType::F32, {2, 96}, x);
  WeightStore store;
  builder.build(store);
  EXPECT_EQ(errorText(pack(store, {"w"}, 96, "u4:32:q4_k")),
            "test.bin: tensor 'w' (F32) has 96 columns, not a multiple of 256, and cannot be "
            "quantized as Q4_K");
  EXPECT_EQ(errorText(pack(store, {"w"}, 96, "i8:32")),
            "test.bin: tensor 'w' (F32) is a float tensor, but the packed format i8:32 asks for "
            "quantized codes and no quantization was requested");
  EXPECT_EQ(errorText(pack(store, {"w"}, 96, "i8:32:q8_0")),
            "test.bin: tensor 'w' (F32) element [1, 4] is NaN and cannot be quantized");

  // Scales beyond f16's range (Q8_0's d = amax / 127) or f32's (int4's step).
  StoreBuilder huge;
  std::vector<float> y(2 * 32, 1.0f);
  y[40] = 1e30f;
  y[0] = 3e38f;
  y[1] = -3e38f;
  huge.addValues<float>("h", DType::F32, {2, 32}, y);
  WeightStore hugeStore;
  huge.build(hugeStore);
  EXPECT_EQ(errorText(pack(hugeStore, {"h"}, 32, "i8:32:q8_0")),
            "test.bin: tensor 'h' (F32) row 0 has values too large for Q8_0's f16 scales "
            "(block 0)");
  EXPECT_EQ(errorText(pack(hugeStore, {"h"}, 32, "u4:32:int4")),
            "test.bin: tensor 'h' (F32) row 0 spans a range too large for int4 scales (group 0)");
}

TEST(Quantization, FloatBits) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = fromF16(h);
    if (std::isnan(f))
      continue;
    EXPECT_EQ(toF16(f), h);
  }
  for (int b = 0; b < 256; ++b) {
    float f = fromFP8E4M3(b);
    if (std::isnan(f))
      continue;
    EXPECT_EQ(toFP8E4M3(f), b == 0x80 ? 0x80 : b);
  }
  EXPECT_EQ(toFP8E4M3(1000.0f), 0x7e);
  EXPECT_EQ(toFP8E4M3(-1000.0f), 0xfe);
  EXPECT_EQ(toFP8E4M3(1.0625f), 0x38); // tie between 1 and 1.125: even
  EXPECT_EQ(toFP8E4M3(1.1875f), 0x3a); // tie between 1.125 and 1.25: even
  EXPECT_EQ(toF16(65520.0f), 0x7c00);
}

uint16_t f16Bits(float v) { return toF16(v); }

/// A random AWQ or GPTQ 4-bit tensor [rows, cols] and its dequantization.
struct Int4Tensor {
  int64_t rows, cols, group;
  std::vector<int> q, z;     // [rows, cols], [cols / group, rows]
  std::vector<uint16_t> s;   // [cols / group, rows] f16
  std::vector<float> w;

  Int4Tensor(int64_t rows, int64_t cols, int64_t group, unsigned seed)
      : rows(rows), cols(cols), group(group), q(rows * cols), z(cols / group * rows),
        s(cols / group * rows), w(rows * cols) {
    std::mt19937 gen(seed);
    for (int &v : q)
      v = gen() % 16;
    for (int &v : z)
      v = gen() % 16;
    for (uint16_t &v : s)
      v = f16Bits(std::uniform_real_distribution<float>(0.001f, 0.05f)(gen));
  }
  void computeW(int zeroBias) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        int64_t g = c / group;
        w[r * cols + c] =
            (q[r * cols + c] - (z[g * rows + r] + zeroBias)) * fromF16(s[g * rows + r]);
      }
  }
};

TEST(Quantization, AWQ) {
  Int4Tensor t(16, 64, 32, 5);
  t.computeW(0);
  static const int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};
  // qweight [cols, rows / 8]: nibble i of word (c, n) holds output 8n + kOrder[i].
  std::vector<uint32_t> qweight(t.cols * t.rows / 8, 0), qzeros(t.cols / t.group * t.rows / 8);
  for (int64_t c = 0; c < t.cols; ++c)
    for (int64_t n = 0; n < t.rows / 8; ++n)
      for (int i = 0; i < 8; ++i)
        qweight[c * t.rows / 8 + n] |= t.q[(8 * n + kOrder[i]) * t.cols + c] << (4 * i);
  for (int64_t g = 0; g < t.cols / t.group; ++g)
    for (int64_t n = 0; n < t.rows / 8; ++n) {
      qzeros[g * t.rows / 8 + n] = 0;
      for (int i = 0; i < 8; ++i)
        qzeros[g * t.rows / 8 + n] |= t.z[g * t.rows + 8 * n + kOrder[i]] << (4 * i);
    }
  StoreBuilder builder;
  builder.addValues<uint32_t>("m.qweight", DType::I32, {t.cols, t.rows / 8}, qweight);
  builder.addValues<uint32_t>("m.qzeros", DType::I32, {t.cols / t.group, t.rows / 8}, qzeros);
  builder.addValues<uint16_t>("m.scales", DType::F16, {t.cols / t.group, t.rows}, t.s);
  builder.addValues<uint32_t>("bad.qweight", DType::I32, {t.cols, t.rows / 8}, qweight);
  builder.addValues<uint32_t>("bad.qzeros", DType::I32, {t.cols / t.group, t.rows}, qweight);
  builder.addValues<uint16_t>("bad.scales", DType::F16, {t.cols / t.group, t.rows}, t.s);
  WeightStore store;
  builder.build(store);
  Expected<Packed> packed = pack(store, {"m.qweight"}, t.cols, "u4:32");
  ASSERT_TRUE(bool(packed)) << toString(packed.takeError());
  expectClose(dequantize(*packed, "u4:32", t.cols), t.w);
  EXPECT_EQ(errorText(pack(store, {"bad.qweight"}, t.cols, "u4:32")),
            "test.bin: tensor 'bad.qweight' (I32) has a companion 'bad.qzeros' of I32 [2, 16]; "
            "expected I32 [2, 2]");
}

TEST(Quantization, GPTQ) {
  Int4Tensor t(16, 128, 64, 6);
  t.computeW(1); // v1 stores zero - 1
  // qweight [cols / 8, rows]: nibble i of word (k, r) holds input 8k + i.
  std::vector<uint32_t> qweight(t.cols / 8 * t.rows, 0), qzeros(t.cols / t.group * t.rows / 8, 0);
  for (int64_t k = 0; k < t.cols / 8; ++k)
    for (int64_t r = 0; r < t.rows; ++r)
      for (int i = 0; i < 8; ++i)
        qweight[k * t.rows + r] |= t.q[r * t.cols + 8 * k + i] << (4 * i);
  for (int64_t g = 0; g < t.cols / t.group; ++g)
    for (int64_t r = 0; r < t.rows; ++r)
      qzeros[g * t.rows / 8 + r / 8] |= t.z[g * t.rows + r] << (4 * (r % 8));
  std::vector<int32_t> gIdx(t.cols), actOrder(t.cols), outOfRange(t.cols);
  for (int64_t k = 0; k < t.cols; ++k) {
    gIdx[k] = k / t.group;
    actOrder[k] = k % 2;
    outOfRange[k] = k == 7 ? 2 : gIdx[k];
  }
  StoreBuilder builder;
  SmallVector<int64_t> qwShape{t.cols / 8, t.rows}, zShape{t.cols / t.group, t.rows / 8},
      sShape{t.cols / t.group, t.rows};
  for (StringRef base : {"m", "act", "range"}) {
    builder.addValues<uint32_t>((base + ".qweight").str(), DType::I32, qwShape, qweight);
    builder.addValues<uint32_t>((base + ".qzeros").str(), DType::I32, zShape, qzeros);
    builder.addValues<uint16_t>((base + ".scales").str(), DType::F16, sShape, t.s);
  }
  builder.addValues<int32_t>("m.g_idx", DType::I32, {t.cols}, gIdx);
  builder.addValues<int32_t>("act.g_idx", DType::I32, {t.cols}, actOrder);
  builder.addValues<int32_t>("range.g_idx", DType::I32, {t.cols}, outOfRange);
  builder.addValues<uint32_t>("nozeros.qweight", DType::I32, qwShape, qweight);
  builder.addValues<uint16_t>("nozeros.scales", DType::F16, sShape, t.s);
  WeightStore store;
  builder.build(store);
  Expected<Packed> packed = pack(store, {"m.qweight"}, t.cols, "u4:32");
  ASSERT_TRUE(bool(packed)) << toString(packed.takeError());
  expectClose(dequantize(*packed, "u4:32", t.cols), t.w);
  EXPECT_EQ(errorText(pack(store, {"act.qweight"}, t.cols, "u4:32")),
            "test.bin: tensor 'act.qweight' (I32) has an act-order g_idx (g_idx[1] = 1, not 0): "
            "pack its inputs sorted by group (addSortedGPTQ), as the importer does");
  EXPECT_EQ(errorText(pack(store, {"range.qweight"}, t.cols, "u4:32")),
            "test.bin: tensor 'range.qweight' (I32) has g_idx[7] = 2, outside the 2 groups of "
            "'range.scales'");
  EXPECT_EQ(errorText(pack(store, {"nozeros.qweight"}, t.cols, "u4:32")),
            "test.bin: tensor 'nozeros.qweight' (I32) needs a companion tensor "
            "'nozeros.qzeros' (I32 [2, 2]), which the checkpoint does not have");
}

// compressed-tensors' pack-quantized 4-bit: codes 8 to a word along the
// inputs (signed value + 8), [rows, groups] scales, zero points (asymmetric)
// packed along the rows; symmetric weights have zero 8.
TEST(Quantization, CompressedTensorsPacked) {
  Int4Tensor t(24, 128, 32, 9);
  int64_t groups = t.cols / t.group;
  std::vector<uint32_t> packed(t.rows * t.cols / 8, 0), zeros((t.rows + 7) / 8 * groups, 0);
  std::vector<uint16_t> scales(t.rows * groups);
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t c = 0; c < t.cols; ++c)
      packed[r * t.cols / 8 + c / 8] |= t.q[r * t.cols + c] << (4 * (c % 8));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < t.rows; ++r) {
      scales[r * groups + g] = toBF16(fromF16(t.s[g * t.rows + r]));
      zeros[(r / 8) * groups + g] |= t.z[g * t.rows + r] << (4 * (r % 8));
    }
  StoreBuilder builder;
  for (StringRef base : {"asym.weight", "sym.weight"}) {
    builder.addValues<uint32_t>((base + "_packed").str(), DType::I32, {t.rows, t.cols / 8},
                                packed);
    builder.addValues<uint16_t>((base + "_scale").str(), DType::BF16, {t.rows, groups}, scales);
  }
  builder.addValues<uint32_t>("asym.weight_zero_point", DType::I32, {(t.rows + 7) / 8, groups},
                              zeros);
  builder.addValues<uint32_t>("bad.weight_packed", DType::I32, {t.rows, t.cols / 8}, packed);
  builder.addValues<uint16_t>("bad.weight_scale", DType::BF16, {t.rows, 3}, scales);
  WeightStore store;
  builder.build(store);
  std::vector<float> asym(t.rows * t.cols), sym(t.rows * t.cols);
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t c = 0; c < t.cols; ++c) {
      int64_t g = c / t.group;
      float scale = fromBF16(scales[r * groups + g]);
      asym[r * t.cols + c] = (t.q[r * t.cols + c] - t.z[g * t.rows + r]) * scale;
      sym[r * t.cols + c] = (t.q[r * t.cols + c] - 8) * scale;
    }
  Expected<Packed> a = pack(store, {"asym.weight_packed"}, t.cols, "u4:32");
  ASSERT_TRUE(bool(a)) << toString(a.takeError());
  expectClose(dequantize(*a, "u4:32", t.cols), asym);
  Expected<Packed> s = pack(store, {"sym.weight_packed"}, t.cols, "u4:32");
  ASSERT_TRUE(bool(s)) << toString(s.takeError());
  expectClose(dequantize(*s, "u4:32", t.cols), sym);
  EXPECT_EQ(errorText(pack(store, {"bad.weight_packed"}, t.cols, "u4:32")),
            "test.bin: tensor 'bad.weight_packed' (I32) needs a companion 'bad.weight_scale' of "
            "shape [24, groups] with 128 / groups a multiple of 32");
}

// The 8-bit form: 4 codes a word (signed value + 128), zero points packed 4
// to a word along the rows; symmetric weights have zero 0.
TEST(Quantization, CompressedTensorsPacked8) {
  const int64_t rows = 12, cols = 64, group = 32, groups = cols / group;
  std::mt19937 gen(13);
  std::vector<int> q(rows * cols), z(rows * groups);
  std::vector<uint16_t> scales(rows * groups);
  for (int &v : q)
    v = static_cast<int>(gen() % 256) - 128;
  for (int &v : z)
    v = static_cast<int>(gen() % 256) - 128;
  for (uint16_t &s : scales)
    s = toBF16(std::uniform_real_distribution<float>(0.001f, 0.05f)(gen));
  std::vector<uint32_t> packed(rows * cols / 4, 0), zeros((rows + 3) / 4 * groups, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      packed[r * cols / 4 + c / 4] |= static_cast<uint32_t>(q[r * cols + c] + 128) << (8 * (c % 4));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g)
      zeros[(r / 4) * groups + g] |= static_cast<uint32_t>(z[r * groups + g] + 128) << (8 * (r % 4));
  StoreBuilder builder;
  for (StringRef base : {"asym.weight", "sym.weight"}) {
    builder.addValues<uint32_t>((base + "_packed").str(), DType::I32, {rows, cols / 4}, packed);
    builder.addValues<uint16_t>((base + "_scale").str(), DType::BF16, {rows, groups}, scales);
  }
  builder.addValues<uint32_t>("asym.weight_zero_point", DType::I32, {(rows + 3) / 4, groups},
                              zeros);
  WeightStore store;
  builder.build(store);
  std::vector<float> asym(rows * cols), sym(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float scale = fromBF16(scales[r * groups + c / group]);
      asym[r * cols + c] = (q[r * cols + c] - z[r * groups + c / group]) * scale;
      sym[r * cols + c] = q[r * cols + c] * scale;
    }
  Expected<Packed> a = pack(store, {"asym.weight_packed"}, cols, "i8:32");
  ASSERT_TRUE(bool(a)) << toString(a.takeError());
  expectClose(dequantize(*a, "i8:32", cols), asym);
  Expected<Packed> s = pack(store, {"sym.weight_packed"}, cols, "i8:32:sym");
  ASSERT_TRUE(bool(s)) << toString(s.takeError());
  expectClose(dequantize(*s, "i8:32:sym", cols), sym);
}

// Act-order GPTQ: the sorted form (addSortedGPTQ) packs to the original
// weight with its inputs in the sorted order and, given a row order, its
// rows in that order; g_idx defects are refused naming the tensor.
TEST(Quantization, GPTQActOrder) {
  Int4Tensor t(16, 128, 64, 7);
  std::mt19937 gen(11);
  // Groups of 64 inputs in a random order, as GPTQ's desc_act writes them.
  std::vector<int32_t> perm(t.cols), gIdx(t.cols), uneven(t.cols), rowOrder(t.rows);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), gen);
  for (int64_t i = 0; i < t.cols; ++i) {
    gIdx[perm[i]] = static_cast<int32_t>(i / t.group);
    uneven[perm[i]] = i < 48 ? 0 : 1;
  }
  std::iota(rowOrder.begin(), rowOrder.end(), 0);
  std::shuffle(rowOrder.begin(), rowOrder.end(), gen);
  std::vector<uint32_t> qweight(t.cols / 8 * t.rows, 0), qzeros(t.cols / t.group * t.rows / 8, 0);
  for (int64_t k = 0; k < t.cols; ++k)
    for (int64_t r = 0; r < t.rows; ++r)
      qweight[k / 8 * t.rows + r] |= t.q[r * t.cols + k] << (4 * (k % 8));
  for (int64_t g = 0; g < t.cols / t.group; ++g)
    for (int64_t r = 0; r < t.rows; ++r)
      qzeros[g * t.rows / 8 + r / 8] |= t.z[g * t.rows + r] << (4 * (r % 8));
  StoreBuilder builder;
  SmallVector<int64_t> qwShape{t.cols / 8, t.rows}, zShape{t.cols / t.group, t.rows / 8},
      sShape{t.cols / t.group, t.rows};
  for (StringRef base : {"act", "uneven"}) {
    builder.addValues<uint32_t>((base + ".qweight").str(), DType::I32, qwShape, qweight);
    builder.addValues<uint32_t>((base + ".qzeros").str(), DType::I32, zShape, qzeros);
    builder.addValues<uint16_t>((base + ".scales").str(), DType::F16, sShape, t.s);
  }
  builder.addValues<int32_t>("act.g_idx", DType::I32, {t.cols}, gIdx);
  builder.addValues<int32_t>("uneven.g_idx", DType::I32, {t.cols}, uneven);
  WeightStore store;
  builder.build(store);

  Expected<GPTQGroupOrder> order =
      readGPTQGroupOrder(store, *store.lookup("act.qweight"), t.rows, t.cols);
  ASSERT_TRUE(bool(order)) << toString(order.takeError());
  ASSERT_FALSE(order->trivial);
  ASSERT_EQ(order->order.size(), static_cast<size_t>(t.cols));
  for (int64_t j = 0; j + 1 < t.cols; ++j)
    EXPECT_LE(gIdx[order->order[j]], gIdx[order->order[j + 1]]);
  for (bool rows : {false, true}) {
    WeightStore sorted;
    builder.build(sorted);
    Expected<std::string> name =
        addSortedGPTQ(sorted, *sorted.lookup("act.qweight"), t.rows, t.cols, *order,
                      rows ? ArrayRef<int32_t>(rowOrder) : ArrayRef<int32_t>());
    ASSERT_TRUE(bool(name)) << toString(name.takeError());
    EXPECT_EQ(*name, "act.act_order.qweight");
    Expected<Packed> packed = pack(sorted, {*name}, t.cols, "u4:32");
    ASSERT_TRUE(bool(packed)) << toString(packed.takeError());
    // W[n, k] = scales[g_idx[k], n] * (q[k, n] - (qzeros[g_idx[k], n] + 1)).
    std::vector<float> expected(t.rows * t.cols);
    for (int64_t n = 0; n < t.rows; ++n)
      for (int64_t j = 0; j < t.cols; ++j) {
        int64_t r = rows ? rowOrder[n] : n, k = order->order[j], g = gIdx[k];
        expected[n * t.cols + j] =
            (t.q[r * t.cols + k] - (t.z[g * t.rows + r] + 1)) * fromF16(t.s[g * t.rows + r]);
      }
    expectClose(dequantize(*packed, "u4:32", t.cols), expected);
  }
  EXPECT_EQ(toString(readGPTQGroupOrder(store, *store.lookup("uneven.qweight"), t.rows,
                                         t.cols)
                          .takeError()),
            "test.bin: tensor 'uneven.g_idx' (act-order) puts 48 inputs in group 0, not a "
            "multiple of 32: MoIR sorts the inputs by group and decodes them in blocks of 32 "
            "sharing one scale");
  EXPECT_EQ(toString(readGPTQGroupOrder(store, *store.lookup("act.qweight"), t.rows, 96)
                          .takeError()),
            "test.bin: tensor 'act.qweight' (I32 [16, 16]) must be I32 [12, 16], GPTQ's 16 "
            "outputs (a multiple of 8) by 96 inputs (a multiple of 32) / 8");
}

std::vector<uint8_t> randomFP8(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::vector<uint8_t> codes(n);
  for (uint8_t &c : codes) {
    do
      c = gen() & 0xff;
    while ((c & 0x7f) == 0x7f);
  }
  return codes;
}

TEST(Quantization, FP8Blocks) {
  // A stack of 2 experts [130, 200]: partial 128-blocks in both dimensions.
  int64_t experts = 2, rows = 130, cols = 200;
  std::vector<uint8_t> codes = randomFP8(experts * rows * cols, 7);
  std::vector<float> scales(experts * 2 * 2);
  for (size_t i = 0; i < scales.size(); ++i)
    scales[i] = 0.01f * (i + 1);
  StoreBuilder builder;
  builder.add("w.weight", DType::F8E4M3, {experts, rows, cols}, codes);
  builder.addValues<float>("w.weight_scale_inv", DType::F32, {experts, 2, 2}, scales);
  builder.add("bad.weight", DType::F8E4M3, {experts, rows, cols}, codes);
  builder.addValues<float>("bad.weight_scale_inv", DType::F32, {experts, 1, 4}, scales);
  WeightStore store;
  builder.build(store);
  Expected<Packed> packed = pack(store, {"w.weight"}, cols, "f8e4m3:8");
  ASSERT_TRUE(bool(packed)) << toString(packed.takeError());
  std::vector<float> want(codes.size());
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        int64_t i = (e * rows + r) * cols + c;
        want[i] = fromFP8E4M3(codes[i]) * scales[(e * 2 + r / 128) * 2 + c / 128];
      }
  expectClose(dequantize(*packed, "f8e4m3:8", cols), want);
  EXPECT_EQ(errorText(pack(store, {"bad.weight"}, cols, "f8e4m3:8")),
            "test.bin: tensor 'bad.weight' (F8_E4M3) has a companion 'bad.weight_scale_inv' of "
            "F32 [2, 1, 4]; expected F32 [2, 2, 2]");
  EXPECT_EQ(errorText(pack(store, {"w.weight"}, cols, "f8e4m3:40")),
            "test.bin: tensor 'w.weight' (F8_E4M3) has groups of 8 elements; the requested "
            "group 40 (f8e4m3:40) must divide it");
}

TEST(Quantization, PerChannel) {
  int64_t rows = 5, cols = 48;
  std::vector<uint8_t> fp8 = randomFP8(rows * cols, 8);
  std::vector<uint8_t> i8 = randomFP8(rows * cols, 9);
  std::vector<uint16_t> bf16Scales(rows);
  std::vector<float> f32Scales(rows);
  for (int64_t r = 0; r < rows; ++r) {
    f32Scales[r] = 0.5f + r;
    bf16Scales[r] = bit_cast<uint32_t>(f32Scales[r]) >> 16; // exact in bf16
  }
  StoreBuilder builder;
  builder.add("f.weight", DType::F8E4M3, {rows, cols}, fp8);
  builder.addValues<uint16_t>("f.weight_scale", DType::BF16, {rows, 1}, bf16Scales);
  builder.add("i.weight", DType::I8, {rows, cols}, i8);
  builder.addValues<float>("i.weight_scale", DType::F32, {rows}, f32Scales);
  builder.add("lone.weight", DType::F8E4M3, {rows, cols}, fp8);
  std::vector<uint8_t> nanCodes = fp8;
  nanCodes[cols + 5] = 0xff;
  builder.add("nan.weight", DType::F8E4M3, {rows, cols}, nanCodes);
  builder.addValues<uint16_t>("nan.weight_scale", DType::BF16, {rows, 1}, bf16Scales);
  f32Scales[3] = INFINITY;
  builder.addValues<float>("inf.weight_scale", DType::F32, {rows}, f32Scales);
  builder.add("inf.weight", DType::I8, {rows, cols}, i8);
  WeightStore store;
  builder.build(store);
  std::vector<float> wantF(rows * cols), wantI(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      wantF[r * cols + c] = fromFP8E4M3(fp8[r * cols + c]) * (0.5f + r);
      wantI[r * cols + c] = static_cast<int8_t>(i8[r * cols + c]) * (0.5f + r);
    }
  Expected<Packed> f = pack(store, {"f.weight"}, cols, "f8e4m3:48");
  ASSERT_TRUE(bool(f)) << toString(f.takeError());
  expectClose(dequantize(*f, "f8e4m3:48", cols), wantF);
  Expected<Packed> i = pack(store, {"i.weight"}, cols, "i8:16");
  ASSERT_TRUE(bool(i)) << toString(i.takeError());
  expectClose(dequantize(*i, "i8:16", cols), wantI);
  EXPECT_EQ(errorText(pack(store, {"lone.weight"}, cols, "f8e4m3:48")),
            "test.bin: tensor 'lone.weight' (F8_E4M3) needs a companion tensor "
            "'lone.weight_scale' (F32 or F16 or BF16 with 5 elements), which the checkpoint "
            "does not have");
  EXPECT_EQ(errorText(pack(store, {"nan.weight"}, cols, "f8e4m3:48")),
            "test.bin: tensor 'nan.weight' (F8_E4M3) has a NaN element at [1, 5]");
  EXPECT_EQ(errorText(pack(store, {"inf.weight"}, cols, "i8:48")),
            "test.bin: tensor 'inf.weight' (I8) has an infinite scale in row 3, group 0");
  // Stacking: two names pack as one matrix of their rows together.
  Expected<Packed> both = pack(store, {"i.weight", "i.weight"}, cols, "i8:48");
  ASSERT_TRUE(bool(both));
  EXPECT_EQ(both->data.size(), static_cast<size_t>(2 * rows * cols));
}

TEST(Quantization, FormatStrings) {
  for (StringRef text : {"u4:32", "i8:16", "f8e4m3:128", "u4:32:q4_k", "i8:16:q6_k",
                         "i8:32:q8_0", "u4:32:int4", "f8e4m3:4096:fp8", "u4:32:f16",
                         "i8:32:q8_0:f16:sym", "i8:16:q6_k:sym", "f8e4m3:32:sym"})
    EXPECT_EQ(stringifyPackedFormat(*parsePackedFormat(text)), text.str());
  for (StringRef text : {"u4", "u4:0", "u5:32", "i8:32:none", "i8:32:q4_k:x", "i8:-1",
                         "i8:32:sym:f16", "i8:32:f16:f16", "i8:32:q8_0:f16:sym:x"})
    EXPECT_FALSE(parsePackedFormat(text)) << text.str();
  // f16 scales alone: 2 bytes per group; f32 pairs: 8.
  EXPECT_EQ(getPackedBytes(*parsePackedFormat("i8:32:q8_0:f16:sym"), PackedPart::Scales, 3, 64),
            12u);
  EXPECT_EQ(getPackedBytes(*parsePackedFormat("u4:32:f16"), PackedPart::Scales, 3, 64), 24u);
  EXPECT_EQ(getPackedBytes(*parsePackedFormat("i8:16:q6_k:sym"), PackedPart::Scales, 3, 64), 48u);
  EXPECT_FALSE(isValidPackedShape(*parsePackedFormat("u4:16"), 64));
  EXPECT_TRUE(isValidPackedShape(*parsePackedFormat("i8:16"), 64));
  EXPECT_EQ(getPackedBytes(*parsePackedFormat("u4:32"), PackedPart::Data, 3, 64), 96u);
  EXPECT_EQ(getPackedBytes(*parsePackedFormat("u4:32"), PackedPart::Scales, 3, 64), 48u);
}

} // namespace
