//===- Quantization.h - quantized weights, decoded and packed ---*- C++ -*-===//
//
// Every quantized weight format MoIR reads (GGUF's block types, FP8 with
// block or channel scales, INT8 per channel, AWQ and GPTQ INT4) executes in
// one of three packed forms the generated kernels read. A matrix [rows,
// cols] (rows: outputs; cols: inputs, the contraction's k) is split, row by
// row, into groups of `group` consecutive elements; each element is a code
// and each group has one scale and one offset:
//
//   w[r, c] = scale[r, c / group] * value(code[r, c]) + offset[r, c / group]
//
// (symmetric forms store no offsets: they are zero).
//
// Storage of the codes ("data"), rows one after another:
//   U4      group 32; group g of a row occupies bytes [16g, 16g + 16): byte
//           16g + j holds element 32g + j in its low nibble and element
//           32g + 16 + j in its high nibble; value = the nibble (0..15).
//   I8      one signed byte per element; value = the byte (-128..127).
//   F8E4M3  one FP8 E4M3FN byte per element; value = the FP8 number.
// Scales ("scales"), rows one after another: per group the scale then the
// offset, i.e. an array [rows, cols / group, 2]; symmetric forms ("sym":
// Q8_0, Q6_K, FP8, INT8 per channel) hold the scale alone, [rows, cols /
// group, 1]. The numbers are f32, or f16 ("f16") where every scale and
// offset of the source is an f16 number (GGUF's Q4_0, Q4_1, Q5_0, Q5_1 and
// Q8_0: their d and m are f16, and -8d, -16d are exact unless they
// overflow, which the packer refuses). Decode reads these bytes per token:
// f32 pairs cost Q8_0 25% more than its 34-byte blocks, f16 scales alone
// nothing.
//
// Superblock scales ("k": GGUF's K-quants Q4_K, Q5_K, Q6_K) keep the
// two-level form the K-quants store: per superblock of 256 elements of a
// row, P f16 numbers (P = 2: d and -dmin; P = 1, symmetric: d) and then,
// part after part, one signed byte per group (the 6-bit scales and mins of
// Q4_K/Q5_K, Q6_K's int8 scales), an array [rows, cols / 256, P * (2 + 256
// / group)] of bytes:
//
//   part p of group g = f16(bytes [2p, 2p + 2) of superblock g / (256 /
//     group)) * int8(byte 2P + p * (256 / group) + g % (256 / group))
//
// which is the f32 product llama.cpp's dequantizers form (d * sc). Q4_K
// reads 20 bytes of scales per 256 elements in it, 64 as f32 pairs; Q6_K
// 18, 64 as f32 scales.
//
// A stack of matrices (experts) is packed matrix after matrix, i.e. as one
// matrix of sum(rows) rows.
//
// Weights are converted one tensor at a time at compile time (never at
// load), from the mapped checkpoint straight into the artifact.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_FRONTEND_QUANTIZATION_H
#define MOIR_FRONTEND_QUANTIZATION_H

#include "moir/Frontend/WeightStore.h"

#include "llvm/ADT/STLFunctionalExtras.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace moir::frontend {

enum class PackedStorage { U4, I8, F8E4M3 };

/// Quantizes float tensors at compile time (moirc --weight-type=...).
/// Q8_0, Q4_K and Q6_K produce llama.cpp's block bytes (the packer then
/// reads them as it reads a GGUF file's); Int4 is asymmetric 4-bit with
/// one scale and offset per 32 (U4); FP8 is E4M3 with one scale per row.
enum class CompileQuant { None, Q8_0, Q4_K, Q6_K, Int4, FP8 };
std::optional<CompileQuant> parseCompileQuant(llvm::StringRef text);
llvm::StringRef stringifyCompileQuant(CompileQuant quant);

struct PackedFormat {
  PackedStorage storage = PackedStorage::I8;
  int64_t group = 32;
  /// How a float source is quantized first (None: float sources are an
  /// error).
  CompileQuant quantize = CompileQuant::None;
  /// Scales (and offsets) stored as f16, not f32.
  bool halfScales = false;
  /// Each group has an offset (false: symmetric, the scale alone).
  bool offsets = true;
  /// Superblock scales (K-quants): f16 numbers per 256 elements times a
  /// signed byte per group; halfScales is then false.
  bool superblocks = false;

