//===- Kernels.cpp - MoIR's ops as Halide algorithms, default schedules ---===//
//
// Each kernel is the op's math as the MLIR path computes it (f32
// arithmetic, weights widened or decoded to f32; or, for integer codes on
// the int8 path, int8 activations and i32 dot products, as MLIR's
// --cpu-int8-dot kernels), with Halide's dimension order:
// dimension 0 is the innermost (MLIR's last). Static extents from the IR
// become constraints on the buffers, so Halide specializes on them; the
// token dimension stays dynamic.
//
// The schedules are text (Schedule.cpp's language, a subset of Halide's
// scheduling calls), so the defaults written here are what
// --halide-schedules-out prints and what an edited file replaces.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

using namespace Halide;

namespace moir::halide {

/// A float input's element in f32, exactly: bf16 bits (uint16, see input)
/// shifted into an f32's, f16 bits (int16) decoded field by field
/// (subnormals, infinities and NaNs included), anything else converted.
Expr widen(Expr e) {
  if (e.type() == UInt(16))
    return reinterpret(Float(32), cast<uint32_t>(e) << 16);
  if (e.type() == Int(16)) {
    Expr u = cast<uint32_t>(reinterpret(UInt(16), e));
    Expr sign = (u & 0x8000) << 16, exponent = (u >> 10) & 0x1f, mantissa = u & 0x3ff;
    Expr normal = reinterpret(Float(32), sign | ((exponent + 112) << 23) | (mantissa << 13));
    Expr special = reinterpret(Float(32), sign | 0x7f800000u | (mantissa << 13));
    Expr tiny = cast<float>(mantissa) * (1.0f / 16777216.0f); // mantissa * 2^-24
    tiny = select(sign != 0, -tiny, tiny);
    return select(exponent == 0, tiny, select(exponent == 31, special, normal));
  }
  return cast<float>(e);
}

namespace {

Type halideType(ElementType type) {
  switch (type) {
  case ElementType::F32:
    return Float(32);
  case ElementType::BF16:
    return BFloat(16);
  case ElementType::F16:
    return Float(16);
  case ElementType::I32:
    return Int(32);
  case ElementType::I64:
    return Int(64);
  case ElementType::I8:
    return Int(8);
  }
  return Float(32);
}

[[noreturn]] void fail(const KernelSpec &spec, const std::string &what) {
  throw std::runtime_error("kernel " + spec.symbol + " (" + spec.kind + "): " + what);
}

/// The group of a packed form ("u4:32", "i8:16", "f8e4m3:128"): the number
/// after its first ':'.
int packedGroup(const std::string &form) {
  size_t colon = form.find(':');
  return colon == std::string::npos ? 0 : std::atoi(form.c_str() + colon + 1);
}

/// A buffer of `shape` (outermost first; -1 dynamic) with its static
/// extents as constraints.
ImageParam constrained(Type type, const std::vector<int64_t> &shape, const std::string &name) {
  int rank = static_cast<int>(shape.size());
  ImageParam p(type, rank, name);
  for (int d = 0; d < rank; ++d) {
    p.dim(d).set_min(0);
    if (shape[rank - 1 - d] >= 0)
      p.dim(d).set_extent(static_cast<int>(shape[rank - 1 - d]));
  }
  return p;
}

/// The type a kernel reads a float buffer of `type` as. On a device 16-bit
/// floats are read as their bits and widened by widen:
/// Halide 21's OpenCL and Vulkan back ends print bfloat16 as `half`, which
/// OpenCL refuses without cl_khr_fp16 (PoCL's CPU device has none) and
/// Vulkan reads as IEEE halves (a bf16 model's logits were off by 30x on
/// lavapipe). So a bf16 buffer is uint16 on any device, and an f16 one
/// int16 on OpenCL (Vulkan has halves). MoIR has no 16-bit integer tensors,
/// so the two types say which float the bits are. The call's descriptor
/// says the same (HalideCallBufferization.cpp, halideType).
Type bufferType(const KernelSpec &spec, ElementType type) {
  if (onHost(spec))
    return halideType(type);
  if (type == ElementType::BF16)
    return UInt(16);
  if (type == ElementType::F16 && spec.strings.at("device") == "opencl")
    return Int(16);
  return halideType(type);
}

/// Token `t`'s index into a kernel's positions: clamped to the buffer
/// where the kernel is not compiled with its default schedule
/// (spec.numbers["clamp_positions"], set by the generator for an
/// autoscheduled or edited one). Where a stage is split along the tokens
/// with a guarded tail, Halide may evaluate an RDom's predicate (attention's
/// visible rows) before the guard, so the positions are read, and
/// bounds-checked, up to the split's rounded-up extent; a decode step's one
/// token then failed the input's bounds check (the autoschedulers'
/// schedules did, with factors of 8). The clamped read is right at every
/// extent; the values it reads past the tokens feed only guarded-off lanes.
/// The default schedules never read past the tokens, and keep the plain
/// read (the clamp cost their Mixtral-shaped decode 2-4%).
bool clampsPositions(const KernelSpec &spec) {
  auto clamped = spec.numbers.find("clamp_positions");
  return clamped != spec.numbers.end() && clamped->second != 0;
}
Expr inBounds(const KernelSpec &spec, const ImageParam &positions, Expr t) {
  if (!clampsPositions(spec))
    return t;
  return clamp(t, positions.dim(0).min(), positions.dim(0).max());
}

/// An input buffer with the spec's static extents as constraints.
ImageParam input(const KernelSpec &spec, size_t index, const std::string &name) {
  if (index >= spec.inputs.size())
    fail(spec, "missing input " + std::to_string(index));
  const TensorSpec &t = spec.inputs[index];
  if (!t.packed.empty())
    fail(spec, "input " + name + " is a packed quantized weight, which this kernel reads as floats");
  return constrained(bufferType(spec, t.type), t.shape, name);
}

/// A weight as the kernels read it, in f32: a float buffer widened, or a
/// packed quantized weight (Quantization.h) decoded in place:
///   w[..., c] = scale[..., c / group] * code[..., c] + offset[..., c / group]
/// with i8 codes one per byte, u4 codes two per byte (group g of a row in
/// bytes [16g, 16g + 16): element 32g + j in byte 16g + j's low nibble,
/// 32g + 16 + j in its high one), FP8 E4M3FN codes one per byte (decoded
/// from their bits: Halide has no 8-bit float type).
struct Weight {
  ImageParam data;
  std::optional<ImageParam> scales;
  bool nibbles = false, offsets = false, fp8 = false;
  /// Decoded on a device: no half-float type (OpenCL without cl_khr_fp16).
  bool device = false;
  int group = 0;

  /// The element at `c` of the last dimension (Halide's dimension 0) and
  /// `rest` of the others, innermost first.
  Expr operator()(Expr c, std::vector<Expr> rest) const {
    std::vector<Expr> at = {c};
    at.insert(at.end(), rest.begin(), rest.end());
    if (!scales)
      return widen(data(at));
    Expr code;
    if (nibbles) {
      at[0] = (c / 32) * 16 + c % 16;
      Expr byte = cast<uint8_t>(data(at));
      code = cast<float>(select(c % 32 < 16, byte & 15, byte >> 4));
    } else if (fp8) {
      code = fp8Value(cast<uint8_t>(data(at)), device);
    } else {
      code = cast<float>(data(at));
    }
    std::vector<Expr> part = {0, c / group};
    part.insert(part.end(), rest.begin(), rest.end());
    Expr value = widen((*scales)(part)) * code;
    if (offsets) {
      part[0] = 1;
      value = value + widen((*scales)(part));
    }
    return value;
  }
  template <typename... E> Expr operator()(Expr c, E... rest) const {
    return (*this)(c, std::vector<Expr>{rest...});
  }

