//===- Kernels.cpp - MoIR's ops as Halide algorithms, default schedules ---===//
//
// Each kernel is the op's math as the MLIR path computes it (f32
// arithmetic, weights widened to f32), with Halide's dimension order:
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

#include <cmath>
#include <sstream>
#include <stdexcept>

using namespace Halide;

namespace moir::halide {
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
  }
  return Float(32);
}

[[noreturn]] void fail(const KernelSpec &spec, const std::string &what) {
  throw std::runtime_error("kernel " + spec.symbol + " (" + spec.kind + "): " + what);
}

/// An input buffer with the spec's static extents as constraints.
ImageParam input(const KernelSpec &spec, size_t index, const std::string &name) {
  if (index >= spec.inputs.size())
    fail(spec, "missing input " + std::to_string(index));
  const TensorSpec &t = spec.inputs[index];
  ImageParam p(halideType(t.type), static_cast<int>(t.shape.size()), name);
  int rank = static_cast<int>(t.shape.size());
  for (int d = 0; d < rank; ++d) {
    p.dim(d).set_min(0);
    int64_t extent = t.shape[rank - 1 - d];
    if (extent >= 0)
      p.dim(d).set_extent(static_cast<int>(extent));
  }
  return p;
}

void constrainOutput(const KernelSpec &spec, Func &out) {
  int rank = static_cast<int>(spec.output.shape.size());
  for (int d = 0; d < rank; ++d) {
    out.output_buffer().dim(d).set_min(0);
    int64_t extent = spec.output.shape[rank - 1 - d];
    if (extent >= 0)
      out.output_buffer().dim(d).set_extent(static_cast<int>(extent));
  }
}

/// Loop variable names, innermost first, of an element-wise kernel of `rank`.
std::vector<std::string> elementNames(int rank) {
  std::vector<std::string> names;
  for (int d = 0; d < rank; ++d)
    names.push_back(d == 0 ? "i" : d == rank - 1 ? "t" : "h");
  return names;
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

} // namespace

int vectorLanes(const Target &target) {
  if (target.arch == Target::X86)
    return target.has_feature(Target::AVX512) ? 16 : target.has_feature(Target::AVX) ? 8 : 4;
  if (target.arch == Target::Hexagon)
    return 32; // 128-byte HVX vectors
  return 4;
}

BuiltKernel buildKernel(const KernelSpec &spec) {
  BuiltKernel k;
  int rank = static_cast<int>(spec.output.shape.size());
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
    Expr weight = cast<float>(w(v[0]));
    auto offset = spec.numbers.find("offset");
    if (offset != spec.numbers.end())
      weight = static_cast<float>(offset->second) + weight;
    std::vector<Expr> all(v.begin(), v.end());
    out(all) = (x(all) * inv) * weight;
    k.inputs = {x, w};
  } else if (spec.kind == "glu" || spec.kind == "activation") {
    bool glu = spec.kind == "glu";
    ImageParam a = input(spec, 0, glu ? "gate" : "x");
    std::vector<std::string> names = elementNames(rank);
    std::vector<Expr> all;
    for (const std::string &n : names) {
      Var var(n);
      k.vars[n] = var;
      all.push_back(var);
    }
    Expr value = activation(spec.strings.at("activation"), a(all));
    if (glu) {
      ImageParam up = input(spec, 1, "up");
      value = value * up(all);
      k.inputs = {a, up};
    } else {
      k.inputs = {a};
    }
    out(all) = value;
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
    ImageParam w = input(spec, first, "weight");
    params.push_back(w);
    int64_t kdim = spec.inputs[0].shape.back();
    if (kdim < 0)
      fail(spec, "the reduced dimension must be static");
    int lanes = partialLanes(kdim, static_cast<int>(number(spec, "lanes")));
    RDom ko(0, static_cast<int>(kdim / lanes), "ko");
    k.rvars["ko"] = ko.x;
    Func partial("partial");
    partial(l, n, t) = 0.0f;
    Expr kk = ko.x * lanes + l;
    partial(l, n, t) += source(kk, t) * cast<float>(w(kk, n));
    k.funcs["partial"] = partial;
    RDom lr(0, lanes, "lr");
    k.rvars["lr"] = lr.x;
    Expr total = sum(partial(lr.x, n, t), "lane_sum");
    if (spec.inputs.size() > first + 1) {
      ImageParam b = input(spec, first + 1, "bias");
      total = cast<float>(b(n)) + total;
      params.push_back(b);
    }
    k.inputs = params;
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
    angle(j, t) = cast<float>(pos(t)) * freq(clamp(j, 0, static_cast<int>(half) - 1));
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
  } else {
    fail(spec, "no Halide algorithm for this kind");
  }
  constrainOutput(spec, out);
  k.output = out;
  return k;
}

