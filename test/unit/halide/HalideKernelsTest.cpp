//===- HalideKernelsTest.cpp - the Halide kernels against plain loops -----===//
//
// The generator's algorithms with their default schedules, JIT-compiled for
// the host and run on fresh random data (a new seed every run, printed on a
// failure) against references written as plain loops in double: attention
// (causal, sliding window, several tokens at an offset), absorbed MLA, the
// router (every selection method, with exact ties) and the fused experts.
// The cache rows a query does not see hold NaN, so a kernel that read them
// fails. Odd shapes: no vector width divides the widths.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <cmath>
#include <limits>
#include <random>

using namespace moir::halide;

namespace {

using Halide::Buffer;

struct Random {
  uint64_t seed = static_cast<uint64_t>(
      std::chrono::steady_clock::now().time_since_epoch().count());
  std::mt19937_64 engine{seed};
  float next() { return std::uniform_real_distribution<float>(-1.0f, 1.0f)(engine); }
};

/// A Halide buffer of MLIR shape `shape` (outermost first), filled with
/// `fill(flat index)`.
template <typename T, typename F> Buffer<T> tensor(std::vector<int> shape, F fill) {
  std::vector<int> dims(shape.rbegin(), shape.rend());
  Buffer<T> b(dims);
  T *data = b.data();
  for (size_t i = 0; i < b.number_of_elements(); ++i)
    data[i] = fill(i);
  return b;
}

/// Compiles `spec` with its default schedule and runs it on `inputs`.
Halide::Realization run(KernelSpec spec, const std::vector<Halide::Buffer<>> &inputs,
                        std::vector<int> outShape) {
  Halide::Target target = Halide::get_host_target();
  int lanes = vectorLanes(target);
  spec.numbers["lanes"] = lanes;
  BuiltKernel k = buildKernel(spec);
  applySchedule(k, defaultScheduleFor(spec, lanes), "default schedule");
  for (size_t i = 0; i < inputs.size(); ++i)
    k.inputs[i].set(inputs[i]);
  std::vector<int> dims(outShape.rbegin(), outShape.rend());
  return k.output.realize(dims, target);
}

/// max |a - b| / max |b| over all elements; NaN or Inf anywhere fails.
void expectClose(const Buffer<float> &got, const std::vector<double> &want, uint64_t seed,
                 const char *what) {
  ASSERT_EQ(got.number_of_elements(), want.size()) << what;
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got.data()[i])) << what << ": element " << i << " seed " << seed;
    worst = std::max(worst, std::abs(got.data()[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  EXPECT_LT(worst / scale, 1e-5) << what << ": seed " << seed;
}

// Attention: 5 queries at positions 3..7 (a prefill chunk after 3 cached
// rows), 6 heads over 2 KV heads, head dims 12 (keys) and 10 (values), a
// 16-row cache whose rows past 7 hold NaN; with and without a window of 4.
TEST(HalideKernels, AttentionMatchesLoops) {
  Random rnd;
  const int T = 5, H = 6, KV = 2, D = 12, DV = 10, C = 16, first = 3;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int window : {0, 4}) {
    KernelSpec spec;
    spec.symbol = "attention";
    spec.kind = "attention";
    spec.inputs = {{ElementType::F32, {-1, H, D}}, {ElementType::F32, {C, KV, D}},
                   {ElementType::BF16, {C, KV, DV}}, {ElementType::I64, {-1}}};
    spec.outputs = {{ElementType::F32, {-1, H, DV}}};
    spec.numbers["scale"] = 0.3;
    if (window)
      spec.numbers["window"] = window;
    auto q = tensor<float>({T, H, D}, [&](size_t) { return rnd.next(); });
    auto k = tensor<float>({C, KV, D}, [&](size_t i) {
      return static_cast<int>(i / (KV * D)) <= first + T - 1 ? rnd.next() : nan;
    });
    auto v = tensor<Halide::bfloat16_t>({C, KV, DV}, [&](size_t i) {
      return Halide::bfloat16_t(static_cast<int>(i / (KV * DV)) <= first + T - 1 ? rnd.next()
                                                                                 : nan);
    });
    auto pos = tensor<int64_t>({T}, [&](size_t i) { return first + static_cast<int64_t>(i); });
    Buffer<float> out = run(spec, {q, k, v, pos}, {T, H, DV})[0];

    std::vector<double> want;
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        int g = h / (H / KV), p = first + t;
        std::vector<double> s;
        double top = -1e300;
        for (int j = 0; j <= p; ++j) {
          if (window && p - j >= window) {
            s.push_back(-1e300);
            continue;
          }
          double dot = 0;
          for (int d = 0; d < D; ++d)
            dot += q(d, h, t) * k(d, g, j);
          s.push_back(0.3 * dot);
          top = std::max(top, s.back());
        }
        double total = 0;
        for (double &x : s)
          total += x = x == -1e300 ? 0 : std::exp(x - top);
        for (int e = 0; e < DV; ++e) {
          double o = 0;
          for (int j = 0; j <= p; ++j)
            if (s[j] != 0)
              o += s[j] * static_cast<float>(v(e, g, j));
          want.push_back(o / total);
        }
      }
    expectClose(out, want, rnd.seed, window ? "attention, window 4" : "attention");
  }
}