  /// The FP8 E4M3FN number of byte `b`, exactly: sign, 4 exponent bits
  /// (bias 7), 3 mantissa bits, exponent 0 subnormal; S.1111.111 is NaN
  /// (the format has no infinities). Its bits shifted into an f16's are that
  /// f16 times 2^8, subnormals included (f16's exponent bias is 15), so the
  /// decode is a shift and a half-float conversion (F16C); on a device,
  /// the f16's bits widened by widen.
  static Expr fp8Value(Expr b, bool device = false) {
    Expr wide = cast<uint16_t>(b);
    Expr bits = ((wide & 127) << 7) | ((wide & 128) << 8);
    Expr half = device ? widen(reinterpret(Int(16), bits)) : cast<float>(reinterpret(Float(16), bits));
    Expr value = half * 256.0f;
    return select((b & 127) == 127, std::numeric_limits<float>::quiet_NaN(), value);
  }
};

/// Input `index` read as a weight; a packed one's scales buffer goes into
/// `scales` under its index (the kernel's arguments after the inputs, see
/// withScales).
Weight weight(const KernelSpec &spec, size_t index, const std::string &name,
              std::map<size_t, ImageParam> &scales) {
  if (index >= spec.inputs.size())
    fail(spec, "missing input " + std::to_string(index));
  const TensorSpec &t = spec.inputs[index];
  Weight w;
  if (t.packed.empty()) {
    w.data = input(spec, index, name);
    return w;
  }
  size_t which = 0;
  for (size_t i = 0; i < index; ++i)
    which += !spec.inputs[i].packed.empty();
  if (which >= spec.scales.size())
    fail(spec, "no scales for packed weight " + name);
  const TensorSpec &s = spec.scales[which];
  w.nibbles = t.packed.rfind("u4:", 0) == 0;
  w.fp8 = t.packed.rfind("f8e4m3:", 0) == 0;
  w.group = packedGroup(t.packed);
  int64_t cols = t.shape.back();
  if (cols < 0 || w.group <= 0 || cols % w.group || (w.nibbles && w.group != 32) ||
      s.shape.size() != t.shape.size() + 1 || s.shape[s.shape.size() - 2] != cols / w.group ||
      (s.shape.back() != 1 && s.shape.back() != 2) ||
      (s.type != ElementType::F32 && s.type != ElementType::F16))
    fail(spec, "packed weight " + name + " (" + t.packed + ") does not fit its scales");
  w.offsets = s.shape.back() == 2;
  w.device = !onHost(spec);
  w.data = constrained(Int(8), bufferShape(t), name);
  w.scales = constrained(bufferType(spec, s.type), s.shape, name + "_scales");
  // Dense, as bound: with its strides known, Halide loads the scales of
  // neighbouring groups as one vector (the int8 path's lanes span groups).
  int stride = 1;
  for (int d = 0; d < static_cast<int>(s.shape.size()); ++d) {
    w.scales->dim(d).set_stride(stride);
    stride *= static_cast<int>(s.shape[s.shape.size() - 1 - d]);
  }
  scales.emplace(index, *w.scales);
  return w;
}

/// The activation block of input `index`'s int8 path: 32 elements (16 for
/// weights in groups of 16), as the MLIR kernels' int8 path
/// (ContractionKernels.cpp, int8Unit); 0 for a weight not on it. Fails for
/// a weight on it whose form has no block or whose depth the block does
/// not tile.
int int8Unit(const KernelSpec &spec, size_t index) {
  const TensorSpec &t = spec.inputs.at(index);
  if (!t.int8)
    return 0;
  int group = packedGroup(t.packed);
  int unit = t.packed.rfind("u4:", 0) == 0 || group % 32 == 0 ? 32 : group == 16 ? 16 : 0;
  int64_t depth = t.shape.back();
  if (!unit || depth % unit)
    fail(spec, "the int8 path needs blocks of 32 or 16 that tile the depth " +
                   std::to_string(depth));
  return unit;
}

/// Whether the int8 path's activations carry residual codes (16-bit
/// activations, MLIR's --cpu-int8-decode-bits=16): the call's `int8_bits`
/// param, 8 (the default) or 16; moir-halide-select-kernels sets 16 on
/// decode kernels only.
bool int8Residual(const KernelSpec &spec) {
  auto it = spec.numbers.find("int8_bits");
  if (it == spec.numbers.end() || it->second == 8)
    return false;
  if (it->second != 16)
    fail(spec, "int8_bits must be 8 or 16, not " + std::to_string(it->second));
  return true;
}

/// The prefix of the Funcs of x's quantized activations in the experts
/// kernel: none for the first block form its weights read, "x<unit>_" or
/// "x<unit>u4_" for another (the shared expert's, in a different form).
std::string xActivationsPrefix(int unit, bool nibbles, bool first) {
  return first ? "" : "x" + std::to_string(unit) + (nibbles ? "u4_" : "_");
}

/// Activations quantized to int8 for the integer dot products, the math of
/// the MLIR kernels' int8 path (ContractionKernels.cpp, quantizeBlock): per
/// block of `unit` elements of dimension 0 of `src`, scale d = max|x| / 127
/// and codes q = round(x * 127 / max|x|), ties to even (0 for a block of
/// zeros). For `lanes` of 4 bytes a step:
/// - codes(c, rest...): q, i8;
/// - nibble_codes(y, h, rest...): the codes in the order of a u4 row's
///   bytes: byte y's low (h = 0) or high nibble's activation;
/// - lane_bias(g, rest...): -128 times the sum of the activation codes of
///   4-byte lane g (both nibbles' for u4): the weights' codes are read as
///   unsigned bytes biased by 128 (i8 codes + 128, u4 codes | 128), which
///   vpdpbusd multiplies with the signed activations;
/// - lane_scale(g, rest...): d of lane g's block; lane_total(g, rest...):
///   d * (sum of the block's codes) / (lanes in a block), so the lanes of a
///   block add up to what the block's weight offset multiplies (the sum of
///   the quantized activations, as the MLIR kernels multiply it).
/// With `residual` (16-bit activations), each element also has a residual
/// code r = round(128 * (x * 127 / max|x| - q)), in [-64, 64] (the MLIR
/// kernels' kResidualSteps), so that x = d * (q + r / 128) to 1/256 of a
/// step:
/// - residuals(c, rest...), nibble_residuals(y, h, rest...) and
///   lane_rest_bias(g, rest...): r as codes, nibble_codes and lane_bias
///   are q;
/// - lane_scale is d / 128 (a lane's sum is 128 times the codes' dot
///   product plus the residuals'), and lane_total counts q + r / 128.
struct Int8Activations {
  int unit = 0;
  bool nibbles = false;
  bool residual = false;
  Func peak, codes, nibbleCodes, bias, laneScale, laneTotal;
  Func residuals, nibbleResiduals, residualBias;
};

Int8Activations quantizeActivations(Func src, const std::vector<Var> &rest, int unit, bool nibbles,
                                    bool residual, const std::string &prefix, BuiltKernel &k) {
  Int8Activations a;
  a.unit = unit;
  a.nibbles = nibbles;
  a.residual = residual;
  Var c("c"), u("u"), g("g"), y("y"), h("h");
  k.vars.insert({{"c", c}, {"u", u}, {"g", g}, {"y", y}, {"h", h}});
  auto at = [&](Expr first, std::vector<Expr> more = {}) {
    std::vector<Expr> args = {first};
    args.insert(args.end(), more.begin(), more.end());
    args.insert(args.end(), rest.begin(), rest.end());
    return args;
  };
  RDom r(0, unit, prefix + "ru");
  k.rvars[prefix + "ru"] = r.x;
  a.peak = Func(prefix + "x_peak");
  a.peak(at(u)) = 0.0f;
  a.peak(at(u)) = max(a.peak(at(u)), abs(src(at(u * unit + r.x))));
  Expr peak = a.peak(at(c / unit));
  Expr inverse = select(peak > 0.0f, 127.0f / peak, 0.0f);
  a.codes = Func(prefix + "x_codes");
  Expr scaled = src(at(c)) * inverse;
  a.codes(at(c)) = cast<int8_t>(round(scaled));
  if (residual) {
    a.residuals = Func(prefix + "x_residuals");
    a.residuals(at(c)) = cast<int8_t>(round((scaled - round(scaled)) * 128.0f));
    k.funcs[prefix + "x_residuals"] = a.residuals;
  }
  RDom r4(0, 4, prefix + "r4");
  k.rvars[prefix + "r4"] = r4.x;
  // A lane's 4 bytes hold 4 codes (i8) or 8 (u4: low and high nibbles).
  int perLane = nibbles ? 8 : 4;
  Expr block = g * perLane / unit;
  Expr blockPeak = a.peak(at(block));
  a.laneScale = Func(prefix + "lane_scale");
  a.laneScale(at(g)) = blockPeak / 127.0f / (residual ? 128.0f : 1.0f);
  RDom rb(0, unit, prefix + "rb");
  k.rvars[prefix + "rb"] = rb.x;
  a.laneTotal = Func(prefix + "lane_total");
  Expr codeTotal =
      cast<float>(sum(cast<int32_t>(a.codes(at(block * unit + rb.x))), prefix + "code_sum"));
  if (residual)
    codeTotal += cast<float>(sum(cast<int32_t>(a.residuals(at(block * unit + rb.x))),
                                 prefix + "residual_sum")) /
                 128.0f;
  a.laneTotal(at(g)) = blockPeak / 127.0f * codeTotal / static_cast<float>(unit / perLane);
  k.funcs.insert({{prefix + "x_peak", a.peak},
                  {prefix + "x_codes", a.codes},
                  {prefix + "lane_scale", a.laneScale},
                  {prefix + "lane_total", a.laneTotal}});
  // Codes (or residual codes) `of` in a u4 row's byte order, and their
  // lanes' biases, named `order` and `bias`.
  auto biased = [&](Func of, Func &inOrder, Func &bias, const std::string &order,
                    const std::string &biasName) {
    bias = Func(prefix + biasName);
    if (nibbles) {
      inOrder = Func(prefix + order);
      inOrder(at(y, {h})) = of(at((y / 16) * 32 + h * 16 + y % 16));
      k.funcs[prefix + order] = inOrder;
      bias(at(g)) = -128 * sum(cast<int32_t>(inOrder(at(g * 4 + r4.x, {0}))) +
                                   cast<int32_t>(inOrder(at(g * 4 + r4.x, {1}))),
                               prefix + biasName + "_sum");
    } else {
      bias(at(g)) = -128 * sum(cast<int32_t>(of(at(g * 4 + r4.x))), prefix + biasName + "_sum");
    }
    k.funcs[prefix + biasName] = bias;
  };
  biased(a.codes, a.nibbleCodes, a.bias, "nibble_codes", "lane_bias");
  if (residual)
    biased(a.residuals, a.nibbleResiduals, a.residualBias, "nibble_residuals", "lane_rest_bias");
  return a;
}

/// 4-byte lanes a step of a packed weight's int8 dot products: the most,
/// up to `lanes` (the target's f32 lanes), whose steps tile a row of
/// `bytes`.
int int8Lanes(int64_t bytes, int lanes) {
  int l = lanes;
  while (l > 1 && bytes % (4 * l) != 0)
    l /= 2;
  return l;
}

/// The int8 dot products of packed weight `w` with quantized activations:
/// dot(l, o, vars...) is lane l of step o over the row `row` of `w` (its
/// bytes [4 (o * lanes + l), + 4): for i8 codes 4 codes, for u4 codes 8,
/// both nibbles) against the activations of `act`, in i32. Halide turns
/// each 4-byte sum of unsigned byte x signed byte products into vpdpbusd
/// (AVX512-VNNI); codes are read as unsigned bytes biased by 128 (the
/// activations' lane_bias takes the 128s back). With residual codes
/// (16-bit activations), the same Func then holds 128 times that plus the
/// residuals' product, the lane_rest_bias and further update stages over
/// the same weight bytes (lane_scale is d / 128).
Func int8Dot(const std::string &name, const Weight &w, const Int8Activations &a, int lanes,
             const std::vector<Var> &vars, const std::vector<Expr> &row,
             const std::vector<Expr> &act, BuiltKernel &k) {
  Var l = k.vars.at("l"), o("o");
  k.vars["o"] = o;
  std::vector<Expr> args = {l, o};
  args.insert(args.end(), vars.begin(), vars.end());
  RDom r(0, 4, name + "_r");
  k.rvars[name + "_r"] = r.x;
  Expr byte = o * (4 * lanes) + 4 * l + r.x;
  auto with = [](Expr first, const std::vector<Expr> &rest, std::optional<Expr> second = {}) {
    std::vector<Expr> all = {first};
    if (second)
      all.push_back(*second);
    all.insert(all.end(), rest.begin(), rest.end());
    return all;
  };
  Expr stored = cast<uint8_t>(w.data(with(byte, row)));
  Func dot(name);
  dot(args) = a.bias(with(o * lanes + l, act));
  // The products of the weight bytes with `codes` (nibbles: in u4 order),
  // added to dot: one update stage (nibbles: two) that Halide turns into
  // vpdpbusd.
  auto products = [&](Func codes, Func nibbleCodes) {
    if (w.nibbles) {
      // Each nibble biased by 128 too: a code Halide can prove fits a
      // signed byte would be multiplied as one (vpmaddwd on words, not
      // vpdpbusd).
      Expr low = (stored & 15) | cast<uint8_t>(128), high = (stored >> 4) | cast<uint8_t>(128);
      dot(args) += cast<int32_t>(low) * cast<int32_t>(nibbleCodes(with(byte, act, 0)));
      dot(args) += cast<int32_t>(high) * cast<int32_t>(nibbleCodes(with(byte, act, 1)));
    } else {
      dot(args) += cast<int32_t>(stored ^ cast<uint8_t>(128)) * cast<int32_t>(codes(with(byte, act)));
    }
  };
  products(a.codes, a.nibbleCodes);
  if (a.residual) {
    // 128 times the codes' sum, then the residuals' biases and products:
    // one Func, its stages over the same weight bytes one after another.
    dot(args) = dot(args) * 128 + a.residualBias(with(o * lanes + l, act));
    products(a.residuals, a.nibbleResiduals);
  }
  k.funcs[name] = dot;
  return dot;
}

/// Lane l of step o's f32 contribution to a row's dot product: the lane's
/// integer sum times the activation block's and the weight group's scales,
/// plus the group's offset times the lane's share of the block's quantized
/// activations.
Expr int8Contribution(Func dot, const Weight &w, const Int8Activations &a, int lanes, Expr l,
                      Expr o, const std::vector<Expr> &vars, const std::vector<Expr> &row,
                      const std::vector<Expr> &act) {
  std::vector<Expr> dotArgs = {l, o};
  dotArgs.insert(dotArgs.end(), vars.begin(), vars.end());
  Expr lane = o * lanes + l;
  // The lane's weight group, written so that Halide sees one scale per
  // step (a broadcast) or a few contiguous ones (a load and a permute),
  // not a gather of one per lane.
  int perGroup = w.nibbles ? 4 : w.group / 4;
  Expr group = perGroup % lanes == 0   ? o * lanes / perGroup
               : lanes % perGroup == 0 ? o * (lanes / perGroup) + l / perGroup
                                       : lane / perGroup;
  std::vector<Expr> part = {0, group};
  part.insert(part.end(), row.begin(), row.end());
  std::vector<Expr> laneAt = {lane};
  laneAt.insert(laneAt.end(), act.begin(), act.end());
  // (With residuals the lane's sum is at most 128 * 2^18 + 2^17 for a lane
  // of 8 nibbles: exact in i32.)
  Expr value = cast<float>(dot(dotArgs)) * (a.laneScale(laneAt) * cast<float>((*w.scales)(part)));
  if (w.offsets) {
    part[0] = 1;
    value = value + cast<float>((*w.scales)(part)) * a.laneTotal(laneAt);
  }
  return value;
}

/// The kernel's arguments: `params`, then the packed weights' scales.
std::vector<ImageParam> withScales(std::vector<ImageParam> params,
                                   const std::map<size_t, ImageParam> &scales) {
  for (const auto &[index, p] : scales)
    params.push_back(p);
  return params;
}

void constrainOutput(const KernelSpec &spec, Func &out) {
  const TensorSpec &shape = spec.outputs.front();
  int rank = static_cast<int>(shape.shape.size());
  // A Tuple's other buffers follow the first's min and extent.
  OutputImageParam buffer = out.output_buffers().front();
  for (int d = 0; d < rank; ++d) {
    buffer.dim(d).set_min(0);
    int64_t extent = shape.shape[rank - 1 - d];
    if (extent >= 0)
      buffer.dim(d).set_extent(static_cast<int>(extent));
  }
}

/// Loop variable names, innermost first, of an element-wise kernel of `rank`.
std::vector<std::string> elementNames(int rank) {
  std::vector<std::string> names;
  for (int d = 0; d < rank; ++d)
    names.push_back(d == 0 ? "i" : d == rank - 1 ? "t" : "h");
  return names;
}

/// The loop variables of an element-wise kernel of `rank`, innermost first,
/// named in `k` for schedules.
std::vector<Expr> elementVars(int rank, BuiltKernel &k) {
  std::vector<Expr> all;
  for (const std::string &n : elementNames(rank)) {
    Var var(n);
    k.vars[n] = var;
    all.push_back(var);
  }
  return all;
}

Expr activation(const std::string &kind, Expr x) {
  if (kind == "silu")
    return x / (1.0f + exp(-x));
  if (kind == "sigmoid")
    return 1.0f / (1.0f + exp(-x));
  if (kind == "relu")
    return max(x, 0.0f);
  if (kind == "gelu_tanh") {
    Expr inner = x + 0.044715f * (x * x * x);
    return 0.5f * x * (1.0f + tanh(static_cast<float>(std::sqrt(2.0 / M_PI)) * inner));
  }
  throw std::runtime_error("no Halide form of the activation '" + kind + "'");
}

int64_t number(const KernelSpec &spec, const std::string &key) {
  auto it = spec.numbers.find(key);
  if (it == spec.numbers.end())
    fail(spec, "no '" + key + "'");
  return static_cast<int64_t>(it->second);
}

/// The vector-partial width of a linear kernel: the largest power of two up
/// to `lanes` that divides K, so the partial sums need no tail.
int partialLanes(int64_t k, int lanes) {
  int l = lanes;
  while (l > 1 && k % l != 0)
    l /= 2;
  return l;
}

/// The partial sums a dot product of length `k` keeps. A decode linear or
/// experts kernel (few tokens: the weights stream through once) reads each
/// weight row alone, start to end, so independent sums hide the adds'
/// latency: four vectors of them on the host. Elsewhere one vector: a
/// prefill tile's rows and tokens are the independent sums, and a device
/// thread adds serially.
///
/// With a packed quantized weight, a vector of partial sums stays within one
/// group (its scale a broadcast) and, for u4 codes, within one half of a
/// group (its codes one dense load of 16 bytes, low or high nibbles).
int sumLanes(const KernelSpec &spec, int64_t k) {
  int lanes = static_cast<int>(spec.numbers.at("lanes"));
  bool streams = (spec.kind == "experts" || spec.kind == "linear" || spec.kind == "glu_linear") &&
                 isDecode(spec);
  int want = onHost(spec) && streams ? 4 * lanes : lanes;
  // One lane of partial sums in Vulkan's experts kernel: with 16 (hidden 96,
  // FFN 160) its logits were wrong on lavapipe, with one right.
  if (!onHost(spec) && spec.kind == "experts" && spec.strings.at("device") == "vulkan")
    want = 1;
  for (const TensorSpec &t : spec.inputs)
    if (!t.packed.empty())
      want = std::min(want, t.packed[0] == 'u' ? 16 : packedGroup(t.packed));
  return partialLanes(k, want);
}

/// The lanes of a dot product over input `index` (a weight) of depth `k`:
/// a packed weight on the int8 path has lanes of 4 bytes (int8Lanes of its
/// rows' bytes), others sumLanes' f32 lanes.
int dotLanes(const KernelSpec &spec, size_t index, int64_t k) {
  const TensorSpec &w = spec.inputs.at(index);
  if (w.int8) {
    // Decode reads a row start to end: four vectors a step, independent
    // sums (as sumLanes' f32 ones).
    int lanes = static_cast<int>(spec.numbers.at("lanes"));
    return int8Lanes(w.packed[0] == 'u' ? k / 2 : k,
                     isDecode(spec) && onHost(spec) ? 4 * lanes : lanes);
  }
  return sumLanes(spec, k);
}

/// The steps of a dot product over input `index` (a weight) of depth `k`
/// in `lanes` (dotLanes): each step 4 bytes a lane on the int8 path (8
/// codes for u4, 4 for i8), one element a lane otherwise.
int dotSteps(const KernelSpec &spec, size_t index, int64_t k, int lanes) {
  const TensorSpec &w = spec.inputs.at(index);
  int64_t elements = w.int8 ? 4 * lanes * (w.packed[0] == 'u' ? 2 : 1) : lanes;
  return static_cast<int>(k / elements);
}

/// Whether a decode kernel reads the rows of input `index` one after
/// another, start to end (float weights, and packed ones on the int8 path,
/// whose steps hold four vectors of sums), rather than the rows of a tile
/// side by side inside the reduction (packed weights decoded to f32: one
/// vector of sums per row, within a group).
bool rowByRow(const KernelSpec &spec, size_t index) {
  const TensorSpec &w = spec.inputs.at(index);
  return isDecode(spec) && (w.packed.empty() || w.int8);
}

/// The bytes a decode kernel's host schedule prefetches ahead of the row it
/// reads (rowByRow) on the int8 path: 4 KB. The hardware prefetchers stop
/// at every 4 KB page; MLIR's kernels prefetch their weights by hand as
/// well. A Mixtral-shaped Q8_0 decode on this machine: 84 -> 116 tok/s.
constexpr int64_t kPrefetchBytes = 4096;

/// `.prefetch(weight, step, step, ahead, NonFaulting)` for a decode
/// kernel's loop `step` over input `index`'s row in `lanes` (dotLanes; on
/// the int8 path 4 bytes a lane): the lines kPrefetchBytes on, which run on
/// into the next rows (prefetches do not fault past a buffer's end).
/// Moir-halide-compile-kernels makes them reads into L2
/// (objectFromHalideBitcode). Only for weights on the int8 path: bf16 rows
/// prefetched so made the Mixtral-shaped bf16 decode slower (59.8 -> 56.5
/// tok/s).
std::string prefetchAhead(const KernelSpec &spec, size_t index, const std::string &weight,
                          const std::string &step, int lanes) {
  if (!spec.inputs.at(index).int8 || !rowByRow(spec, index) || !onHost(spec) || lanes <= 0)
    return "";
  int64_t ahead = std::max<int64_t>(1, kPrefetchBytes / (4 * lanes));
  return ".prefetch(" + weight + ", " + step + ", " + step + ", " + std::to_string(ahead) +
         ", NonFaulting)";
}

/// f(0, at...) + ... + f(lanes - 1, at...): a vector partial sum's lanes,
/// added in order.
Expr sumOfLanes(Func f, int lanes, const std::vector<Expr> &at) {
  auto lane = [&](int i) {
    std::vector<Expr> args = {i};
    args.insert(args.end(), at.begin(), at.end());
    return Expr(f(args));
  };
  Expr total = lane(0);
  for (int i = 1; i < lanes; ++i)
    total = total + lane(i);
  return total;
}

/// The softmax's parts over the visible rows `rc` (a predicated domain of
/// `row`) of each (h, t), from the scores score(rc, h, t) times `scale`
/// where given (else already scaled): top(h, t) their maximum, prob(rc, h,
/// t) = exp(score - top) (undefined on the rows not visible) and total(h, t)
/// their sum.
void softmaxOverRows(Func score, std::optional<float> scale, Func top, Func prob, Func total,
                     const RDom &rc, Var row, Var h, Var t) {
  Expr scaled = scale ? score(rc.x, h, t) * *scale : Expr(score(rc.x, h, t));
  top(h, t) = Float(32).min();
  top(h, t) = max(top(h, t), scaled);
  prob(row, h, t) = undef<float>();
  prob(rc.x, h, t) = exp(scaled - top(h, t));
  total(h, t) = 0.0f;
  total(h, t) += prob(rc.x, h, t);
}

/// A static extent of input `index`'s MLIR dimension `dim`.
int staticDim(const KernelSpec &spec, size_t index, size_t dim) {
  if (index >= spec.inputs.size() || dim >= spec.inputs[index].shape.size() ||
      spec.inputs[index].shape[dim] < 0)
    fail(spec, "input " + std::to_string(index) + " needs a static dimension " +
                   std::to_string(dim));
  return static_cast<int>(spec.inputs[index].shape[dim]);
}

/// 1 where `better` holds, else 0, as the summand of a count.
Expr count(Expr better) { return select(better, 1, 0); }

/// moe.fused_route: out(j, t) = {weight, expert id} of token t's j-th
/// choice, the math of the MLIR lowering (MoEToLinalg.cpp's routeToken):
/// logits = router * x (f32), softmax or sigmoid scores, the selection
/// scores with the correction bias, group-limited selection (the best
/// topk_group groups by their best score, or the sum of their two best for
/// noaux_tc; the other groups' experts score 0, as Hugging Face masks them),
/// then the top_k by score, ties to the lower expert id. Repeated argmax is
/// serial; here each expert's place is counted (how many experts beat it),
/// so every step is a data-parallel reduction a schedule can place.
void buildRouter(const KernelSpec &spec, BuiltKernel &k, Func &out) {
  if (spec.outputs[0].shape.size() != 2 || spec.outputs[0].type != ElementType::F32 ||
      spec.outputs[1].type != ElementType::I32)
    fail(spec, "needs f32 weights and i32 ids [tokens, top_k]");
  ImageParam x = input(spec, 0, "x"), w = input(spec, 1, "router");
  int hidden = staticDim(spec, 0, 1), experts = staticDim(spec, 1, 0);
  if (staticDim(spec, 1, 1) != hidden)
    fail(spec, "the router's width is not the input's");
  int topK = static_cast<int>(number(spec, "top_k"));
  int groups = static_cast<int>(number(spec, "n_group"));
  int topkGroup = static_cast<int>(number(spec, "topk_group"));
  const std::string &method = spec.strings.at("method");
  bool grouped = method != "greedy" && groups > 1;
  if (topK < 1 || topK > experts || groups < 1 || experts % groups ||
      (grouped && (topkGroup < 1 || topkGroup > groups)) ||
      spec.outputs[0].shape[1] != topK)
    fail(spec, "top_k, n_group or topk_group do not fit " + std::to_string(experts) + " experts");
  float scaling = static_cast<float>(spec.numbers.at("scaling"));
  Var e("e"), t("t"), l("l"), j("j"), g("g");
  k.vars = {{"e", e}, {"t", t}, {"l", l}, {"j", j}, {"g", g}};
  std::vector<ImageParam> params = {x, w};

  // The router product as `lanes` partial sums, like a linear's.
  int lanes = partialLanes(hidden, static_cast<int>(number(spec, "lanes")));
  RDom ko(0, hidden / lanes, "ko");
  k.rvars["ko"] = ko.x;
  Func partial("partial"), logits("logits");
  partial(l, e, t) = 0.0f;
  Expr kk = ko.x * lanes + l;
  partial(l, e, t) += x(kk, t) * widen(w(kk, e));
  RDom lr(0, lanes, "lr");
  k.rvars["lr"] = lr.x;
  logits(e, t) = sum(partial(lr.x, e, t), "lane_sum");

  Func score("score");
  RDom re(0, experts, "re");
  k.rvars["re"] = re.x;
  if (number(spec, "sigmoid")) {
    score(e, t) = 1.0f / (1.0f + exp(-logits(e, t)));
  } else {
    Func top("max_logit"), total("exp_sum");
    top(t) = maximum(logits(re.x, t), "max_of");
    total(t) = sum(exp(logits(re.x, t) - top(t)), "sum_of");
    score(e, t) = exp(logits(e, t) - top(t)) / total(t);
    k.funcs["max_logit"] = top;
    k.funcs["exp_sum"] = total;
  }
  Func choice("choice");
  if (spec.inputs.size() > 2) {
    ImageParam bias = input(spec, 2, "correction_bias");
    choice(e, t) = score(e, t) + widen(bias(e));
    params.push_back(bias);
  } else {
    choice(e, t) = score(e, t);
  }
  Func masked("masked");
  if (grouped) {
    int per = experts / groups;
    RDom rg(0, per, "rg"), rh(0, groups, "rh");
    k.rvars["rg"] = rg.x;
    k.rvars["rh"] = rh.x;
    Func best("group_best"), groupScore("group_score"), groupRank("group_rank");
    Expr member = choice(g * per + rg.x, t);
    best(g, t) = maximum(member, "group_max");
    if (method == "noaux_tc") {
      // The two best: the best, and the best of the others (the first
      // best excluded: a tie counts twice).
      Expr first = minimum(select(member == best(g, t), rg.x, per), "first_best");
      groupScore(g, t) =
          best(g, t) + maximum(select(rg.x == first, -std::numeric_limits<float>::infinity(), member),
                               "second_max");
    } else {
      groupScore(g, t) = best(g, t);
    }
    Expr other = groupScore(rh.x, t), mine = groupScore(g, t);
    groupRank(g, t) = sum(count(other > mine || (other == mine && rh.x < g)), "groups_before");
    masked(e, t) = select(groupRank(e / per, t) < topkGroup, choice(e, t), 0.0f);
    k.funcs["group_best"] = best;
    k.funcs["group_score"] = groupScore;
    k.funcs["group_rank"] = groupRank;
  } else {
    masked(e, t) = choice(e, t);
  }
  // Each expert's place: how many experts score higher (or equal with a
  // lower id). The j-th choice is the expert in place j.
  Func place("place"), picked("picked"), total("weight_sum");
  Expr other = masked(re.x, t), mine = masked(e, t);
  place(e, t) = sum(count(other > mine || (other == mine && re.x < e)), "experts_before");
  picked(j, t) = sum(select(place(re.x, t) == j, re.x, 0), "expert_in_place");
  Expr weight = score(clamp(picked(j, t), 0, experts - 1), t);
  RDom rj(0, topK, "rj");
  k.rvars["rj"] = rj.x;
  // Summed in order of the choices, as the MLIR path sums them.
  total(t) = 0.0f;
  total(t) += score(clamp(picked(rj.x, t), 0, experts - 1), t);
  Expr factor = number(spec, "norm_topk_prob") ? scaling / total(t) : Expr(scaling);
  out(j, t) = Tuple(weight * factor, picked(j, t));
  k.inputs = params;
  k.funcs.insert({{"partial", partial}, {"logits", logits}, {"score", score},
                  {"masked", masked}, {"place", place}, {"picked", picked},
                  {"weight_sum", total}});
}

/// llm.attention: out(e, h, t) = sum_c p(c) v(e, g, c) / sum_c p(c) with
/// p(c) = exp(s(c) - max s), s(c) = scale * q(., h, t) . k(., g, c), g =
/// h / (heads / kv_heads), over the cache rows c the query sees: c <=
/// positions(t) (and positions(t) - c < window). The rows it does not see
/// are never read (the cache may hold garbage there): every reduction runs
/// over one predicated domain, and the scores and probabilities are
/// defined only on it (undef elsewhere), so nothing is computed or filled
/// for the rest of the cache. Two passes over the visible rows (the
/// maximum, then the probabilities and sums), not the online softmax.
void buildAttention(const KernelSpec &spec, BuiltKernel &k, Func &out) {
  if (spec.outputs[0].shape.size() != 3)
    fail(spec, "needs [tokens, heads, head_dim]");
  ImageParam q = input(spec, 0, "query"), key = input(spec, 1, "key"),
             value = input(spec, 2, "value"), pos = input(spec, 3, "positions");
  int heads = staticDim(spec, 0, 1), dqk = staticDim(spec, 0, 2);
  int capacity = staticDim(spec, 1, 0), kvHeads = staticDim(spec, 1, 1);
  int dv = staticDim(spec, 2, 2);
  if (staticDim(spec, 1, 2) != dqk || staticDim(spec, 2, 0) != capacity ||
      staticDim(spec, 2, 1) != kvHeads || kvHeads < 1 || heads % kvHeads ||
      spec.outputs[0].shape.back() != dv)
    fail(spec, "the cache's shapes do not fit the queries");
  int group = heads / kvHeads;
  float scale = static_cast<float>(spec.numbers.at("scale"));
  Var e("e"), h("h"), t("t"), c("c");
  k.vars = {{"e", e}, {"h", h}, {"t", t}, {"c", c}};
  Expr p = cast<int>(pos(inBounds(spec, pos, t)));
  auto window = spec.numbers.find("window");
  auto visible = [&](Expr row) {
    if (window == spec.numbers.end())
      return row <= p;
    if (!clampsPositions(spec))
      return row <= p && p - row < static_cast<int>(window->second);
    // Clamped, the position is read once, in a Let: two clamped reads of it
    // in one predicate make Halide 21 repeat a name where a schedule
    // vectorizes the tokens with a guarded tail ("Simplify only works on
    // code where every name is unique").
    std::string name = Internal::unique_name("visible_position");
    Expr v = Internal::Variable::make(Int(32), name);
    return Internal::Let::make(name, p, row <= v && v - row < static_cast<int>(window->second));
  };
  // The visible rows; and (rd, rr): the head dimension (in vectors of `ld`
  // lanes) by the visible rows, the dot products' domain.
  // On a device one lane: the partial sums of a (head, token) thread span
  // the whole cache (the visible rows are a predicate, which does not
  // bound them), lanes x capacity floats of its private memory.
  int ld = partialLanes(dqk, onHost(spec) ? static_cast<int>(number(spec, "lanes")) : 1);
  RDom rc(0, capacity, "rc");
  rc.where(visible(rc.x));
  RDom dot(0, dqk / ld, 0, capacity, "dot");
  dot.where(visible(dot.y));
  k.rvars["rc"] = rc.x;
  k.rvars["rd"] = dot.x;
  k.rvars["rr"] = dot.y;
  Expr g = h / group;

  Var l("l");
  k.vars["l"] = l;
  Func partial("partial"), score("score"), top("top"), prob("prob"), total("total"), acc("acc");
  partial(l, c, h, t) = undef<float>();
  partial(l, rc.x, h, t) = 0.0f;
  Expr d = dot.x * ld + l;
  partial(l, dot.y, h, t) += widen(q(d, h, t)) * widen(key(d, g, dot.y));
  score(c, h, t) = undef<float>();
  score(rc.x, h, t) = sumOfLanes(partial, ld, {rc.x, h, t});
  softmaxOverRows(score, scale, top, prob, total, rc, c, h, t);
  acc(e, h, t) = 0.0f;
  acc(e, h, t) += prob(rc.x, h, t) * widen(value(e, g, rc.x));
  out(e, h, t) = acc(e, h, t) / total(h, t);
  k.inputs = {q, key, value, pos};
  k.funcs.insert({{"partial", partial}, {"score", score}, {"top", top}, {"prob", prob},
                  {"total", total}, {"acc", acc}});
}

/// mla.attend in the absorbed form: W_UK (kv_b_proj's first qk_nope rows of
/// each head) folded into the query, attention over the latent cache rows
/// (and the RoPE cache), W_UV (the next v_head_dim rows) applied to the
/// attended latent:
///   qa(c, h, t) = sum_n q_nope(n, h, t) W_UK[h](n, c)
///   s(j) = scale * (qa . latent(., j) + q_pe(., h, t) . rope(., j))
///   out(e, h, t) = sum_c W_UV[h](e, c) * sum_j p(j) latent(c, j) / sum_j p(j)
/// over the visible rows j, predicated as in attention (undef elsewhere).
void buildMLA(const KernelSpec &spec, BuiltKernel &k, Func &out) {
  if (spec.outputs[0].shape.size() != 3 || spec.inputs.size() != 6)
    fail(spec, "needs q_nope, q_pe, the two caches, positions and kv_b_proj");
  ImageParam qn = input(spec, 0, "q_nope"), qp = input(spec, 1, "q_pe"),
             latent = input(spec, 2, "latent_cache"), rope = input(spec, 3, "rope_cache"),
             pos = input(spec, 4, "positions"), kvb = input(spec, 5, "kv_b_proj");
  int heads = staticDim(spec, 0, 1), nope = staticDim(spec, 0, 2), ropeDim = staticDim(spec, 1, 2);
  int capacity = staticDim(spec, 2, 0), rank = staticDim(spec, 2, 1);
  int vDim = static_cast<int>(spec.outputs[0].shape.back());
  if (staticDim(spec, 1, 1) != heads || staticDim(spec, 3, 0) != capacity ||
      staticDim(spec, 3, 1) != ropeDim || staticDim(spec, 5, 1) != rank ||
      staticDim(spec, 5, 0) != heads * (nope + vDim) || vDim < 1)
    fail(spec, "the caches' or kv_b_proj's shapes do not fit the queries");
  float scale = static_cast<float>(spec.numbers.at("scale"));
  int per = nope + vDim;
  Var c("c"), e("e"), h("h"), t("t"), j("j"), l("l");
  k.vars = {{"c", c}, {"e", e}, {"h", h}, {"t", t}, {"j", j}, {"l", l}};
  Expr p = cast<int>(pos(inBounds(spec, pos, t)));
  // One lane on a device, as attention's (buildAttention).
  int lanes = onHost(spec) ? static_cast<int>(number(spec, "lanes")) : 1;

  // The query in the latent space.
  Func qa("qa");
  RDom rn(0, nope, "rn");
  k.rvars["rn"] = rn.x;
  qa(c, h, t) = 0.0f;
  qa(c, h, t) += widen(qn(rn.x, h, t)) * widen(kvb(c, h * per + rn.x));

  // Scores over the visible rows, in vector partial sums: the latent part
  // and the RoPE part (lanes that divide both widths).
  int ld = partialLanes(std::gcd(rank, ropeDim), lanes);
  RDom rc(0, capacity, "rc");
  rc.where(rc.x <= p);
  RDom dot(0, rank / ld, 0, capacity, "dot");
  dot.where(dot.y <= p);
  RDom rdot(0, ropeDim / ld, 0, capacity, "rdot");
  rdot.where(rdot.y <= p);
  k.rvars.insert({{"rc", rc.x}, {"rd", dot.x}, {"rr", dot.y}, {"pd", rdot.x}, {"pr", rdot.y}});
  Func partial("partial"), score("score"), top("top"), prob("prob"), total("total"), acc("acc");
  partial(l, j, h, t) = undef<float>();
  partial(l, rc.x, h, t) = 0.0f;
  Expr d = dot.x * ld + l;
  partial(l, dot.y, h, t) += qa(d, h, t) * widen(latent(d, dot.y));
  Expr r = rdot.x * ld + l;
  partial(l, rdot.y, h, t) += widen(qp(r, h, t)) * widen(rope(r, rdot.y));
  score(j, h, t) = undef<float>();
  score(rc.x, h, t) = sumOfLanes(partial, ld, {rc.x, h, t}) * scale;
  softmaxOverRows(score, std::nullopt, top, prob, total, rc, j, h, t);
  // The attended latent row, then W_UV in vector partial sums over it.
  acc(c, h, t) = 0.0f;
  acc(c, h, t) += prob(rc.x, h, t) * widen(latent(c, rc.x));
  Func attended("attended"), outPartial("out_partial");
  attended(c, h, t) = acc(c, h, t) / total(h, t);
  int lo = partialLanes(rank, lanes);
  RDom ro(0, rank / lo, "ro");
  k.rvars["ro"] = ro.x;
  Expr cc = ro.x * lo + l;
  outPartial(l, e, h, t) = 0.0f;
  outPartial(l, e, h, t) += widen(kvb(cc, h * per + nope + e)) * attended(cc, h, t);
  out(e, h, t) = sumOfLanes(outPartial, lo, {e, h, t});
  k.inputs = {qn, qp, latent, rope, pos, kvb};
  k.funcs.insert({{"qa", qa}, {"partial", partial}, {"score", score}, {"top", top},
                  {"prob", prob}, {"total", total}, {"acc", acc}, {"attended", attended},
                  {"out_partial", outPartial}});
}

/// The experts kernel's inputs by index, as buildExperts names them (and
/// its schedule refers to them).
const char *const kExpertsInputs[] = {"x",    "ids",         "weights",   "gate",       "up",
                                      "down", "shared_gate", "shared_up", "shared_down"};

/// moe.fused_experts on the float weight forms: out(n, t) = sum_j
/// weights(j, t) * down_e (act(gate_e x) * up_e x) (+ the shared expert's
/// FFN), e = ids(j, t), each token reading its own experts' weights (a
/// data-dependent index into the stacked weights). The routing weight
/// scales the FFN's hidden row before the down projection.
void buildExperts(const KernelSpec &spec, BuiltKernel &k, Func &out) {
  if (spec.outputs[0].shape.size() != 2)
    fail(spec, "needs a rank-2 output");
  bool shared = spec.inputs.size() == 9;
  if (spec.inputs.size() != 6 && !shared)
    fail(spec, "needs 6 inputs, or 9 with a shared expert");
  bool residual = int8Residual(spec);
  std::map<size_t, ImageParam> scales;
  const char *const *name = kExpertsInputs;
  ImageParam x = input(spec, 0, name[0]), ids = input(spec, 1, name[1]),
             routed = input(spec, 2, name[2]);
  Weight gate = weight(spec, 3, name[3], scales), up = weight(spec, 4, name[4], scales),
         down = weight(spec, 5, name[5], scales);
  int hidden = staticDim(spec, 0, 1), topK = staticDim(spec, 1, 1);
  int experts = staticDim(spec, 3, 0), ffn = staticDim(spec, 3, 1);
  if (staticDim(spec, 3, 2) != hidden || staticDim(spec, 4, 0) != experts ||
      staticDim(spec, 4, 1) != ffn || staticDim(spec, 4, 2) != hidden ||
      staticDim(spec, 5, 0) != experts || staticDim(spec, 5, 1) != hidden ||
      staticDim(spec, 5, 2) != ffn || staticDim(spec, 2, 1) != topK)
    fail(spec, "the expert weights' shapes do not fit the input");
  const std::string &act = spec.strings.at("activation");
  Var f("f"), j("j"), t("t"), n("n"), l("l"), s("s");
  k.vars = {{"f", f}, {"j", j}, {"t", t}, {"n", n}, {"l", l}, {"s", s}};
  std::vector<ImageParam> params = {x, ids, routed, gate.data, up.data, down.data};

  // The int8 path, weight by weight (gate and up together): the
  // activations each reads quantized once per call, by the weights' block.
  std::map<std::pair<int, bool>, Int8Activations> xCodes;
  auto quantizedX = [&](int unit, bool nibbles) {
    auto it = xCodes.find({unit, nibbles});
    if (it == xCodes.end())
      it = xCodes
               .emplace(std::make_pair(unit, nibbles),
                        quantizeActivations(Func(x), {t}, unit, nibbles, residual,
                                            xActivationsPrefix(unit, nibbles, xCodes.empty()), k))
               .first;
    return it->second;
  };
  // gate and up of rows `row` of `gw`/`uw` (input `index`), as `lanes`
  // partial sums each over the steps of `kr` (a Tuple: both read the same
  // x), `prefix` naming the int8 path's Funcs.
  auto gateUpProducts = [&](Func acc, size_t index, const Weight &gw, const Weight &uw,
                            std::vector<Var> vars, std::vector<Expr> row, const RDom &kr,
                            int lanes, const std::string &prefix) {
    std::vector<Expr> at = {l};
    at.insert(at.end(), vars.begin(), vars.end());
    acc(at) = Tuple(0.0f, 0.0f);
    if (int unit = int8Unit(spec, index)) {
      if (gw.nibbles != uw.nibbles || int8Unit(spec, index + 1) != unit)
        fail(spec, "gate and up take the int8 path together, with one block");
      Int8Activations a = quantizedX(unit, gw.nibbles);
      std::vector<Expr> varExprs(vars.begin(), vars.end());
      Func gd = int8Dot(prefix + "gate_dot", gw, a, lanes, vars, row, {t}, k);
      Func ud = int8Dot(prefix + "up_dot", uw, a, lanes, vars, row, {t}, k);
      acc(at) = Tuple(
          acc(at)[0] + int8Contribution(gd, gw, a, lanes, l, kr.x, varExprs, row, {t}),
          acc(at)[1] + int8Contribution(ud, uw, a, lanes, l, kr.x, varExprs, row, {t}));
    } else {
      Expr hh = kr.x * lanes + l;
      acc(at) = Tuple(acc(at)[0] + x(hh, t) * gw(hh, row), acc(at)[1] + x(hh, t) * uw(hh, row));
    }
  };

  int lh = dotLanes(spec, 3, hidden);
  RDom kh(0, dotSteps(spec, 3, hidden, lh), "kh");
  k.rvars["kh"] = kh.x;
  RDom lr(0, lh, "lr");
  k.rvars["lr"] = lr.x;
  Func expert("expert");
  expert(j, t) = clamp(ids(j, t), 0, experts - 1);
  Func gateUp("gate_up"), hiddenRow("hidden");
  gateUpProducts(gateUp, 3, gate, up, {f, j, t}, {f, expert(j, t)}, kh, lh, "");
  Expr g0 = sum(gateUp(lr.x, f, j, t)[0], "gate_sum"), u0 = sum(gateUp(lr.x, f, j, t)[1], "up_sum");
  hiddenRow(f, j, t) = activation(act, g0) * u0 * routed(j, t);

  int lf = dotLanes(spec, 5, ffn);
  RDom kf(0, dotSteps(spec, 5, ffn, lf), 0, topK, "kf");
  k.rvars["kf"] = kf.x;
  k.rvars["kj"] = kf.y;
  Func downPartial("down_partial");
  downPartial(l, n, t) = 0.0f;
  if (int unit = int8Unit(spec, 5)) {
    Int8Activations a =
        quantizeActivations(hiddenRow, {j, t}, unit, down.nibbles, residual, "hidden_", k);
    Func dd = int8Dot("down_dot", down, a, lf, {n, j, t}, {n, expert(j, t)}, {j, t}, k);
    downPartial(l, n, t) += int8Contribution(dd, down, a, lf, l, kf.x, {n, kf.y, t},
                                             {n, expert(kf.y, t)}, {kf.y, t});
  } else {
    Expr ff = kf.x * lf + l;
    downPartial(l, n, t) += hiddenRow(ff, kf.y, t) * down(ff, n, expert(kf.y, t));
  }
  RDom ld(0, lf, "ld");
  k.rvars["ld"] = ld.x;
  Expr total = sum(downPartial(ld.x, n, t), "down_sum");
  k.funcs.insert({{"expert", expert}, {"gate_up", gateUp}, {"hidden", hiddenRow},
                  {"down_partial", downPartial}});

  if (shared) {
    Weight sgate = weight(spec, 6, name[6], scales), sup = weight(spec, 7, name[7], scales),
           sdown = weight(spec, 8, name[8], scales);
    int sffn = staticDim(spec, 6, 0);
    if (staticDim(spec, 6, 1) != hidden || staticDim(spec, 7, 0) != sffn ||
        staticDim(spec, 7, 1) != hidden || staticDim(spec, 8, 0) != hidden ||
        staticDim(spec, 8, 1) != sffn)
      fail(spec, "the shared expert's shapes do not fit the input");
    Func sharedGateUp("shared_gate_up"), sharedHidden("shared_hidden"),
        sharedPartial("shared_partial");
    int lsh = dotLanes(spec, 6, hidden);
    RDom ksh(0, dotSteps(spec, 6, hidden, lsh), "ksh");
    k.rvars["ksh"] = ksh.x;
    RDom lsr(0, lsh, "lsr");
    k.rvars["lsr"] = lsr.x;
    gateUpProducts(sharedGateUp, 6, sgate, sup, {s, t}, {s}, ksh, lsh, "shared_");
    sharedHidden(s, t) = activation(act, sum(sharedGateUp(lsr.x, s, t)[0], "shared_gate_sum")) *
                         sum(sharedGateUp(lsr.x, s, t)[1], "shared_up_sum");
    int ls = dotLanes(spec, 8, sffn);
    RDom ks(0, dotSteps(spec, 8, sffn, ls), "ks");
    k.rvars["ks"] = ks.x;
    sharedPartial(l, n, t) = 0.0f;
    if (int unit = int8Unit(spec, 8)) {
      Int8Activations a =
          quantizeActivations(sharedHidden, {t}, unit, sdown.nibbles, residual, "shared_hidden_", k);
      Func sd = int8Dot("shared_down_dot", sdown, a, ls, {n, t}, {n}, {t}, k);
      sharedPartial(l, n, t) += int8Contribution(sd, sdown, a, ls, l, ks.x, {n, t}, {n}, {t});
    } else {
      Expr ss = ks.x * ls + l;
      sharedPartial(l, n, t) += sharedHidden(ss, t) * sdown(ss, n);
    }
    RDom lq(0, ls, "lq");
    k.rvars["lq"] = lq.x;
    total = total + sum(sharedPartial(lq.x, n, t), "shared_sum");
    params.insert(params.end(), {sgate.data, sup.data, sdown.data});
    k.funcs.insert({{"shared_gate_up", sharedGateUp}, {"shared_hidden", sharedHidden},
                    {"shared_partial", sharedPartial}});
  }
  out(n, t) = total;
  k.inputs = withScales(params, scales);
}

} // namespace

std::vector<int64_t> bufferShape(const TensorSpec &t) {
  std::vector<int64_t> shape = t.shape;
  if (t.packed.rfind("u4:", 0) == 0)
    shape.back() /= 2;
  return shape;
}

bool isDecode(const KernelSpec &spec) {
  auto variant = spec.strings.find("variant");
  return variant != spec.strings.end() && variant->second == "decode";
}

bool onHost(const KernelSpec &spec) {
  auto device = spec.strings.find("device");
  return device == spec.strings.end() || device->second == "host";
}

int vectorLanes(const Target &target) {
  if (target.arch == Target::X86)
    return target.has_feature(Target::AVX512) ? 16 : target.has_feature(Target::AVX) ? 8 : 4;
  if (target.arch == Target::Hexagon)
    return 32; // 128-byte HVX vectors
  return 4;
}

BuiltKernel buildKernel(const KernelSpec &spec) {
  BuiltKernel k;
  if (spec.outputs.empty())
    fail(spec, "no output");
  for (const TensorSpec &o : spec.outputs)
    if (o.shape != spec.outputs.front().shape)
      fail(spec, "the outputs must have one shape");
  size_t outputs = spec.kind == "router" ? 2 : 1;
  if (spec.outputs.size() != outputs)
    fail(spec, "needs " + std::to_string(outputs) + " output(s)");
  int rank = static_cast<int>(spec.outputs.front().shape.size());
  if (rank < 1 || rank > 3)
    fail(spec, "the output must have 1 to 3 dimensions");
  Func out("out");
  k.funcs["out"] = out;

  if (spec.kind == "rms_norm") {
    ImageParam x = input(spec, 0, "x"), w = input(spec, 1, "weight");
    int64_t d = spec.inputs[0].shape.back();
    if (d < 0)
      fail(spec, "the normalized dimension must be static");
    std::vector<std::string> names = elementNames(rank);
    std::vector<Var> v;
    for (const std::string &n : names)
      v.emplace_back(n), k.vars[n] = v.back();
    std::vector<Var> rows(v.begin() + 1, v.end());
    RDom r(0, static_cast<int>(d), "k");
    k.rvars["k"] = r.x;
    Func sumsq("sumsq");
    std::vector<Expr> at = {r.x};
    at.insert(at.end(), rows.begin(), rows.end());
    std::vector<Expr> rowArgs(rows.begin(), rows.end());
    sumsq(rowArgs) = 0.0f;
    sumsq(rowArgs) += x(at) * x(at);
    k.funcs["sumsq"] = sumsq;
    Expr inv = 1.0f / sqrt(sumsq(rowArgs) / static_cast<float>(d) +
                           static_cast<float>(spec.numbers.at("epsilon")));
    Expr weight = widen(w(v[0]));
    auto offset = spec.numbers.find("offset");
    if (offset != spec.numbers.end())
      weight = static_cast<float>(offset->second) + weight;
    std::vector<Expr> all(v.begin(), v.end());
    out(all) = (x(all) * inv) * weight;
    k.inputs = {x, w};
  } else if (spec.kind == "glu" || spec.kind == "activation") {
    bool glu = spec.kind == "glu";
    ImageParam a = input(spec, 0, glu ? "gate" : "x");
    std::vector<Expr> all = elementVars(rank, k);
    Expr value = activation(spec.strings.at("activation"), a(all));
    if (glu) {
      ImageParam up = input(spec, 1, "up");
      value = value * up(all);
      k.inputs = {a, up};
    } else {
      k.inputs = {a};
    }
    out(all) = value;
  } else if (spec.kind == "xielu") {
    // Apertus's xIELU, as moir-to-linalg lowers llm.xielu: with
    // ap = softplus(alpha_p) and an = beta + softplus(alpha_n) (torch's
    // softplus: log(1 + exp(v)), v itself above 20), ap * x^2 + beta * x for
    // x > 0, else an * (expm1(min(x, eps)) - x) + beta * x. Halide has no
    // expm1: below 1e-3 in magnitude it is its Taylor series to x^4 (within
    // 1e-13 there), else exp(m) - 1.
    ImageParam x = input(spec, 0, "x"), p = input(spec, 1, "alpha_p"),
               n = input(spec, 2, "alpha_n");
    std::vector<Expr> all = elementVars(rank, k);
    auto softplus = [](Expr v) { return select(v > 20.0f, v, log(1.0f + exp(v))); };
    float beta = static_cast<float>(spec.numbers.at("beta"));
    float eps = static_cast<float>(spec.numbers.at("eps"));
    Expr ap = softplus(widen(p(0))), an = beta + softplus(widen(n(0)));
    Expr v = x(all);
    Expr m = min(v, eps);
    Expr small = m * (1.0f + m * (0.5f + m * (1.0f / 6.0f + m * (1.0f / 24.0f))));
    Expr expm1 = select(abs(m) < 1e-3f, small, exp(m) - 1.0f);
    out(all) = select(v > 0.0f, ap * (v * v) + beta * v, (expm1 - v) * an + beta * v);
    k.inputs = {x, p, n};
  } else if (spec.kind == "add") {
    // The residual stream's sum, out = a + b: with --target=halide the
    // whole layer runs on the Halide target, its additions too.
    ImageParam a = input(spec, 0, "a"), b = input(spec, 1, "b");
    if (spec.inputs[0].shape != spec.outputs[0].shape || spec.inputs[1].shape != spec.outputs[0].shape)
      fail(spec, "the operands and the result must have one shape");
    std::vector<Expr> all = elementVars(rank, k);
    out(all) = widen(a(all)) + widen(b(all));
    k.inputs = {a, b};
  } else if (spec.kind == "embed") {
    // out(i, t) = table(i, ids(t)) (times `scale` in f32, Gemma's), an id
    // outside the table clamped into it, so a bad id cannot read out of
    // bounds (the runtime refuses such tokens before a forward).
    if (rank != 2 || spec.inputs.size() != 2 || spec.inputs[0].shape.size() != 1 ||
        spec.inputs[1].shape.size() != 2 || spec.inputs[1].shape[0] < 1)
      fail(spec, "needs ids [tokens] and a static table [vocab, hidden]");
    ImageParam ids = input(spec, 0, "ids"), table = input(spec, 1, "table");
    Var i("i"), t("t");
    k.vars = {{"i", i}, {"t", t}};
    Expr row = clamp(cast<int>(ids(t)), 0, static_cast<int>(spec.inputs[1].shape[0]) - 1);
    Expr value = widen(table(i, row));
    auto scale = spec.numbers.find("scale");
    if (scale != spec.numbers.end())
      value = value * static_cast<float>(scale->second);
    out(i, t) = value;
    k.inputs = {ids, table};
  } else if (spec.kind == "linear" || spec.kind == "glu_linear") {
    // out(n, t) = bias(n) + sum_k x(k, t) * w(k, n), the sum over k as
    // `lanes` partial sums (partial(l, n, t), k = ko * lanes + l) that a
    // schedule vectorizes, then summed across lanes. glu_linear reads x as
    // hidden(k, t) = act(gate(k, t)) * up(k, t): the GLU fused into the
    // down projection, where a schedule decides whether hidden is
    // materialized (compute_root), computed per block or recomputed inline.
    if (rank != 2)
      fail(spec, "needs a rank-2 input");
    bool fused = spec.kind == "glu_linear";
    size_t first = fused ? 2 : 1;
    Var n("n"), t("t"), l("l"), kv("k");
    k.vars = {{"n", n}, {"t", t}, {"l", l}};
    Func source;
    std::vector<ImageParam> params;
    if (fused) {
      ImageParam gate = input(spec, 0, "gate"), up = input(spec, 1, "up");
      Func hidden("hidden");
      hidden(kv, t) = activation(spec.strings.at("activation"), gate(kv, t)) * up(kv, t);
      k.funcs["hidden"] = hidden;
      k.vars["k"] = kv;
      source = hidden;
      params = {gate, up};
    } else {
      ImageParam x = input(spec, 0, "x");
      source = Func(x);
      params = {x};
    }
    std::map<size_t, ImageParam> scales;
    Weight w = weight(spec, first, "weight", scales);
    params.push_back(w.data);
    int64_t kdim = spec.inputs[0].shape.back();
    if (kdim < 0)
      fail(spec, "the reduced dimension must be static");
    int lanes = dotLanes(spec, first, kdim);
    Func partial("partial");
    partial(l, n, t) = 0.0f;
    RDom ko(0, dotSteps(spec, first, kdim, lanes), "ko");
    k.rvars["ko"] = ko.x;
    if (int unit = int8Unit(spec, first)) {
      // Integer dot products with the activations quantized to int8.
      Int8Activations a =
          quantizeActivations(source, {t}, unit, w.nibbles, int8Residual(spec), "", k);
      Func dot = int8Dot("dot", w, a, lanes, {n, t}, {n}, {t}, k);
      partial(l, n, t) += int8Contribution(dot, w, a, lanes, l, ko.x, {n, t}, {n}, {t});
    } else {
      Expr kk = ko.x * lanes + l;
      partial(l, n, t) += source(kk, t) * w(kk, n);
    }
    k.funcs["partial"] = partial;
    RDom lr(0, lanes, "lr");
    k.rvars["lr"] = lr.x;
    Expr total = sum(partial(lr.x, n, t), "lane_sum");
    if (spec.inputs.size() > first + 1) {
      ImageParam b = input(spec, first + 1, "bias");
      total = widen(b(n)) + total;
      params.push_back(b);
    }
    k.inputs = withScales(params, scales);
    out(n, t) = total;
  } else if (spec.kind == "rope") {
    if (rank != 3)
      fail(spec, "needs [tokens, heads, head_dim]");
    ImageParam x = input(spec, 0, "x"), pos = input(spec, 1, "positions");
    int64_t headDim = spec.inputs[0].shape.back();
    int64_t dim = number(spec, "dim"), half = dim / 2;
    if (headDim < 0 || dim > headDim || dim % 2 || static_cast<int64_t>(spec.table.size()) != half)
      fail(spec, "rotary dimensions do not fit the head");
    bool interleaved = number(spec, "interleaved") != 0;
    float factor = static_cast<float>(spec.numbers.at("factor"));
    Buffer<float> freq(static_cast<int>(half), "inv_freq");
    for (int64_t j = 0; j < half; ++j)
      freq(static_cast<int>(j)) = static_cast<float>(spec.table[j]);
    Var i("i"), h("h"), t("t"), j("j");
    k.vars = {{"i", i}, {"h", h}, {"t", t}, {"j", j}};
    Func angle("angle"), cosine("cosine"), sine("sine");
    angle(j, t) = cast<float>(pos(inBounds(spec, pos, t))) * freq(clamp(j, 0, static_cast<int>(half) - 1));
    cosine(j, t) = cos(angle(j, t)) * factor;
    sine(j, t) = sin(angle(j, t)) * factor;
    k.funcs["angle"] = angle;
    k.funcs["cosine"] = cosine;
    k.funcs["sine"] = sine;
    Expr first, index, partner;
    int hf = static_cast<int>(half), hd = static_cast<int>(headDim);
    if (interleaved) {
      first = i % 2 == 0;
      index = i / 2;
      partner = select(first, i + 1, i - 1);
    } else {
      first = i < hf;
      index = select(first, i, i - hf);
      partner = select(first, i + hf, i - hf);
    }
    index = clamp(index, 0, hf - 1);
    partner = clamp(partner, 0, hd - 1);
    Expr other = x(partner, h, t);
    Expr rotated = x(i, h, t) * cosine(index, t) + select(first, -other, other) * sine(index, t);
    out(i, h, t) = select(i < static_cast<int>(dim), rotated, x(i, h, t));
    k.inputs = {x, pos};
  } else if (spec.kind == "router") {
    buildRouter(spec, k, out);
  } else if (spec.kind == "experts") {
    buildExperts(spec, k, out);
  } else if (spec.kind == "attention") {
    buildAttention(spec, k, out);
  } else if (spec.kind == "mla") {
    buildMLA(spec, k, out);
  } else {
    fail(spec, "no Halide algorithm for this kind");
  }
  constrainOutput(spec, out);
  k.output = out;
  exposeAll(k);
  return k;
}

std::set<std::string> vulkanRootFuncs(const KernelSpec &spec) {
  std::set<std::string> funcs;
  if (spec.kind != "experts" || spec.inputs.size() < 6)
    return funcs;
  int64_t ffn = spec.inputs[3].shape.size() == 3 ? spec.inputs[3].shape[1] : -1;
  int64_t topK = spec.inputs[1].shape.empty() ? -1 : spec.inputs[1].shape.back();
  if (ffn > 0 && topK > 0 && ffn * topK % 16 == 0)
    funcs.insert("hidden");
  if (spec.inputs.size() == 9 && !spec.inputs[6].shape.empty() && spec.inputs[6].shape[0] > 0 &&
      spec.inputs[6].shape[0] % 16 == 0)
    funcs.insert("shared_hidden");
  return funcs;
}

namespace {

/// Threads per block along a dimension of static extent `n` (-1: dynamic).
int threads(int64_t n, int most) { return n >= 0 && n < most ? static_cast<int>(n) : most; }

/// Default schedules on a device (OpenCL, Vulkan): every Func a grid of
/// threads, tails guarded (tiles never wider than what exists), reductions
/// serial within a thread. Correct everywhere, tuned nowhere: the device
/// path's first aim is running the kernels where Halide can.
///
/// On Vulkan no Func is stored on the device between kernels: Halide 21's
/// Vulkan allocator misbinds and overruns allocations whose size is not a
/// multiple of 64 bytes on lavapipe (docs/halide.md), and a Func at the root
/// is such an allocation. So each output thread computes what it reads
/// (`compute_at(out, <x>_t)`), recomputing what threads share.
std::string deviceSchedule(const KernelSpec &spec) {
  // `late`: what names out's thread loops, after out's gpu_tile.
  std::ostringstream s, late;
  int rank = static_cast<int>(spec.outputs.front().shape.size());
  int64_t inner = spec.outputs.front().shape.back();
  int ti = threads(inner, 64);
  const bool perThread = spec.strings.at("device") == "vulkan";
  // The rows: t, or h and t fused.
  std::string rows = rank == 3 ? "ht" : "t";
  std::string fuse = rank == 3 ? ".fuse(h, t, ht)" : "";
  auto grid = [&](const std::string &func, const std::string &x, int tx) {
    if (rank == 1)
      s << func << ".gpu_tile(" << x << ", " << x << "_b, " << x << "_t, " << tx
        << ", GuardWithIf)\n";
    else
      s << func << fuse << ".gpu_tile(" << x << ", " << rows << ", " << x << "_b, " << rows
        << "_b, " << x << "_t, " << rows << "_t, " << tx << ", 1, GuardWithIf)\n";
  };
  // `func` stored at the root and computed by its own grid (`rootGrid`), or
  // on Vulkan computed in each thread of out's grid over `outX`.
  auto stored = [&](const std::string &func, const std::string &rootGrid,
                    const std::string &outX) {
    if (perThread)
      late << func << ".compute_at(out, " << outX << "_t)\n";
    else
      s << func << ".compute_root()" << rootGrid << "\n";
  };
  // `func` computed inside `consumer`'s thread (`var` its thread variable
  // at the root; on Vulkan `consumer` is itself per thread: its pure `pure`).
  auto within = [&](const std::string &func, const std::string &consumer,
                    const std::string &var, const std::string &pure) {
    s << func << ".compute_at(" << consumer << ", " << (perThread ? pure : var) << ")\n";
  };
  if (spec.kind == "rms_norm") {
    // One thread per row sums its squares.
    std::string rowFuse = rank == 3 ? ".fuse(h, t, ht)" : "";
    if (perThread) {
      late << "sumsq.compute_at(out, i_t)\n";
    } else {
      s << "sumsq.compute_root()" << rowFuse << ".gpu_tile(" << rows << ", " << rows << "_b, "
        << rows << "_t, 64, GuardWithIf)\n";
      s << "sumsq.update()" << rowFuse << ".gpu_tile(" << rows << ", " << rows << "_b, "
        << rows << "_t, 64, GuardWithIf)\n";
    }
    grid("out", "i", ti);
  } else if (spec.kind == "glu" || spec.kind == "activation" || spec.kind == "add" ||
             spec.kind == "embed" || spec.kind == "xielu") {
    grid("out", "i", ti);
  } else if (spec.kind == "rope") {
    // On Vulkan the angles are inline.
    int64_t half = static_cast<int64_t>(spec.table.size());
    if (!perThread)
      for (const char *f : {"cosine", "sine"})
        s << f << ".compute_root().gpu_tile(j, t, j_b, t_b, j_t, t_t, " << threads(half, 64)
          << ", 1, GuardWithIf)\n";
    grid("out", "i", ti);
  } else if (spec.kind == "router") {
    // A thread per (expert, token) for each step, a thread per token for
    // the per-token sums, a thread per choice for the output.
    int64_t experts = spec.inputs[1].shape[0];
    auto perExpert = [&](const std::string &func, const std::string &var, int64_t extent) {
      std::ostringstream g;
      g << ".gpu_tile(" << var << ", t, " << var << "_b, t_b, " << var << "_t, t_t, "
        << threads(extent, 64) << ", 1, GuardWithIf)";
      stored(func, g.str(), "j");
    };
    auto perToken = [&](const std::string &func) {
      stored(func, ".gpu_tile(t, t_b, t_t, 64, GuardWithIf)", "j");
    };
    perExpert("logits", "e", experts);
    within("partial", "logits", "e_t", "e");
    if (!spec.numbers.count("sigmoid") || !spec.numbers.at("sigmoid")) {
      perToken("max_logit");
      perToken("exp_sum");
    }
    perExpert("score", "e", experts);
    if (spec.strings.count("method") && spec.strings.at("method") != "greedy" &&
        spec.numbers.count("n_group") && spec.numbers.at("n_group") > 1) {
      int64_t groups = static_cast<int64_t>(spec.numbers.at("n_group"));
      perExpert("group_score", "g", groups);
      perExpert("group_rank", "g", groups);
    }
    perExpert("masked", "e", experts);
    perExpert("place", "e", experts);
    perExpert("picked", "j", spec.outputs[0].shape.back());
    perToken("weight_sum");
    if (!perThread)
      s << "weight_sum.update().gpu_tile(t, t_b, t_t, 64, GuardWithIf)\n";
    grid("out", "j", threads(spec.outputs[0].shape.back(), 64));
  } else if (spec.kind == "experts") {
    // A thread per hidden row of each (choice, token), then a thread per
    // output; the reductions serial within a thread. On Vulkan too, where
    // the hidden rows' buffer is a multiple of 64 bytes (vulkanRootFuncs:
    // moir-halide-select-kernels takes no other experts there): computed
    // inside each output thread instead, the logits were wrong on lavapipe
    // at hidden 256 and 1024.
    int64_t ffn = spec.inputs[3].shape[1];
    std::set<std::string> root = vulkanRootFuncs(spec);
    auto hidden = [&](const std::string &func, const std::string &grid,
                      const std::string &gateUp, const std::string &var) {
      if (perThread && !root.count(func)) {
        stored(func, grid, "n");
        within(gateUp, func, var + "_t", var);
      } else {
        s << func << ".compute_root()" << grid << "\n";
        s << gateUp << ".compute_at(" << func << ", " << var << "_t)\n";
      }
    };
    std::ostringstream g;
    g << ".fuse(j, t, jt).gpu_tile(f, jt, f_b, jt_b, f_t, jt_t, " << threads(ffn, 64)
      << ", 1, GuardWithIf)";
    hidden("hidden", g.str(), "gate_up", "f");
    if (spec.inputs.size() == 9) {
      std::ostringstream sg;
      sg << ".gpu_tile(s, t, s_b, t_b, s_t, t_t, " << threads(spec.inputs[6].shape[0], 64)
         << ", 1, GuardWithIf)";
      hidden("shared_hidden", sg.str(), "shared_gate_up", "s");
    }
    s << "out.gpu_tile(n, t, n_b, t_b, n_t, t_t, " << ti << ", 1, GuardWithIf)\n";
    s << "down_partial.compute_at(out, n_t)\n";
    if (spec.inputs.size() == 9)
      s << "shared_partial.compute_at(out, n_t)\n";
  } else if (spec.kind == "attention" || spec.kind == "mla") {
    // A thread per (head, token) does the whole softmax over the rows it
    // sees, serially: the dot products, the maximum, the probabilities and
    // their sum, then the head dimension's weighted sums (MLA: W_UK folded
    // into the query first, W_UV applied last). Everything is computed
    // inside that thread, so nothing is stored at the root (Vulkan too);
    // the threads are the heads times the tokens.
    s << "out.fuse(h, t, ht).gpu_tile(ht, ht_b, ht_t, " << threads(-1, 16) << ", GuardWithIf)\n";
    std::vector<std::string> funcs = {"partial", "score", "top", "prob", "total", "acc"};
    if (spec.kind == "mla")
      funcs.insert(funcs.end(), {"qa", "attended", "out_partial"});
    for (const std::string &f : funcs)
      s << f << ".compute_at(out, ht_t)\n";
  } else if (spec.kind == "linear" || spec.kind == "glu_linear") {
    // On Vulkan the GLU is inline in the dot products.
    if (spec.kind == "glu_linear" && !perThread)
      s << "hidden.compute_root().gpu_tile(k, t, k_b, t_b, k_t, t_t, "
        << threads(spec.inputs[0].shape.back(), 64) << ", 1, GuardWithIf)\n";
    // A thread per output: its dot product, lanes of partial sums serial.
    s << "out.gpu_tile(n, t, n_b, t_b, n_t, t_t, " << ti << ", 1, GuardWithIf)\n";
    s << "partial.compute_at(out, n_t)\n";
  }
  return s.str() + late.str();
}

} // namespace

/// The int8 path's schedule: the activations `prefix`* quantized once per
/// call, in parallel over tokens (`outer`), codes `c` in vectors of `lanes`
/// where the depth `depth` has them.
void int8ActivationSchedule(std::ostream &s, const std::string &prefix, bool nibbles,
                            bool residual, const std::string &outer, int64_t depth, int lanes) {
  s << prefix << "x_peak.compute_root().parallel(" << outer << ")\n";
  s << prefix << "x_peak.update().parallel(" << outer << ")\n";
  auto codes = [&](const char *f) {
    s << prefix << f << ".compute_root()";
    if (depth % lanes == 0)
      s << ".vectorize(c, " << lanes << ")";
    s << ".parallel(" << outer << ")\n";
  };
  codes("x_codes");
  if (residual)
    codes("x_residuals");
  for (const char *f : {"lane_scale", "lane_total"})
    s << prefix << f << ".compute_root().parallel(" << outer << ")\n";
  if (nibbles)
    s << prefix << "nibble_codes.compute_root().parallel(" << outer << ")\n";
  s << prefix << "lane_bias.compute_root().parallel(" << outer << ")\n";
  if (residual) {
    if (nibbles)
      s << prefix << "nibble_residuals.compute_root().parallel(" << outer << ")\n";
    s << prefix << "lane_rest_bias.compute_root().parallel(" << outer << ")\n";
  }
}

/// The int8 path's dot products `name` computed at `consumer`'s loop `at`
/// (a row of its register tile): each 4-byte lane's reduction vectorized
/// inside the vector of lanes, which Halide turns into vpdpbusd.
void int8DotSchedule(std::ostream &s, const std::string &name, const std::string &consumer,
                     const std::string &at, bool nibbles, bool residual) {
  s << name << ".compute_at(" << consumer << ", " << at << ").vectorize(l)\n";
  int products = nibbles ? 2 : 1;
  for (int stage = 0; stage < products; ++stage)
    s << name << ".update(" << stage << ").atomic().vectorize(" << name << "_r).vectorize(l)\n";
  if (!residual)
    return;
  // With residual codes: the stage that scales the codes' sums by 128 and
  // adds the residuals' biases, then the residuals' products.
  s << name << ".update(" << products << ").vectorize(l)\n";
  for (int stage = products + 1; stage <= 2 * products; ++stage)
    s << name << ".update(" << stage << ").atomic().vectorize(" << name << "_r).vectorize(l)\n";
}

bool nibbles(const TensorSpec &t) { return t.packed.rfind("u4:", 0) == 0; }

/// Whether the target sums a vector's lanes as a vector reduction
/// (spec.numbers["vector_sums"], set by the generator).
bool vectorSums(const KernelSpec &spec) {
  auto it = spec.numbers.find("vector_sums");
  return it != spec.numbers.end() && it->second != 0;
}

std::string defaultScheduleFor(const KernelSpec &spec, int lanes) {
  if (!onHost(spec))
    return deviceSchedule(spec);
  bool residual = int8Residual(spec);
  std::ostringstream s;
  int rank = static_cast<int>(spec.outputs.front().shape.size());
  int64_t inner = spec.outputs.front().shape.back();
  // Vectorize by the lanes only where the innermost extent has them.
  int v = inner < 0 || inner >= lanes ? lanes : 1;
  if (spec.kind == "rms_norm") {
    std::string row = rank == 3 ? "h" : "t";
    s << "sumsq.compute_at(out, " << row << ")\n";
    if (v > 1)
      s << "out.vectorize(i, " << v << ")\n";
    if (rank >= 2)
      s << "out.parallel(t)\n";
  } else if (spec.kind == "glu" || spec.kind == "activation" || spec.kind == "add" ||
             spec.kind == "embed" || spec.kind == "xielu") {
    if (v > 1)
      s << "out.vectorize(i, " << v << ")\n";
    if (rank >= 2)
      s << "out.parallel(t)\n";
  } else if (spec.kind == "linear" || spec.kind == "glu_linear") {
    if (spec.kind == "glu_linear") {
      // The GLU's output materialized once, in parallel over tokens, as the
      // unfused ops would (docs/halide.md measures the other choices).
      s << "hidden.compute_root()";
      if (spec.inputs[0].shape.back() >= lanes)
        s << ".vectorize(k, " << lanes << ")";
      s << ".parallel(t)\n";
    }
    int64_t n = inner;
    size_t weight = spec.kind == "linear" ? 1 : 2;
    int64_t depth = spec.inputs[0].shape.back();
    int l = dotLanes(spec, weight, depth);
    bool int8 = spec.inputs[weight].int8;
    bool rowWise = rowByRow(spec, weight);
    if (int8) {
      int8ActivationSchedule(s, "", nibbles(spec.inputs[weight]), residual, "t", depth, lanes);
      int8DotSchedule(s, "dot", "partial", rowWise ? "ko" : "n", nibbles(spec.inputs[weight]),
                      residual);
    }
    bool decode = isDecode(spec);
    // Rows of the weight per register tile and per parallel task.
    int rows = n >= 0 && n < 4 ? static_cast<int>(n) : 4;
    int block = n >= 0 && n < 64 ? rows : 64;
    if (decode) {
      // Few tokens: every weight row is read once per token, start to end
      // (one stream of memory through a block of rows, not a stream per
      // row of a register tile), as a dot product of `l`-wide partial sums.
      int tile = n >= 0 && n < 8 ? rows : 8;
      block = n >= 0 && n < 64 ? tile : 64;
      s << "out.split(n, nb, nr, " << block << ").split(nr, no, ni, " << tile
        << ").reorder(ni, no, t, nb).parallel(nb)\n";
      s << "partial.compute_at(out, no)" << (l > 1 ? ".vectorize(l)" : "") << "\n";
      // Over packed weights decoded to f32, one vector of partial sums per
      // row (within a group): the tile's rows, unrolled inside the
      // reduction, are the independent sums.
      if (!rowWise)
        s << "partial.update().reorder(l, n, ko, t)" << (l > 1 ? ".vectorize(l)" : "")
          << ".unroll(n)\n";
      else
        s << "partial.update().reorder(l, ko, n, t)" << (l > 1 ? ".vectorize(l)" : "")
          << prefetchAhead(spec, weight, "weight", "ko", l) << "\n";
    } else {
      // Prefill: tiles of 4 rows x 4 tokens keep 16 partial vectors in
      // registers; a parallel task holds `block` weight rows in cache while
      // it walks every token.
      s << "out.split(n, nb, nr, " << block << ").split(nr, no, ni, " << rows
        << ").split(t, to, ti, 4).reorder(ni, ti, no, to, nb).parallel(nb)\n";
      s << "partial.compute_at(out, no)" << (l > 1 ? ".vectorize(l)" : "") << "\n";
      s << "partial.update().reorder(l, n, t, ko)" << (l > 1 ? ".vectorize(l)" : "")
        << ".unroll(n).unroll(t)\n";
    }
    // The lanes added up inside vectors (a shuffle tree), not one by one.
    if (l > 1 && vectorSums(spec))
      s << "lane_sum.update().atomic().vectorize(lr)\n";
  } else if (spec.kind == "router") {
    // Per token: the router product (a dot product per expert, vector
    // partial sums), then the scoring, selection and weights, all small.
    int l = partialLanes(spec.inputs[0].shape.back(), static_cast<int>(spec.numbers.at("lanes")));
    s << "out.parallel(t)\n";
    s << "partial.compute_at(out, t)" << (l > 1 ? ".vectorize(l)" : "") << "\n";
    s << "partial.update().reorder(l, ko, e, t)" << (l > 1 ? ".vectorize(l)" : "") << "\n";
    std::vector<std::string> perToken = {"logits", "score", "masked", "place", "picked",
                                         "weight_sum"};
    if (!spec.numbers.at("sigmoid"))
      perToken.insert(perToken.begin() + 1, {"max_logit", "exp_sum"});
    if (spec.strings.at("method") != "greedy" && spec.numbers.at("n_group") > 1)
      perToken.insert(perToken.end() - 4, {"group_best", "group_score", "group_rank"});
    for (const std::string &f : perToken)
      s << f << ".compute_at(out, t)\n";
  } else if (spec.kind == "experts") {
    // The hidden rows (gate, up, activation, scaled by the routing weight)
    // for every choice, in parallel blocks of FFN rows, 4 rows a tile; then
    // the down projection and the sum over the choices in parallel blocks
    // of output rows, 8 a tile. In decode each row's weights are read start
    // to end, one row after another, as a decode linear's; in prefill a
    // tile's rows are register tiles that share each load of x.
    int64_t hidden = spec.inputs[0].shape.back();
    int lf = dotLanes(spec, 5, spec.inputs[3].shape[1]);
    // The int8 path's activations: x once per block form (gate/up and the
    // shared expert's, named as buildExperts names them), then each
    // expert's and the shared expert's hidden rows.
    std::set<std::pair<int, bool>> xForms;
    for (size_t i : {size_t(3), size_t(6)}) {
      int unit = i < spec.inputs.size() ? int8Unit(spec, i) : 0;
      bool u4 = unit && nibbles(spec.inputs[i]);
      if (unit && xForms.insert({unit, u4}).second)
        int8ActivationSchedule(s, xActivationsPrefix(unit, u4, xForms.size() == 1), u4, residual,
                               "t", hidden, lanes);
    }
    auto blocks = [](int64_t extent, int tile, int block) {
      int t = extent < tile ? static_cast<int>(extent) : tile;
      int b = extent < block ? t : block;
      return std::make_pair(t, b);
    };
    // A dot product's update stage: the reduction `k` inside the rows `v`
    // (decode), or the rows unrolled inside it (prefill); `last`, a loop
    // outermost in both.
    auto dot = [&](const std::string &func, size_t weight, const std::string &k,
                   const std::string &v, const std::string &outer, int lanes,
                   const std::string &last = "") {
      std::string vec = lanes > 1 ? ".vectorize(l)" : "";
      std::string tail = last.empty() ? "" : ", " + last;
      // (Over packed weights decoded to f32, one vector of partial sums per
      // row: decode unrolls the rows inside the reduction too, for
      // independent sums.)
      if (rowByRow(spec, weight)) {
        s << func << ".update().reorder(l, " << k << ", " << v << ", " << outer << tail << ")"
          << vec;
        // Its weights (gate and up together) prefetched ahead.
        for (size_t w = weight; w < weight + (func.find("gate_up") != std::string::npos ? 2 : 1);
             ++w)
          s << prefetchAhead(spec, w, kExpertsInputs[w], k, lanes);
        s << "\n";
      }
      else
        s << func << ".update().reorder(l, " << v << ", " << outer << ", " << k << tail << ")"
          << vec << ".unroll(" << v << ")\n";
    };
    // `prefix`hidden's rows `v` (of `extent`) over the loops `outer`:
    // parallel blocks, tiles, its gate/up products inside.
    auto hiddenRows = [&](const std::string &prefix, const std::string &v,
                          const std::string &outer, int64_t extent) {
      auto [tile, block] = blocks(extent, 4, 64);
      s << prefix << "hidden.compute_root().split(" << v << ", " << v << "b, " << v << "r, "
        << block << ").split(" << v << "r, " << v << "o, " << v << "i, " << tile << ").reorder("
        << v << "i, " << v << "o, " << outer << ", " << v << "b).parallel(" << v << "b)\n";
      size_t gate = prefix.empty() ? 3 : 6;
      int lg = dotLanes(spec, gate, hidden);
      s << prefix << "gate_up.compute_at(" << prefix << "hidden, " << v << "o)"
        << (lg > 1 ? ".vectorize(l)" : "") << "\n";
      std::string k = prefix.empty() ? "kh" : "ksh";
      dot(prefix + "gate_up", gate, k, v, outer, lg);
      if (spec.inputs[gate].int8)
        for (const char *d : {"gate_dot", "up_dot"})
          int8DotSchedule(s, prefix + d, prefix + "gate_up", rowByRow(spec, gate) ? k : v,
                          nibbles(spec.inputs[gate]), residual);
    };
    hiddenRows("", "f", "j, t", spec.inputs[3].shape[1]);
    if (spec.inputs.size() == 9)
      hiddenRows("shared_", "s", "t", spec.inputs[6].shape[0]);
    if (spec.inputs[5].int8) {
      int8ActivationSchedule(s, "hidden_", nibbles(spec.inputs[5]), residual, "t",
                             spec.inputs[3].shape[1], lanes);
      int8DotSchedule(s, "down_dot", "down_partial", rowByRow(spec, 5) ? "kf" : "n",
                      nibbles(spec.inputs[5]), residual);
    }
    if (spec.inputs.size() == 9 && spec.inputs[8].int8) {
      int8ActivationSchedule(s, "shared_hidden_", nibbles(spec.inputs[8]), residual, "t",
                             spec.inputs[6].shape[0], lanes);
      int8DotSchedule(s, "shared_down_dot", "shared_partial", rowByRow(spec, 8) ? "ks" : "n",
                      nibbles(spec.inputs[8]), residual);
    }
    auto [nt, nb] = blocks(inner, 8, 64);
    s << "out.split(n, nb, nr, " << nb << ").split(nr, no, ni, " << nt
      << ").reorder(ni, no, t, nb).parallel(nb)\n";
    s << "down_partial.compute_at(out, no)" << (lf > 1 ? ".vectorize(l)" : "") << "\n";
    dot("down_partial", 5, "kf", "n", "t", lf, "kj");
    // Each row's lanes added up inside vectors (a shuffle tree).
    auto laneSums = [&](std::initializer_list<const char *> sums, const char *lane, int lanes) {
      if (lanes > 1 && vectorSums(spec))
        for (const char *sum : sums)
          s << sum << ".update().atomic().vectorize(" << lane << ")\n";
    };
    laneSums({"gate_sum", "up_sum"}, "lr", dotLanes(spec, 3, hidden));
    laneSums({"down_sum"}, "ld", lf);
    if (spec.inputs.size() == 9) {
      int ls = dotLanes(spec, 8, spec.inputs[6].shape[0]);
      s << "shared_partial.compute_at(out, no)" << (ls > 1 ? ".vectorize(l)" : "") << "\n";
      dot("shared_partial", 8, "ks", "n", "t", ls);
      laneSums({"shared_gate_sum", "shared_up_sum"}, "lsr", dotLanes(spec, 6, hidden));
      laneSums({"shared_sum"}, "lq", ls);
    }
  } else if (spec.kind == "attention") {
    // A parallel task per (head, token): its scores (a dot product per
    // visible row), maximum, probabilities and sums, the value rows summed
    // as vectors over the head dimension (lanes that divide it: no tail).
    int ve = partialLanes(inner, lanes);
    std::string vec = ve > 1 ? ".vectorize(e, " + std::to_string(ve) + ")" : "";
    s << "out.fuse(h, t, ht).parallel(ht)" << vec << "\n";
    int ld = partialLanes(spec.inputs[0].shape.back(), lanes);
    std::string vl = ld > 1 ? ".vectorize(l)" : "";
    for (const char *f : {"partial", "score", "top", "prob", "total", "acc"})
      s << f << ".compute_at(out, ht)\n";
    s << "partial.update(0)" << (ld > 1 ? ".vectorize(l)" : ".serial(rc)") << "\n";
    s << "partial.update(1).reorder(l, rd, rr)" << vl << "\n";
    s << "acc" << vec << "\nacc.update().reorder(e, rc)" << vec << "\n";
  } else if (spec.kind == "mla") {
    // A parallel task per (head, token), as attention's; the latent rows
    // (rank wide) are the vectors.
    int rank = static_cast<int>(spec.inputs[2].shape.back());
    int ropeDim = static_cast<int>(spec.inputs[1].shape.back());
    int ld = partialLanes(std::gcd(rank, ropeDim), lanes);
    int lc = partialLanes(rank, lanes);
    std::string vl = ld > 1 ? ".vectorize(l)" : "";
    std::string vc = lc > 1 ? ".vectorize(c, " + std::to_string(lc) + ")" : "";
    s << "out.fuse(h, t, ht).parallel(ht)\n";
    for (const char *f : {"qa", "partial", "score", "top", "prob", "total", "acc", "attended",
                          "out_partial"})
      s << f << ".compute_at(out, ht)\n";
    s << "qa" << vc << "\nqa.update().reorder(c, rn)" << vc << "\n";
    s << "partial.update(0)" << (ld > 1 ? ".vectorize(l)" : ".serial(rc)") << "\n";
    s << "partial.update(1).reorder(l, rd, rr)" << vl << "\n";
    s << "partial.update(2).reorder(l, pd, pr)" << vl << "\n";
    s << "acc" << vc << "\nacc.update().reorder(c, rc)" << vc << "\n";
    s << "attended" << vc << "\n";
    s << "out_partial" << (lc > 1 ? ".vectorize(l)" : "") << "\n";
    s << "out_partial.update().reorder(l, e, ro)" << (lc > 1 ? ".vectorize(l)" : "") << "\n";
  } else if (spec.kind == "rope") {
    s << "angle.compute_at(out, t)\n";
    s << "cosine.compute_at(out, t)\n";
    s << "sine.compute_at(out, t)\n";
    if (v > 1)
      s << "out.vectorize(i, " << v << ")\n";
    s << "out.parallel(t)\n";
  }
  return s.str();
}

/// Halide's name made a C++ identifier, as the autoschedulers print it
/// ("ko$x" -> "ko_x").
std::string identifierOf(const std::string &name) {
  std::string s = name;
  for (char &c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0])))
    s = "_" + s;
  return s;
}