namespace {

/// Threads per block along a dimension of static extent `n` (-1: dynamic).
int threads(int64_t n, int most) { return n >= 0 && n < most ? static_cast<int>(n) : most; }

/// Default schedules on a device (OpenCL, Vulkan): every Func a grid of
/// threads, tails guarded (tiles never wider than what exists), reductions
/// serial within a thread. Correct everywhere, tuned nowhere: the device
/// path's first aim is running the kernels where Halide can.
std::string deviceSchedule(const KernelSpec &spec) {
  std::ostringstream s;
  int rank = static_cast<int>(spec.output.shape.size());
  int64_t inner = spec.output.shape.back();
  int ti = threads(inner, 64);
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
  if (spec.kind == "rms_norm") {
    // One thread per row sums its squares.
    std::string rowFuse = rank == 3 ? ".fuse(h, t, ht)" : "";
    s << "sumsq.compute_root()" << rowFuse << ".gpu_tile(" << rows << ", " << rows << "_b, "
      << rows << "_t, 64, GuardWithIf)\n";
    s << "sumsq.update()" << rowFuse << ".gpu_tile(" << rows << ", " << rows << "_b, " << rows
      << "_t, 64, GuardWithIf)\n";
    grid("out", "i", ti);
  } else if (spec.kind == "glu" || spec.kind == "activation") {
    grid("out", "i", ti);
  } else if (spec.kind == "rope") {
    int64_t half = static_cast<int64_t>(spec.table.size());
    for (const char *f : {"cosine", "sine"})
      s << f << ".compute_root().gpu_tile(j, t, j_b, t_b, j_t, t_t, " << threads(half, 64)
        << ", 1, GuardWithIf)\n";
    grid("out", "i", ti);
  } else if (spec.kind == "linear" || spec.kind == "glu_linear") {
    if (spec.kind == "glu_linear")
      s << "hidden.compute_root().gpu_tile(k, t, k_b, t_b, k_t, t_t, "
        << threads(spec.inputs[0].shape.back(), 64) << ", 1, GuardWithIf)\n";
    // A thread per output: its dot product, lanes of partial sums serial.
    s << "out.gpu_tile(n, t, n_b, t_b, n_t, t_t, " << ti << ", 1, GuardWithIf)\n";
    s << "partial.compute_at(out, n_t)\n";
  }
  return s.str();
}

} // namespace

std::string defaultScheduleFor(const KernelSpec &spec, int lanes) {
  auto device = spec.strings.find("device");
  if (device != spec.strings.end() && device->second != "host")
    return deviceSchedule(spec);
  std::ostringstream s;
  int rank = static_cast<int>(spec.output.shape.size());
  int64_t inner = spec.output.shape.back();
  // Vectorize by the lanes only where the innermost extent has them.
  int v = inner < 0 || inner >= lanes ? lanes : 1;
  if (spec.kind == "rms_norm") {
    std::string row = rank == 3 ? "h" : "t";
    s << "sumsq.compute_at(out, " << row << ")\n";
    if (v > 1)
      s << "out.vectorize(i, " << v << ")\n";
    if (rank >= 2)
      s << "out.parallel(t)\n";
  } else if (spec.kind == "glu" || spec.kind == "activation") {
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
    int64_t n = spec.output.shape.back();
    int l = partialLanes(spec.inputs[0].shape.back(), static_cast<int>(spec.numbers.at("lanes")));
    bool decode = spec.strings.count("variant") && spec.strings.at("variant") == "decode";
    // Rows of the weight per register tile and per parallel task.
    int rows = n >= 0 && n < 4 ? static_cast<int>(n) : 4;
    int block = n >= 0 && n < 64 ? rows : 64;
    if (decode) {
      // Few tokens: every weight row is read once per token, as a dot
      // product of `l`-wide partial sums; 8 rows share each load of x.
      int tile = n >= 0 && n < 8 ? rows : 8;
      block = n >= 0 && n < 64 ? tile : 64;
      s << "out.split(n, nb, nr, " << block << ").split(nr, no, ni, " << tile
        << ").reorder(ni, no, t, nb).parallel(nb)\n";
      s << "partial.compute_at(out, no)" << (l > 1 ? ".vectorize(l)" : "") << "\n";
      s << "partial.update().reorder(l, n, t, ko)" << (l > 1 ? ".vectorize(l)" : "")
        << ".unroll(n)\n";
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

} // namespace moir::halide