// Absorbed MLA: 3 queries at positions 4..6, 3 heads, nope 12, rope 8,
// value 10, latent rank 24, NaN past row 6.
TEST(HalideKernels, MLAMatchesLoops) {
  Random rnd;
  const int T = 3, H = 3, N = 12, R = 8, V = 10, L = 24, C = 16, first = 4;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  KernelSpec spec;
  spec.symbol = "mla";
  spec.kind = "mla";
  spec.inputs = {{ElementType::F32, {-1, H, N}}, {ElementType::F32, {-1, H, R}},
                 {ElementType::F32, {C, L}},      {ElementType::F32, {C, R}},
                 {ElementType::I64, {-1}},        {ElementType::F32, {H * (N + V), L}}};
  spec.outputs = {{ElementType::F32, {-1, H, V}}};
  spec.numbers["scale"] = 0.25;
  auto qn = tensor<float>({T, H, N}, [&](size_t) { return rnd.next(); });
  auto qp = tensor<float>({T, H, R}, [&](size_t) { return rnd.next(); });
  auto lat = tensor<float>({C, L}, [&](size_t i) {
    return static_cast<int>(i / L) <= first + T - 1 ? rnd.next() : nan;
  });
  auto rope = tensor<float>({C, R}, [&](size_t i) {
    return static_cast<int>(i / R) <= first + T - 1 ? rnd.next() : nan;
  });
  auto pos = tensor<int64_t>({T}, [&](size_t i) { return first + static_cast<int64_t>(i); });
  auto w = tensor<float>({H * (N + V), L}, [&](size_t) { return rnd.next(); });
  Buffer<float> out = run(spec, {qn, qp, lat, rope, pos, w}, {T, H, V})[0];

  std::vector<double> want;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      int p = first + t;
      // Materialized: keys and values per head from the latent rows.
      std::vector<double> s;
      double top = -1e300;
      for (int j = 0; j <= p; ++j) {
        double dot = 0;
        for (int n = 0; n < N; ++n) {
          double key = 0;
          for (int c = 0; c < L; ++c)
            key += w(c, h * (N + V) + n) * lat(c, j);
          dot += qn(n, h, t) * key;
        }
        for (int r = 0; r < R; ++r)
          dot += qp(r, h, t) * rope(r, j);
        s.push_back(0.25 * dot);
        top = std::max(top, s.back());
      }
      double total = 0;
      for (double &x : s)
        total += x = std::exp(x - top);
      for (int e = 0; e < V; ++e) {
        double o = 0;
        for (int j = 0; j <= p; ++j) {
          double value = 0;
          for (int c = 0; c < L; ++c)
            value += w(c, h * (N + V) + N + e) * lat(c, j);
          o += s[j] * value;
        }
        want.push_back(o / total);
      }
    }
  expectClose(out, want, rnd.seed, "mla");
}