/// The name a schedule uses for Halide's `name`: an identifier, without
/// the "$N" Halide appends to make an inline reduction's name unique in
/// the process (a kernel built twice has "down_sum", then "down_sum$1").
std::string stableName(const std::string &name) {
  size_t dollar = name.rfind('$');
  if (dollar != std::string::npos && dollar + 1 < name.size() &&
      name.find_first_not_of("0123456789", dollar + 1) == std::string::npos)
    return identifierOf(name.substr(0, dollar));
  return identifierOf(name);
}

void exposeAll(BuiltKernel &k) {
  std::set<std::string> funcs, vars;
  for (const auto &[key, f] : k.funcs)
    funcs.insert(f.name());
  for (const auto &[key, v] : k.vars)
    vars.insert(v.name());
  for (const auto &[key, v] : k.rvars)
    vars.insert(v.name());
  std::map<std::string, Internal::Function> env =
      Internal::build_environment({k.output.function()});
  for (const auto &[name, function] : env) {
    Func f(function);
    if (funcs.insert(name).second)
      k.funcs.emplace(stableName(name), f);
    for (const Var &v : f.args())
      if (vars.insert(v.name()).second)
        k.vars.emplace(stableName(v.name()), v);
    for (int u = 0; u < f.num_update_definitions(); ++u)
      for (const RVar &r : f.rvars(u))
        if (vars.insert(r.name()).second)
          k.rvars.emplace(stableName(r.name()), r);
  }
}

} // namespace moir::halide