  bool operator==(const PackedFormat &other) const {
    return storage == other.storage && group == other.group && quantize == other.quantize &&
           halfScales == other.halfScales && offsets == other.offsets &&
           superblocks == other.superblocks;
  }
  /// Numbers per group in the scales (2: scale and offset; 1: the scale).
  int64_t scaleParts() const { return offsets ? 2 : 1; }
  /// Bytes of one scale number (per-group forms).
  int64_t scaleBytes() const { return halfScales ? 2 : 4; }
  /// Bytes of one superblock's scales (superblock forms).
  int64_t superblockBytes() const { return scaleParts() * (2 + kSuperblock / group); }
  /// Bytes of one row's scales for `cols` columns.
  int64_t getScaleRowBytes(int64_t cols) const {
    return superblocks ? cols / kSuperblock * superblockBytes()
                       : cols / group * scaleParts() * scaleBytes();
  }

  /// Elements of a superblock.
  static constexpr int64_t kSuperblock = 256;
};

/// The two arguments a packed weight is bound as.
enum class PackedPart { Data, Scales };

/// The (scale, offset) of group `g` of a row whose packed scales start at
/// `rowScales` (the offset 0 in symmetric forms).
std::pair<float, float> readPackedParams(PackedFormat format, const uint8_t *rowScales,
                                         int64_t g);

/// "u4:32", "i8:16", "f8e4m3:128", "u4:32:q4_k" (quantize as Q4_K first),
/// "u4:32:f16" (f16 scales), "i8:32:q8_0:f16:sym" (f16 scales, no offsets),
/// "u4:32:q4_k:k" (superblock scales), "i8:16:q6_k:sym:k".
std::string stringifyPackedFormat(PackedFormat format);
std::optional<PackedFormat> parsePackedFormat(llvm::StringRef text);

/// Bytes of one row's codes: cols / 2 for U4, cols otherwise.
int64_t getPackedRowBytes(PackedFormat format, int64_t cols);

/// Whether `format` can hold a matrix of `cols` columns: the group divides
/// cols, U4's group is 32, and superblock forms have whole superblocks of
/// groups that fit a byte's index.
bool isValidPackedShape(PackedFormat format, int64_t cols);

/// Writes one part of `names` (tensors of `store`, each a matrix or a stack
/// of matrices with `cols` columns; the logical shape, not the stored one:
/// AWQ stores its matrices transposed and packed in int32) converted to
/// `format`, to `sink`, piece by piece (never the whole tensor at once).
/// A float tensor is first quantized as `format.quantize` asks. The
/// companions a stored format needs (scales, zero points, g_idx) are found
/// in `store` by the format's own naming:
///   F8_E4M3 `<name>`: `<name>_scale_inv` F32 [..., ceil(rows/128),
///     ceil(cols/128)] (DeepSeek-V3 blocks; the natural group is
///     gcd(128, cols)), else `<name>_scale` F32/BF16/F16 with one value per
///     row (fbgemm_fp8; group cols);
///   I8 `<name>`: `<name>_scale` as above (group cols);
///   I32 `<base>.qweight`: AWQ (GEMM) or GPTQ (v1) 4-bit with `<base>.qzeros`,
///     `<base>.scales` and, for GPTQ, an optional `<base>.g_idx` (which must
///     be the trivial k / group map: act-order weights are packed from their
///     sorted form, addSortedGPTQ's). GPTQ is told from
///     AWQ by g_idx or by the qweight's shape ([cols / 8, rows] vs AWQ's
///     [cols, rows / 8]);
///   I32 `<module>.weight_packed`: compressed-tensors' pack-quantized 4- or
///     8-bit codes ([rows, cols / 8] or [rows, cols / 4], from the lowest
///     bits, each its signed value + 8 or + 128) with `<module>.weight_scale`
///     [rows, groups] and, asymmetric, `<module>.weight_zero_point` I32
///     [ceil(rows / 8 or 4), groups] (packed along the rows, offset too);
///     w = scale * (q - zero), zero 0 when there is no zero-point tensor.
/// The natural group of a GGUF type is 32 (16 for Q6_K). `format.group` must
/// divide the source's natural group (each (scale, offset) is then repeated)
/// and the codes must fit the storage (Q5_*, Q6_K, Q8_0 need I8); superblock
/// forms read K-quant sources (stored, or quantized as Q4_K / Q6_K) in their
/// natural group. Every value
/// is written little-endian. Errors read "<file>: tensor '<name>' (<TYPE>)
/// ..." and say what is missing or malformed (NaN/Inf scales included).
llvm::Error packWeights(const WeightStore &store, llvm::ArrayRef<std::string> names,
                        int64_t cols, PackedFormat format, PackedPart part,
                        llvm::function_ref<void(llvm::StringRef)> sink);