/// The routing of one token as the MLIR path computes it: repeated argmax,
/// first on ties.
void routeReference(const std::vector<double> &logits, const std::vector<double> &bias,
                    bool sigmoid, const std::string &method, int groups, int topkGroup, int k,
                    bool norm, double scaling, std::vector<double> &weights,
                    std::vector<int> &ids) {
  int E = static_cast<int>(logits.size());
  std::vector<double> score(E), choice(E);
  double top = *std::max_element(logits.begin(), logits.end()), sum = 0;
  for (int e = 0; e < E; ++e)
    sum += score[e] = sigmoid ? 1 / (1 + std::exp(-logits[e])) : std::exp(logits[e] - top);
  for (int e = 0; e < E; ++e) {
    if (!sigmoid)
      score[e] /= sum;
    choice[e] = score[e] + (bias.empty() ? 0 : bias[e]);
  }
  auto argmax = [](const std::vector<double> &v, int lo, int hi) {
    int best = lo;
    double value = -1e300;
    for (int i = lo; i < hi; ++i)
      if (v[i] > value)
        value = v[i], best = i;
    return best;
  };
  if (method != "greedy" && groups > 1) {
    int per = E / groups;
    std::vector<double> g(groups);
    for (int i = 0; i < groups; ++i) {
      int b = argmax(choice, i * per, (i + 1) * per);
      g[i] = choice[b];
      if (method == "noaux_tc") {
        std::vector<double> without = choice;
        without[b] = -1e300;
        g[i] += without[argmax(without, i * per, (i + 1) * per)];
      }
    }
    std::vector<bool> keep(groups);
    for (int n = 0; n < topkGroup; ++n) {
      int b = argmax(g, 0, groups);
      keep[b] = true;
      g[b] = -1e300;
    }
    for (int e = 0; e < E; ++e)
      if (!keep[e / per])
        choice[e] = 0;
  }
  double total = 0;
  weights.clear();
  ids.clear();
  for (int j = 0; j < k; ++j) {
    int b = argmax(choice, 0, E);
    choice[b] = -1e300;
    ids.push_back(b);
    weights.push_back(score[b]);
    total += score[b];
  }
  for (double &w : weights)
    w *= norm ? scaling / total : scaling;
}

// The router on 7 tokens, 12 experts, hidden 36: router rows 1 and 2 equal
// row 0, rows 6 and 7 equal rows 0 and 1 (exact ties across the top-k and the
// groups); every selection method.
TEST(HalideKernels, RouterMatchesLoops) {
  Random rnd;
  const int T = 7, E = 12, Hd = 36, K = 3;
  struct Case {
    const char *method;
    bool sigmoid, bias, norm;
    int groups, topkGroup;
    double scaling;
  };
  for (Case c : {Case{"greedy", false, false, true, 1, 1, 1.0},
                 Case{"group_limited", false, false, false, 3, 2, 1.5},
                 Case{"noaux_tc", true, true, true, 4, 2, 2.5}}) {
    KernelSpec spec;
    spec.symbol = "router";
    spec.kind = "router";
    spec.inputs = {{ElementType::F32, {-1, Hd}}, {ElementType::F32, {E, Hd}}};
    if (c.bias)
      spec.inputs.push_back({ElementType::F32, {E}});
    spec.outputs = {{ElementType::F32, {-1, K}}, {ElementType::I32, {-1, K}}};
    spec.numbers = {{"top_k", K},        {"sigmoid", c.sigmoid},     {"n_group", c.groups},
                    {"topk_group", c.topkGroup}, {"norm_topk_prob", c.norm}, {"scaling", c.scaling}};
    spec.strings["method"] = c.method;
    auto x = tensor<float>({T, Hd}, [&](size_t) { return rnd.next(); });
    std::vector<float> rows(E * Hd);
    for (float &r : rows)
      r = rnd.next();
    for (int e : {1, 2, 6})
      std::copy_n(rows.begin(), Hd, rows.begin() + e * Hd);
    std::copy_n(rows.begin() + Hd, Hd, rows.begin() + 7 * Hd);
    auto w = tensor<float>({E, Hd}, [&](size_t i) { return rows[i]; });
    std::vector<Halide::Buffer<>> inputs = {x, w};
    std::vector<double> biasValues;
    if (c.bias) {
      auto b = tensor<float>({E}, [&](size_t) { return 0.0f; });
      biasValues.assign(E, 0.0);
      inputs.push_back(b);
    }
    Halide::Realization r = run(spec, inputs, {T, K});
    Buffer<float> weights = r[0];
    Buffer<int32_t> ids = r[1];
    std::vector<double> want;
    for (int t = 0; t < T; ++t) {
      std::vector<double> logits(E);
      for (int e = 0; e < E; ++e) {
        // The kernel's sums run in its own order: the ties stay exact
        // because equal rows give equal sums in any one order.
        double l = 0;
        for (int h = 0; h < Hd; ++h)
          l += static_cast<double>(x(h, t)) * w(h, e);
        logits[e] = l;
      }
      std::vector<double> wt;
      std::vector<int> id;
      routeReference(logits, biasValues, c.sigmoid, c.method, c.groups, c.topkGroup, K, c.norm,
                     c.scaling, wt, id);
      for (int j = 0; j < K; ++j) {
        EXPECT_EQ(ids(j, t), id[j]) << c.method << ": token " << t << " choice " << j
                                    << ", seed " << rnd.seed;
        want.push_back(wt[j]);
      }
    }
    expectClose(weights, want, rnd.seed, c.method);
  }
}

// The fused experts on 5 tokens, 6 experts (top 2), hidden 36, FFN 20, a
// shared expert of FFN 40, bf16 expert weights, silu.
// Both variants: prefill (register tiles of rows) and decode (each row
// read start to end, four vectors of partial sums where the hidden size
// has them: 192).
void expertsMatchLoops(const std::string &variant, int Hd) {
  Random rnd;
  const int T = 5, E = 6, K = 2, F = 20, S = 40;
  KernelSpec spec;
  spec.strings["variant"] = variant;
  spec.symbol = "experts";
  spec.kind = "experts";
  spec.inputs = {{ElementType::F32, {-1, Hd}},     {ElementType::I32, {-1, K}},
                 {ElementType::F32, {-1, K}},      {ElementType::BF16, {E, F, Hd}},
                 {ElementType::BF16, {E, F, Hd}},  {ElementType::BF16, {E, Hd, F}},
                 {ElementType::F32, {S, Hd}},      {ElementType::F32, {S, Hd}},
                 {ElementType::F32, {Hd, S}}};
  spec.outputs = {{ElementType::F32, {-1, Hd}}};
  spec.strings["activation"] = "silu";
  auto x = tensor<float>({T, Hd}, [&](size_t) { return rnd.next(); });
  auto ids = tensor<int32_t>({T, K}, [&](size_t i) {
    return static_cast<int32_t>((i / K * 5 + i % K * 3 + 1) % E);
  });
  auto wts = tensor<float>({T, K}, [&](size_t) { return rnd.next(); });
  auto bf = [&](size_t) { return Halide::bfloat16_t(rnd.next()); };
  auto gate = tensor<Halide::bfloat16_t>({E, F, Hd}, bf), up = tensor<Halide::bfloat16_t>({E, F, Hd}, bf),
       down = tensor<Halide::bfloat16_t>({E, Hd, F}, bf);
  auto f = [&](size_t) { return rnd.next(); };
  auto sg = tensor<float>({S, Hd}, f), su = tensor<float>({S, Hd}, f), sd = tensor<float>({Hd, S}, f);
  Buffer<float> out = run(spec, {x, ids, wts, gate, up, down, sg, su, sd}, {T, Hd})[0];
  auto silu = [](double v) { return v / (1 + std::exp(-v)); };
  std::vector<double> want;
  for (int t = 0; t < T; ++t) {
    std::vector<double> y(Hd, 0.0);
    for (int j = 0; j < K; ++j) {
      int e = ids(j, t);
      for (int fi = 0; fi < F; ++fi) {
        double g = 0, u = 0;
        for (int h = 0; h < Hd; ++h) {
          g += x(h, t) * static_cast<float>(gate(h, fi, e));
          u += x(h, t) * static_cast<float>(up(h, fi, e));
        }
        double hidden = silu(g) * u * wts(j, t);
        for (int n = 0; n < Hd; ++n)
          y[n] += hidden * static_cast<float>(down(fi, n, e));
      }
    }
    for (int s = 0; s < S; ++s) {
      double g = 0, u = 0;
      for (int h = 0; h < Hd; ++h) {
        g += x(h, t) * sg(h, s);
        u += x(h, t) * su(h, s);
      }
      for (int n = 0; n < Hd; ++n)
        y[n] += silu(g) * u * sd(s, n);
    }
    want.insert(want.end(), y.begin(), y.end());
  }
  expectClose(out, want, rnd.seed, ("experts " + variant + " hidden " + std::to_string(Hd)).c_str());
}