/// GPTQ's activation order (desc_act): `<base>.g_idx` puts input k of a
/// GPTQ weight in group g_idx[k], and a group's inputs need not be
/// contiguous.
struct GPTQGroupOrder {
  /// order[j]: the input at sorted position j (stable by group; the
  /// identity when `trivial`).
  std::vector<int32_t> order;
  /// blockGroup[b]: the group of sorted inputs [32 b, 32 b + 32).
  std::vector<int32_t> blockGroup;
  /// Whether g_idx is already k / group_size (no act-order).
  bool trivial = true;
};

/// Reads `<base>.g_idx` of the GPTQ weight `qweight` (`<base>.qweight`,
/// [cols / 8, rows]) against `<base>.scales` ([groups, rows]). Errors name
/// the file and tensor: a missing or malformed g_idx, a group out of range,
/// and (act-order only) a group whose input count is not a multiple of 32,
/// which sorted blocks of 32 sharing one scale cannot hold.
llvm::Expected<GPTQGroupOrder> readGPTQGroupOrder(const WeightStore &store,
                                                  const TensorInfo &qweight, int64_t rows,
                                                  int64_t cols);

/// Adds `<base>.act_order.{qweight,scales,qzeros}` to `store` as derived
/// tensors (made when packed, one at a time): the GPTQ weight with its
/// inputs in `in.order` (as stored when `in.trivial`), groups of 32, and
/// its output rows taken in `rowOrder` (empty: as stored). packWeights
/// reads them as a GPTQ weight with the trivial g_idx; the consumer gathers
/// its input by `in.order`. Returns the derived qweight's name (the first
/// call's for the same weight again; an error when the checkpoint itself
/// has a tensor of that name).
llvm::Expected<std::string> addSortedGPTQ(WeightStore &store, const TensorInfo &qweight,
                                          int64_t rows, int64_t cols,
                                          const GPTQGroupOrder &in,
                                          llvm::ArrayRef<int32_t> rowOrder);

/// compressed-tensors' one scale for a whole tensor (the FP8 preset's
/// `<name>_scale` [1]) repeated once per row: the derived tensor the importer
/// adds and the packer reads in its place.
inline std::string perRowScaleName(llvm::StringRef scale) { return (scale + ".rows").str(); }

/// Whether dequantizeTensor reads `dtype`: F32, F16, BF16 and the GGUF block
/// types.
bool canDequantize(DType dtype);
/// Tensor `info`'s values as f32 in element order (`out` holds all its
/// elements): floats converted, GGUF blocks decoded as packWeights decodes
/// them, w = scale * code + offset per group in f32. `info` must have a type
/// canDequantize accepts and bytes that match its shape.
void dequantizeTensor(const WeightStore &store, const TensorInfo &info,
                      llvm::MutableArrayRef<float> out);

/// Bytes `packWeights` writes for `rows` rows of `cols` columns.
uint64_t getPackedBytes(PackedFormat format, PackedPart part, int64_t rows, int64_t cols);

} // namespace moir::frontend

#endif // MOIR_FRONTEND_QUANTIZATION_H