TEST(HalideKernels, ExpertsMatchLoops) {
  for (const char *variant : {"prefill", "decode"})
    for (int hidden : {36, 192})
      expertsMatchLoops(variant, hidden);
}

// A linear over FP8 E4M3FN codes (packed "f8e4m3:32", one f32 scale per
// group of 32), decode and prefill kernels: the codes run through every byte
// but the two NaNs (each several times), decoded from their bits by the
// kernel; the reference decodes them with ldexp (normal (1 + m/8) 2^(e-7),
// subnormal m/8 2^-6, negative with the sign bit). Token t's activations are
// one-hot at column t, so each output is one code times its scale, checked
// on its own within f32 rounding (a wrong subnormal or sign cannot hide
// behind a larger output).
TEST(HalideKernels, LinearDecodesEveryFP8Code) {
  Random rnd;
  const int N = 37, K = 96, T = K, G = 32;
  std::vector<uint8_t> codes;
  for (int b = 0; b < 256; ++b)
    if ((b & 127) != 127)
      codes.push_back(static_cast<uint8_t>(b));
  auto fp8 = [](uint8_t b) {
    int e = (b >> 3) & 15, m = b & 7;
    double v = e ? std::ldexp(1.0 + m / 8.0, e - 7) : std::ldexp(m / 8.0, -6);
    return b & 128 ? -v : v;
  };
  for (const char *variant : {"decode", "prefill"}) {
    KernelSpec spec;
    spec.symbol = std::string("fp8_linear_") + variant;
    spec.kind = "linear";
    spec.inputs = {{ElementType::F32, {-1, K}}, {ElementType::I8, {N, K}, "f8e4m3:32"}};
    spec.scales = {{ElementType::F32, {N, K / G, 1}}};
    spec.outputs = {{ElementType::F32, {-1, N}}};
    spec.strings["variant"] = variant;
    auto x = tensor<float>({T, K}, [&](size_t i) { return i / K == i % K ? 1.0f : 0.0f; });
    size_t start = rnd.engine() % codes.size();
    auto w = tensor<int8_t>({N, K}, [&](size_t i) {
      return static_cast<int8_t>(codes[(start + i) % codes.size()]);
    });
    auto scales = tensor<float>({N, K / G, 1}, [&](size_t) { return 1.5f + rnd.next(); });
    Buffer<float> out = run(spec, {x, w, scales}, {T, N})[0];
    for (int t = 0; t < T; ++t)
      for (int n = 0; n < N; ++n) {
        uint8_t code = static_cast<uint8_t>(w(t, n));
        double want = scales(0, t / G, n) * fp8(code);
        ASSERT_LE(std::abs(out(n, t) - want), 1e-6 * std::abs(want))
            << variant << ": code 0x" << std::hex << int(code) << std::dec << " row " << n
            << " seed " << rnd.seed;
      }
  }
}

// On a device 16-bit floats are read as their bits and widened in the
// kernel (widen): every bf16 and every f16 code, against their definitions
// (f16: subnormals m * 2^-24, infinities, NaNs kept NaN with their sign).
TEST(HalideKernels, WidenDecodesEvery16BitFloat) {
  Halide::Target target = Halide::get_host_target();
  Buffer<uint16_t> bf16(65536);
  Buffer<int16_t> f16(65536);
  for (int i = 0; i < 65536; ++i) {
    bf16(i) = static_cast<uint16_t>(i);
    f16(i) = static_cast<int16_t>(static_cast<uint16_t>(i));
  }
  Halide::Var i;
  Halide::Func fromBF16, fromF16;
  fromBF16(i) = widen(bf16(i));
  fromF16(i) = widen(f16(i));
  Buffer<float> b = fromBF16.realize({65536}, target), h = fromF16.realize({65536}, target);
  auto half = [](uint32_t u) {
    int e = (u >> 10) & 31, m = u & 1023;
    double v = e == 31 ? (m ? std::numeric_limits<double>::quiet_NaN()
                            : std::numeric_limits<double>::infinity())
               : e ? std::ldexp(1.0 + m / 1024.0, e - 15)
                   : std::ldexp(m, -24);
    return u & 0x8000 ? -v : v;
  };
  for (uint32_t u = 0; u < 65536; ++u) {
    uint32_t bits = u << 16, got;
    std::memcpy(&got, &b(u), 4);
    ASSERT_EQ(got, bits) << "bf16 0x" << std::hex << u;
    double wantHalf = half(u);
    if (std::isnan(wantHalf)) {
      ASSERT_TRUE(std::isnan(h(u))) << "f16 0x" << std::hex << u;
      ASSERT_EQ(std::signbit(h(u)), (u & 0x8000) != 0) << "f16 0x" << std::hex << u;
    } else {
      ASSERT_EQ(static_cast<double>(h(u)), wantHalf) << "f16 0x" << std::hex << u;
      ASSERT_EQ(std::signbit(h(u)), (u & 0x8000) != 0) << "f16 0x" << std::hex << u;
    }
  }
}

} // namespace

// The scalar arguments of a Vulkan launch, counted from the lowered module
// (moir-halide-compile-kernels refuses a kernel past kVulkanScalarBytes):
// a kernel reading 20 float parameters passes at least their 80 bytes, and
// one reading a single parameter passes fewer than the limit. The host
// pipeline has no launch at all.
TEST(HalideKernels, CountsVulkanScalarArguments) {
  auto build = [](int params, bool device) {
    Halide::Var x("x"), xo("xo"), xi("xi");
    Halide::ImageParam in(Halide::Float(32), 1, "in");
    std::vector<Halide::Param<float>> ps;
    Halide::Expr sum = in(x);
    for (int i = 0; i < params; ++i) {
      ps.emplace_back("p" + std::to_string(i));
      sum = sum * ps.back() + Halide::cast<float>(i);
    }
    Halide::Func f("f");
    f(x) = sum;
    Halide::Target target("x86-64-linux");
    if (device) {
      f.gpu_tile(x, xo, xi, 16, Halide::TailStrategy::GuardWithIf);
      target = target.with_feature(Halide::Target::Vulkan).with_feature(Halide::Target::VulkanV13);
    }
    std::vector<Halide::Argument> args{in};
    for (auto &p : ps)
      args.push_back(p);
    std::string kernel;
    int64_t bytes = vulkanScalarArgumentBytes(
        f.compile_to_module(args, "f", target.with_feature(Halide::Target::NoRuntime)), &kernel);
    return std::make_pair(bytes, kernel);
  };
  auto [many, manyKernel] = build(20, true);
  EXPECT_GE(many, 80);
  EXPECT_GT(many, kVulkanScalarBytes);
  EXPECT_FALSE(manyKernel.empty());
  auto [one, oneKernel] = build(1, true);
  EXPECT_GE(one, 4);
  EXPECT_LE(one, kVulkanScalarBytes);
  EXPECT_EQ(build(20, false).first, 0);
}
