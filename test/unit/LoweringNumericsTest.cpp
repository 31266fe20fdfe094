//===- LoweringNumericsTest.cpp - lowered ops against references -----------===//
//
// Each MoIR op is compiled alone through the CPU backend's real path
// (lowering, bufferization, LLVM, shared object), loaded, and run on fresh
// random data (a new seed every run, printed on failure); its outputs are
// compared with a naive C++ reference written from the op's documented
// semantics (an independent algorithm where one exists: MLA is checked in
// its materialized form against the latent-space lowering).
//
//===----------------------------------------------------------------------===//

#include "../support/NumericCheck.h"
#include "TestContext.h"
#include "moir/Frontend/FloatBits.h"
#include "moir/InitAll.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Target/Host/Host.h"
#include "moir/Target/TargetBackend.h"
#include "moir/runtime.h"

#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <dlfcn.h>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sys/syscall.h>
#include <unistd.h>

using namespace mlir;

namespace {

/// An argument of the compiled function: a buffer (data + shape) or an index.
struct Arg {
  void *data = nullptr;
  std::vector<int64_t> shape;
  int64_t index = 0;
  bool isIndex = false;
};

/// Compiles `source` (a module with @forward) and calls its entry.
class Kernel {
public:
  /// `int8Dot`: integer-coded packed weights on the int8 dot products
  /// (prefill and decode)
  /// where the host has them.
  /// `bf16Dot`: bf16 weights on the AVX512-BF16 dot products; `amx`: and
  /// their prefill products on AMX tiles where the host has them.
  /// `decodeBits`: the int8 decode activations' precision (8, or 16 with
  /// residual codes).
  explicit Kernel(const std::string &source, bool int8Dot = false, bool bf16Dot = false,
                  bool amx = false, int64_t decodeBits = 8) {
    auto context = moir::test::makeContext();
    OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(source, context.get());
    if (!module) {
      error = "parse failed";
      return;
    }
    // The CPU backend's linalg and llvm phases (the op alone: no graph
    // phase), f32 arithmetic in the kernels.
    moir::registerAllTargets();
    const moir::TargetBackend *cpu = llvm::cantFail(moir::lookupTargetBackend("cpu"));
    moir::CompileOptions options;
    options.cpu.bf16Dot = bf16Dot;
    options.cpu.amx = amx;
    options.cpu.int8Dot = int8Dot;
    options.cpu.int8Decode = int8Dot ? "all" : "none";
    options.cpu.int8DecodeBits = decodeBits;
    PassManager pm(context.get());
    for (moir::CompilePhase phase : {moir::CompilePhase::Linalg, moir::CompilePhase::LLVM})
      if (llvm::Error err = moir::buildPhasePipeline(pm, *cpu, phase, options)) {
        error = llvm::toString(std::move(err));
        return;
      }
    if (failed(pm.run(*module))) {
      error = "lowering failed";
      return;
    }
    auto so = moir::host::emitSharedObject(*module, {});
    if (!so) {
      error = llvm::toString(so.takeError());
      return;
    }
    llvm::SmallString<128> path;
    int fd;
    llvm::sys::fs::createTemporaryFile("moir-test", "so", fd, path);
    {
      llvm::raw_fd_ostream os(fd, true);
      os << *so;
    }
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    llvm::sys::fs::remove(path);
    if (!handle) {
      error = dlerror();
      return;
    }
    // As the runtime does for code on AMX tiles: Linux grants the tiles'
    // state only when asked.
    usesTiles = dlsym(handle, "moir_uses_amx") != nullptr;
    if (usesTiles) {
#ifdef SYS_arch_prctl
      if (syscall(SYS_arch_prctl, kArchRequestPermission, kTileData) != 0)
#endif
      {
        error = "the kernel refused the AMX tile state";
        return;
      }
    }
    entry = reinterpret_cast<void (*)(void **)>(dlsym(handle, "moir_forward"));
  }
  static constexpr int kArchRequestPermission = 0x1023, kTileData = 18;
  ~Kernel() {
    if (handle)
      dlclose(handle);
  }
  bool ok() const { return entry != nullptr; }
  std::string error;
  /// The code runs on AMX tiles (exports moir_uses_amx).
  bool usesTiles = false;

  void run(std::vector<Arg> args) {
    std::vector<std::vector<int64_t>> words(args.size());
    std::vector<void *> argv(args.size());
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i].isIndex) {
        argv[i] = &args[i].index;
        continue;
      }
      size_t rank = args[i].shape.size();
      std::vector<int64_t> &w = words[i];
      w.assign(3 + 2 * rank, 0);
      w[0] = w[1] = reinterpret_cast<int64_t>(args[i].data);
      int64_t stride = 1;
      for (size_t d = rank; d-- > 0;) {
        w[3 + d] = args[i].shape[d];
        w[3 + rank + d] = stride;
        stride *= args[i].shape[d];
      }
      argv[i] = w.data();
    }
    entry(argv.data());
  }

private:
  void *handle = nullptr;
  void (*entry)(void **) = nullptr;
};

class LoweringNumericsTest : public ::testing::Test {
protected:
  LoweringNumericsTest() : seed(std::random_device{}()), rng(seed) {
    // The compiled code resolves the thread pool from the runtime library.
    (void)moir_status_name(MOIR_OK);
  }
  std::vector<float> random(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (float &x : v)
      x = dist(rng);
    return v;
  }
  /// @forward: llm.linear of [?, K] f32 activations by [N, K] bf16 weights.
  static std::string bf16Linear(int N, int K) {
    std::string ks = std::to_string(K), ns = std::to_string(N);
    std::string act = "tensor<?x" + ks + "xf32>", wt = "tensor<" + ns + "x" + ks + "xbf16>",
                out = "tensor<?x" + ns + "xf32>";
    return "func.func @forward(%x: " + act + ", %w: " + wt + ") -> " + out + " {\n" +
           "  %y = llm.linear %x, %w : (" + act + ", " + wt + ") -> " + out + "\n" +
           "  return %y : " + out + "\n}";
  }
  /// n random weights rounded to bf16.
  std::vector<uint16_t> randomBF16(size_t n) {
    std::vector<float> f = random(n);
    std::vector<uint16_t> w(n);
    for (size_t i = 0; i < n; ++i)
      w[i] = moir::frontend::toBF16(f[i]);
    return w;
  }
  /// x [T, K] times w [N, K] (bf16) in double, x's first `rounded` columns
  /// rounded to bf16 as the dot products round them.
  static std::vector<double> bf16Reference(const std::vector<float> &x,
                                           const std::vector<uint16_t> &w, int T, int N, int K,
                                           int rounded) {
    using moir::frontend::fromBF16;
    using moir::frontend::toBF16;
    std::vector<double> ref(T * N, 0.0);
    for (int t = 0; t < T; ++t)
      for (int n = 0; n < N; ++n)
        for (int k = 0; k < K; ++k)
          ref[t * N + n] +=
              double(k < rounded ? fromBF16(toBF16(x[t * K + k])) : x[t * K + k]) *
              double(fromBF16(w[n * K + k]));
    return ref;
  }
  /// The code of weight (n, k) in packed rows of `bytes` bytes: a signed
  /// byte, or for nibbles (groups of 32 in 16 bytes) the low nibble of byte
  /// k % 16 of its group for k % 32 < 16, else the high one.
  static double packedCode(const std::vector<uint8_t> &d, int bytes, bool nibbles, int n, int k) {
    if (!nibbles)
      return static_cast<int8_t>(d[n * bytes + k]);
    uint8_t v = d[n * bytes + (k / 32) * 16 + k % 16];
    return k % 32 >= 16 ? v >> 4 : v & 15;
  }
  /// xq [T, K] (the activations as the kernel multiplies them) times the
  /// weights weight(n, k), [T, N], in double.
  static std::vector<double> linearReference(const std::vector<double> &xq,
                                             const std::function<double(int, int)> &weight,
                                             int T, int N, int K) {
    std::vector<double> ref(T * N, 0.0);
    for (int t = 0; t < T; ++t)
      for (int n = 0; n < N; ++n)
        for (int k = 0; k < K; ++k)
          ref[t * N + n] += xq[t * K + k] * weight(n, k);
    return ref;
  }
  static void expectClose(const std::vector<float> &got, const std::vector<double> &want,
                          double tolerance) {
    ASSERT_EQ(got.size(), want.size());
    moir::check::Comparison c = moir::check::compare(got.data(), want.data(), got.size());
    EXPECT_TRUE(c.within(tolerance)) << c.describe(tolerance);
  }
  unsigned seed;
  std::mt19937 rng;
};

#define SEED_TRACE() SCOPED_TRACE("seed " + std::to_string(seed))

TEST_F(LoweringNumericsTest, RMSNormAndLinearWithBias) {
  SEED_TRACE();
  const int T = 5, K = 48, N = 37;
  Kernel kernel(R"(
    func.func @forward(%x: tensor<?x48xf32>, %g: tensor<48xf32>, %w: tensor<37x48xf32>, %b: tensor<37xf32>) -> tensor<?x37xf32> {
      %n = llm.rms_norm %x, %g epsilon = 1.0e-05 : tensor<?x48xf32>, tensor<48xf32>
      %y = llm.linear %n, %w, %b : (tensor<?x48xf32>, tensor<37x48xf32>, tensor<37xf32>) -> tensor<?x37xf32>
      return %y : tensor<?x37xf32>
    })");
  ASSERT_TRUE(kernel.ok()) << kernel.error;
  auto x = random(T * K), g = random(K), w = random(N * K, 0.2f), b = random(N);
  std::vector<float> y(T * N);
  kernel.run({{x.data(), {T, K}}, {g.data(), {K}}, {w.data(), {N, K}}, {b.data(), {N}}, {y.data(), {T, N}}});
  std::vector<double> ref(T * N);
  for (int t = 0; t < T; ++t) {
    double ss = 0;
    for (int k = 0; k < K; ++k)
      ss += double(x[t * K + k]) * x[t * K + k];
    double inv = 1.0 / std::sqrt(ss / K + 1e-5);
    for (int n = 0; n < N; ++n) {
      double acc = b[n];
      for (int k = 0; k < K; ++k)
        acc += x[t * K + k] * inv * g[k] * w[n * K + k];
      ref[t * N + n] = acc;
    }
  }
  expectClose(y, ref, 1e-5);
}

// Gemma's forms: embedding rows times a scale, an RMSNorm scaling by
// (1 + w), and GeGLU with the tanh-approximated GELU.
TEST_F(LoweringNumericsTest, ScaledEmbeddingOffsetNormAndGeGLU) {
  SEED_TRACE();
  const int T = 4, V = 11, K = 40;
  Kernel kernel(R"(
    func.func @forward(%ids: tensor<?xi32>, %e: tensor<11x40xf32>, %g: tensor<40xf32>, %u: tensor<?x40xf32>)
        -> (tensor<?x40xf32>, tensor<?x40xf32>) {
      %h = llm.embedding %ids, %e scale = 6.324555320336759 : (tensor<?xi32>, tensor<11x40xf32>) -> tensor<?x40xf32>
      %n = llm.rms_norm %h, %g epsilon = 1.0e-06 offset = 1.0 : tensor<?x40xf32>, tensor<40xf32>
      %y = llm.glu gelu_tanh %n, %u : tensor<?x40xf32>
      return %n, %y : tensor<?x40xf32>, tensor<?x40xf32>
    })");
  ASSERT_TRUE(kernel.ok()) << kernel.error;
  std::vector<int32_t> ids = {3, 0, 10, 3};
  auto e = random(V * K), g = random(K, 0.3f), u = random(T * K);
  std::vector<float> n(T * K), y(T * K);
  kernel.run({{ids.data(), {T}}, {e.data(), {V, K}}, {g.data(), {K}}, {u.data(), {T, K}},
              {n.data(), {T, K}}, {y.data(), {T, K}}});
  std::vector<double> rn(T * K), ry(T * K);
  for (int t = 0; t < T; ++t) {
    double ss = 0;
    std::vector<double> h(K);
    for (int k = 0; k < K; ++k) {
      h[k] = double(e[ids[t] * K + k]) * std::sqrt(40.0);
      ss += h[k] * h[k];
    }
    double inv = 1.0 / std::sqrt(ss / K + 1e-6);
    for (int k = 0; k < K; ++k) {
      double x = rn[t * K + k] = h[k] * inv * (1.0 + g[k]);
      double gelu = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
      ry[t * K + k] = gelu * u[t * K + k];
    }
  }
  expectClose(n, rn, 1e-5);
  expectClose(y, ry, 1e-5);
}

/// HF's rope utilities, in double precision.
std::vector<double> invFreq(int dim, double theta, const std::string &scaling, double factor,
                            double low = 1, double high = 4, double orig = 0) {
  std::vector<double> f(dim / 2);
  for (int i = 0; i < dim / 2; ++i) {
    double inv = 1.0 / std::pow(theta, 2.0 * i / dim);
    if (scaling == "linear")
      inv /= factor;
    if (scaling == "llama3") {
      double wl = 2 * M_PI / inv, lo = orig / low, hi = orig / high;
      if (wl > lo)
        inv /= factor;
      else if (wl >= hi) {
        double s = (orig / wl - low) / (high - low);
        inv = (1 - s) * inv / factor + s * inv;
      }
    }
    if (scaling == "yarn") {
      auto corr = [&](double rot) { return dim * std::log(orig / (rot * 2 * M_PI)) / (2 * std::log(theta)); };
      double lo = std::max(std::floor(corr(32)), 0.0), hi = std::min(std::ceil(corr(1)), dim - 1.0);
      double ramp = std::clamp((i - lo) / (hi == lo ? 0.001 : hi - lo), 0.0, 1.0);
      inv = inv / factor * ramp + inv * (1 - ramp);
    }
    f[i] = inv;
  }
  return f;
}

TEST_F(LoweringNumericsTest, RopeEveryScalingAndPairing) {
  SEED_TRACE();
  const int T = 4, H = 3, D = 16;
  struct Case {
    const char *attr;
    std::string scaling;
    double theta, factor;
    bool interleaved;
    int dim; // rotated dimensions (12: partial rotary)
    std::vector<double> factors = {}; // freq_factors: divisors of the frequencies
  } cases[] = {
      {"<theta = 1.0e4, dim = 16>", "none", 1e4, 1, false, 16},
      {"<theta = 5.0e5, dim = 12, interleaved = true>", "none", 5e5, 1, true, 12},
      {"<theta = 1.0e4, dim = 16, scaling = linear, factor = 4.0>", "linear", 1e4, 4, false, 16},
      {"<theta = 5.0e5, dim = 16, scaling = llama3, factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position = 64>", "llama3", 5e5, 8, false, 16},
      {"<theta = 1.0e4, dim = 16, scaling = yarn, factor = 4.0, original_max_position = 64, interleaved = true>", "yarn", 1e4, 4, true, 16},
      {"<theta = 5.0e5, dim = 16, interleaved = true, freq_factors = [1.0, 1.0, 1.5, 2.5, 8.0, 8.0, 8.0, 8.0]>", "none", 5e5, 1, true, 16,
       {1.0, 1.0, 1.5, 2.5, 8.0, 8.0, 8.0, 8.0}},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.attr);
    Kernel kernel(std::string(R"(
      func.func @forward(%x: tensor<?x3x16xf32>, %p: tensor<?xi64>) -> tensor<?x3x16xf32> {
        %r = llm.rope %x, %p with )") + c.attr + R"( : tensor<?x3x16xf32>, tensor<?xi64>
        return %r : tensor<?x3x16xf32>
      })");
    ASSERT_TRUE(kernel.ok()) << kernel.error;
    auto x = random(T * H * D);
    std::vector<int64_t> pos(T);
    for (int t = 0; t < T; ++t)
      pos[t] = std::uniform_int_distribution<int>(0, 200)(rng);
    std::vector<float> y(T * H * D);
    kernel.run({{x.data(), {T, H, D}}, {pos.data(), {T}}, {y.data(), {T, H, D}}});
    std::vector<double> f = invFreq(c.dim, c.theta, c.scaling, c.factor, 1, 4, 64);
    for (size_t i = 0; i < c.factors.size(); ++i)
      f[i] /= c.factors[i];
    double attn = c.scaling == "yarn" ? 0.1 * std::log(c.factor) + 1.0 : 1.0;
    std::vector<double> ref(T * H * D);
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h)
        for (int d = 0; d < D; ++d) {
          const float *row = &x[(t * H + h) * D];
          double out = row[d];
          if (d < c.dim) {
            int i, partner;
            double sign;
            if (c.interleaved) {
              i = d / 2, partner = d ^ 1, sign = d % 2 ? 1 : -1;
            } else {
              i = d % (c.dim / 2), partner = d < c.dim / 2 ? d + c.dim / 2 : d - c.dim / 2;
              sign = d < c.dim / 2 ? -1 : 1;
            }
            double a = pos[t] * f[i];
            out = row[d] * std::cos(a) * attn + sign * row[partner] * std::sin(a) * attn;
          }
          ref[(t * H + h) * D + d] = out;
        }
    expectClose(y, ref, 2e-5);
  }
}

TEST_F(LoweringNumericsTest, GroupedQueryAttentionWithWindow) {
  SEED_TRACE();
  const int T = 3, H = 4, KV = 2, D = 8, S = 16, W = 4, off = 5;
  Kernel kernel(R"(
    func.func @forward(%q: tensor<?x4x8xf32>, %k: tensor<16x2x8xf32>, %v: tensor<16x2x8xf32>, %p: tensor<?xi64>) -> tensor<?x4x8xf32> {
      %o = llm.attention %q, %k, %v, %p scale = 0.35 window = 4 : (tensor<?x4x8xf32>, tensor<16x2x8xf32>, tensor<16x2x8xf32>, tensor<?xi64>) -> tensor<?x4x8xf32>
      return %o : tensor<?x4x8xf32>
    })");
  ASSERT_TRUE(kernel.ok()) << kernel.error;
  auto q = random(T * H * D), k = random(S * KV * D), v = random(S * KV * D);
  std::vector<int64_t> pos = {off, off + 1, off + 2};
  std::vector<float> o(T * H * D);
  kernel.run({{q.data(), {T, H, D}}, {k.data(), {S, KV, D}}, {v.data(), {S, KV, D}}, {pos.data(), {T}}, {o.data(), {T, H, D}}});
  std::vector<double> ref(T * H * D, 0.0);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      int g = h / (H / KV);
      std::vector<double> s;
      for (int j = 0; j <= pos[t]; ++j) {
        if (pos[t] - j >= W)
          { s.push_back(-INFINITY); continue; }
        double dot = 0;
        for (int d = 0; d < D; ++d)
          dot += q[(t * H + h) * D + d] * k[(j * KV + g) * D + d];
        s.push_back(dot * 0.35);
      }
      double m = *std::max_element(s.begin(), s.end()), sum = 0;
      for (double &e : s) sum += (e = std::exp(e - m));
      for (int j = 0; j < (int)s.size(); ++j)
        for (int d = 0; d < D; ++d)
          ref[(t * H + h) * D + d] += s[j] / sum * v[(j * KV + g) * D + d];
    }
  expectClose(o, ref, 1e-5);
}

TEST_F(LoweringNumericsTest, ActivationsAndXIELU) {
  SEED_TRACE();
  const int N = 64;
  Kernel kernel(R"(
    func.func @forward(%g: tensor<?x64xf32>, %u: tensor<?x64xf32>, %ap: tensor<1xf32>, %an: tensor<1xf32>)
        -> (tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>) {
      %a = llm.glu silu %g, %u : tensor<?x64xf32>
      %b = llm.activation gelu_tanh %g : tensor<?x64xf32>
      %b2 = llm.activation gelu %b : tensor<?x64xf32>
      %c = llm.xielu %g, %ap, %an beta = 0.5 eps = -1.0e-06 : tensor<?x64xf32>, tensor<1xf32>
      return %a, %b2, %c : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>
    })");
  ASSERT_TRUE(kernel.ok()) << kernel.error;
  auto g = random(N, 2.0f), u = random(N), ap = random(1), an = random(1);
  std::vector<float> a(N), b(N), c(N);
  kernel.run({{g.data(), {1, N}}, {u.data(), {1, N}}, {ap.data(), {1}}, {an.data(), {1}},
              {a.data(), {1, N}}, {b.data(), {1, N}}, {c.data(), {1, N}}});
  std::vector<double> ra(N), rb(N), rc(N);
  double sp = std::log1p(std::exp(double(ap[0]))), sn = 0.5 + std::log1p(std::exp(double(an[0])));
  for (int i = 0; i < N; ++i) {
    double x = g[i];
    ra[i] = x / (1 + std::exp(-x)) * u[i];
    double t = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    rb[i] = 0.5 * t * (1 + std::erf(t / std::sqrt(2.0)));
    rc[i] = x > 0 ? sp * x * x + 0.5 * x : (std::expm1(std::min(x, -1e-6)) - x) * sn + 0.5 * x;
  }
  expectClose(a, ra, 1e-5);
  expectClose(b, rb, 1e-5);
  expectClose(c, rc, 1e-5);
}

TEST_F(LoweringNumericsTest, RoutingGreedyAndGroupLimitedNoauxTC) {
  SEED_TRACE();
  const int T = 6, E = 16, K = 3, G = 4, TG = 2;
  Kernel kernel(R"(
    func.func @forward(%l: tensor<?x16xf32>, %bias: tensor<16xf32>)
        -> (tensor<?x3xf32>, tensor<?x3xi32>, tensor<?x3xf32>, tensor<?x3xi32>) {
      %w, %i = moe.route %l routing <top_k = 3, scoring = softmax, norm_topk_prob = true> : tensor<?x16xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
      %w2, %i2 = moe.route %l bias %bias routing <top_k = 3, scoring = sigmoid, method = noaux_tc, n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.5> : tensor<?x16xf32>, tensor<16xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
      return %w, %i, %w2, %i2 : tensor<?x3xf32>, tensor<?x3xi32>, tensor<?x3xf32>, tensor<?x3xi32>
    })");
  ASSERT_TRUE(kernel.ok()) << kernel.error;
  auto l = random(T * E), bias = random(E, 0.5f);
  std::vector<float> w(T * K), w2(T * K);
  std::vector<int32_t> ids(T * K), ids2(T * K);
  kernel.run({{l.data(), {T, E}}, {bias.data(), {E}}, {w.data(), {T, K}}, {ids.data(), {T, K}},
              {w2.data(), {T, K}}, {ids2.data(), {T, K}}});
  std::vector<double> rw(T * K), rw2(T * K);
  for (int t = 0; t < T; ++t) {
    const float *row = &l[t * E];
    // Softmax, top-3, renormalized.
    std::vector<double> p(E);
    // (The normalizing sum cancels in the renormalization below.)
    double m = *std::max_element(row, row + E);
    for (int e = 0; e < E; ++e) p[e] = std::exp(row[e] - m);
    std::vector<int> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    double top = p[order[0]] + p[order[1]] + p[order[2]];
    for (int j = 0; j < K; ++j) {
      EXPECT_EQ(ids[t * K + j], order[j]);
      rw[t * K + j] = p[order[j]] / top;
    }
    // Sigmoid + bias, groups scored by their two best, 2 of 4 kept.
    std::vector<double> sg(E), choice(E);
    for (int e = 0; e < E; ++e) choice[e] = (sg[e] = 1 / (1 + std::exp(-row[e]))) + bias[e];
    std::vector<std::pair<double, int>> groups;
    for (int gi = 0; gi < G; ++gi) {
      std::vector<double> c(choice.begin() + gi * 4, choice.begin() + gi * 4 + 4);
      std::sort(c.rbegin(), c.rend());
      groups.push_back({c[0] + c[1], gi});
    }
    std::sort(groups.rbegin(), groups.rend());
    for (int e = 0; e < E; ++e) {
      bool kept = false;
      for (int g = 0; g < TG; ++g)
        kept |= e / 4 == groups[g].second;
      if (!kept)
        choice[e] = 0.0;
    }
    std::vector<int> o2(E);
    std::iota(o2.begin(), o2.end(), 0);
    std::sort(o2.begin(), o2.end(), [&](int a, int b) { return choice[a] > choice[b]; });
    double top2 = sg[o2[0]] + sg[o2[1]] + sg[o2[2]];
    for (int j = 0; j < K; ++j) {
      EXPECT_EQ(ids2[t * K + j], o2[j]);
      rw2[t * K + j] = sg[o2[j]] / top2 * 2.5;
    }
  }
  expectClose(w, rw, 1e-5);
  expectClose(w2, rw2, 1e-5);
}

/// mla.attend's output in its materialized form, in double: per head, keys
/// and values expanded from the latent cache c [S, C] by the rows of kv_b
/// (`weight(row, col)`, rows h * (N + V) + n for keys, + N + d for values),
/// the RoPE keys r [S, R] shared by every head.
static std::vector<double> mlaReference(const std::vector<float> &qn, const std::vector<float> &qp,
                                        const std::vector<float> &c, const std::vector<float> &r,
                                        const std::vector<int64_t> &pos,
                                        const std::function<double(int, int)> &weight, int H,
                                        int N, int R, int V, int C, double scale) {
  const int T = static_cast<int>(pos.size());
  std::vector<double> ref(T * H * V, 0.0);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      std::vector<double> s(pos[t] + 1);
      for (int j = 0; j <= pos[t]; ++j) {
        double dot = 0;
        for (int n = 0; n < N; ++n) {
          double kn = 0;
          for (int l = 0; l < C; ++l) kn += weight(h * (N + V) + n, l) * c[j * C + l];
          dot += qn[(t * H + h) * N + n] * kn;
        }
        for (int q = 0; q < R; ++q) dot += qp[(t * H + h) * R + q] * r[j * R + q];
        s[j] = dot * scale;
      }
      double m = *std::max_element(s.begin(), s.end()), sum = 0;
      for (double &e : s) sum += (e = std::exp(e - m));
      for (int j = 0; j <= pos[t]; ++j)
        for (int d = 0; d < V; ++d) {
          double vv = 0;
          for (int l = 0; l < C; ++l) vv += weight(h * (N + V) + N + d, l) * c[j * C + l];
          ref[(t * H + h) * V + d] += s[j] / sum * vv;
        }
    }
  return ref;
}

TEST_F(LoweringNumericsTest, MLAAttendMatchesTheMaterializedForm) {
  SEED_TRACE();
  const int T = 3, H = 2, N = 8, R = 4, V = 6, C = 10, S = 12;
  Kernel kernel(R"(
    func.func @forward(%qn: tensor<?x2x8xf32>, %qp: tensor<?x2x4xf32>, %c: tensor<12x10xf32>, %r: tensor<12x4xf32>, %pos: tensor<?xi64>, %w: tensor<28x10xf32>) -> tensor<?x2x6xf32> {
      %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 2, kv_lora_rank = 10, qk_nope_head_dim = 8, qk_rope_head_dim = 4, v_head_dim = 6> scale = 0.3 form = materialized
          : (tensor<?x2x8xf32>, tensor<?x2x4xf32>, tensor<12x10xf32>, tensor<12x4xf32>, tensor<?xi64>, tensor<28x10xf32>) -> tensor<?x2x6xf32>
      return %a : tensor<?x2x6xf32>
    })");
  ASSERT_TRUE(kernel.ok()) << kernel.error;
  auto qn = random(T * H * N), qp = random(T * H * R), c = random(S * C), r = random(S * R),
       w = random(H * (N + V) * C, 0.3f);
  std::vector<int64_t> pos = {3, 4, 5};
  std::vector<float> out(T * H * V);
  kernel.run({{qn.data(), {T, H, N}}, {qp.data(), {T, H, R}}, {c.data(), {S, C}}, {r.data(), {S, R}},
              {pos.data(), {T}}, {w.data(), {H * (N + V), C}}, {out.data(), {T, H, V}}});
  expectClose(out,
              mlaReference(qn, qp, c, r, pos, [&](int row, int l) { return double(w[row * C + l]); },
                           H, N, R, V, C, 0.3),
              1e-5);
}

/// Absorbed MLA with flash attention in decode: the latent cache is one
/// group of every head, so a decode row is one (query block, KV head) pair
/// and its keys split from 256 / 16 heads keys, at least a key block of 64
/// (FlashAttention.cpp): 150 keys in 3 splits (2 whole key blocks and 22),
/// 100 in 2, and 2 queries at the end of the cache, each split's online
/// softmax combined, against the materialized form in double.
TEST_F(LoweringNumericsTest, MLAFlashDecodeSplitsTheKeysOfItsOneGroup) {
  SEED_TRACE();
  const int H = 16, N = 8, R = 4, V = 6, C = 10, S = 150;
  std::string hs = std::to_string(H);
  std::string q = "tensor<?x" + hs + "x8xf32>", qp = "tensor<?x" + hs + "x4xf32>",
              o = "tensor<?x" + hs + "x6xf32>", w = "tensor<" + std::to_string(H * (N + V)) + "x10xf32>";
  Kernel kernel("func.func @forward(%qn: " + q + ", %qp: " + qp +
                ", %c: tensor<150x10xf32>, %r: tensor<150x4xf32>, %pos: tensor<?xi64>, %w: " + w +
                ") -> " + o + " {\n"
                "  %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = " + hs +
                ", kv_lora_rank = 10, qk_nope_head_dim = 8, qk_rope_head_dim = 4, v_head_dim = 6> "
                "scale = 0.3 form = absorbed flash : (" + q + ", " + qp +
                ", tensor<150x10xf32>, tensor<150x4xf32>, tensor<?xi64>, " + w + ") -> " + o +
                "\n  return %a : " + o + "\n}");
  ASSERT_TRUE(kernel.ok()) << kernel.error;
  auto c = random(S * C), r = random(S * R), weights = random(H * (N + V) * C, 0.3f);
  for (std::vector<int64_t> pos : {std::vector<int64_t>{149}, std::vector<int64_t>{99},
                                   std::vector<int64_t>{148, 149}}) {
    const int T = static_cast<int>(pos.size());
    SCOPED_TRACE(std::to_string(T) + " queries, last at " + std::to_string(pos.back()));
    auto qn = random(T * H * N), qr = random(T * H * R);
    std::vector<float> out(T * H * V);
    kernel.run({{qn.data(), {T, H, N}}, {qr.data(), {T, H, R}}, {c.data(), {S, C}},
                {r.data(), {S, R}}, {pos.data(), {T}}, {weights.data(), {H * (N + V), C}},
                {out.data(), {T, H, V}}});
    expectClose(out,
                mlaReference(qn, qr, c, r, pos,
                             [&](int row, int l) { return double(weights[row * C + l]); }, H, N, R,
                             V, C, 0.3),
                1e-5);
  }
}

/// mla.attend with a packed kv_b_proj (int8 codes and nibbles, groups of 32
/// with offsets), read as stored: the absorbed form's per-head kernels (the
/// query absorption sums weight rows, the output projection dots along
/// them) and the materialized form's one product over every row, each with
/// and without flash attention, prefill (3 queries) and decode (1), against
/// the materialized form on the dequantized weights in double. 2 heads of
/// 8 + 6 rows (28 rows: no whole tiles of them) over a rank of 96 (three
/// 4-vector column tiles at 8 lanes, one and a half at 16).
TEST_F(LoweringNumericsTest, MLAAttendReadsAPackedKvB) {
  SEED_TRACE();
  const int H = 2, N = 8, R = 4, V = 6, C = 96, S = 12, rows = H * (N + V), groups = C / 32;
  for (bool nibbles : {false, true})
    for (std::string form : {"absorbed", "materialized", "absorbed flash", "materialized flash",
                             "absorbed prefill = materialized"}) {
      SCOPED_TRACE(std::string(nibbles ? "u4" : "i8") + ", form = " + form);
      const int bytes = nibbles ? C / 2 : C;
      std::string data = "tensor<28x" + std::to_string(bytes) + "xi8>",
                  scales = "tensor<28x" + std::to_string(groups) + "x2xf32>",
                  qtype = std::string("!llm.qtensor<28x96x") + (nibbles ? "i4" : "i8") +
                          ", #llm.quant<kind = gguf, format = " + (nibbles ? "q4_1" : "q8_0") +
                          ">>";
      Kernel kernel(
          "func.func @forward(%qn: tensor<?x2x8xf32>, %qp: tensor<?x2x4xf32>, %c: "
          "tensor<12x96xf32>, %r: tensor<12x4xf32>, %pos: tensor<?xi64>, %d: " + data +
          ", %s: " + scales + ") -> tensor<?x2x6xf32> {\n"
          "  %w = llm.packed_weight %d, %s group 32 : " + data + ", " + scales + " -> " + qtype +
          "\n  %a = mla.attend %qn, %qp, %c, %r, %pos, %w config <num_heads = 2, kv_lora_rank = "
          "96, qk_nope_head_dim = 8, qk_rope_head_dim = 4, v_head_dim = 6> scale = 0.3 form = " +
          form + " : (tensor<?x2x8xf32>, tensor<?x2x4xf32>, tensor<12x96xf32>, "
          "tensor<12x4xf32>, tensor<?xi64>, " + qtype + ") -> tensor<?x2x6xf32>\n"
          "  return %a : tensor<?x2x6xf32>\n}");
      ASSERT_TRUE(kernel.ok()) << kernel.error;
      std::uniform_int_distribution<int> byte(0, 255);
      std::vector<uint8_t> d(rows * bytes);
      for (uint8_t &v : d)
        v = static_cast<uint8_t>(byte(rng));
      std::vector<float> sc = random(rows * groups * 2, 0.01f);
      auto weight = [&](int n, int k) {
        double code = packedCode(d, bytes, nibbles, n, k);
        int g = k / 32;
        return double(sc[(n * groups + g) * 2]) * code + double(sc[(n * groups + g) * 2 + 1]);
      };
      auto c = random(S * C), r = random(S * R);
      for (std::vector<int64_t> pos : {std::vector<int64_t>{3, 4, 5}, std::vector<int64_t>{11}}) {
        const int T = static_cast<int>(pos.size());
        SCOPED_TRACE(std::to_string(T) + " queries");
        auto qn = random(T * H * N), qp = random(T * H * R);
        std::vector<float> out(T * H * V);
        kernel.run({{qn.data(), {T, H, N}}, {qp.data(), {T, H, R}}, {c.data(), {S, C}},
                    {r.data(), {S, R}}, {pos.data(), {T}}, {d.data(), {rows, bytes}},
                    {sc.data(), {rows, groups, 2}}, {out.data(), {T, H, V}}});
        expectClose(out, mlaReference(qn, qp, c, r, pos, weight, H, N, R, V, C, 0.3), 1e-5);
      }
    }
}

/// llm.linear over packed integer codes (int8 codes, nibbles; groups of 32
/// and 16) with the int8 dot products: from 8 rows on, the activations are
/// quantized per block (32 elements, 16 for groups of 16: scale max|x| /
/// 127, codes round-to-even(x * 127 / max|x|)) and the kernel must give
/// the product of those quantized activations with the dequantized weights
/// (here in double) to f32 rounding; fewer rows (decode) take the row
/// kernel where the depth allows it, else the exact kernel. With 16-bit
/// decode activations, each code's residual round(128 * (x * 127 / max|x|
/// - code)) joins it: x = scale * (code + residual / 128).
/// 37 rows: two full 16-row groups, one of 5 rows of padding lanes; 37
/// outputs: a column tail after 4-wide tiles.
TEST_F(LoweringNumericsTest, PackedLinearInt8DotProducts) {
  SEED_TRACE();
  llvm::Expected<moir::cpu::KernelOptions> host =
      moir::cpu::kernelOptionsFor(moir::host::HostOptions{}, true, false, true, false);
  ASSERT_TRUE(static_cast<bool>(host)) << llvm::toString(host.takeError());
  if (!host->int8Dot)
    GTEST_SKIP() << "unsupported: the host has neither AVX512-VNNI nor AVX-VNNI";
  // Where the host has AMX, each case again with the int8 codes' prefill
  // products on AMX tiles (tdpbssd; nibbles unpacked to bytes first).
  llvm::Expected<moir::cpu::KernelOptions> tiles =
      moir::cpu::kernelOptionsFor(moir::host::HostOptions{}, true, false, true, true);
  ASSERT_TRUE(static_cast<bool>(tiles)) << llvm::toString(tiles.takeError());
  // Decode's 16-bit activations once, on the vector kernels (the AMX
  // tiles take prefill only).
  for (auto [amx, bits] : {std::pair{false, 8}, std::pair{true, 8}, std::pair{false, 16}}) {
    if (amx && !tiles->amx)
      continue;
    SCOPED_TRACE(std::string(amx ? "AMX tiles" : "VNNI") + ", decode activations of " +
                 std::to_string(bits) + " bits");
    const int N = 37, vw = static_cast<int>(host->vectorWidth);
    struct Case {
      bool nibbles;
      int group;
      bool superblocks;
      int K;
    };
    // Prefill (37 rows: the interleaved int8 tiles) and decode (1 and 5
    // rows: the row kernel where the depth is whole steps of it, 4 * vw
    // codes, 32 for nibbles at 4 lanes, or at 16 lanes whole 32s, the last
    // 32 a tail step; else the exact f32 kernel): K = 96 has a tail at 16
    // lanes, 80 is not whole 32s.
    for (Case c : {Case{false, 32, false, 96}, Case{true, 32, false, 96}, Case{false, 16, false, 96},
                   Case{false, 16, false, 80}, Case{false, 64, false, 192},
                   Case{false, 128, false, 256},
                   Case{false, 32, false, 192}, Case{true, 32, false, 192},
                   Case{false, 16, false, 192}, Case{true, 32, true, 512},
                   Case{false, 16, true, 512}}) {
      const int K = c.K;
      SCOPED_TRACE(std::string(c.nibbles ? "u4" : "i8") + " group " + std::to_string(c.group) +
                   (c.superblocks ? " superblocks" : "") + " K " + std::to_string(K));
      const int bytes = c.nibbles ? K / 2 : K, groups = K / c.group;
      // Superblocks: per 256 weights d and -dmin (f16 bytes; Q6_K: d only,
      // symmetric), then a signed byte per group (scales, then mins).
      const int parts = c.superblocks && !c.nibbles ? 1 : 2, blocks = K / 256,
                perBlock = 256 / c.group, sbBytes = parts * (2 + perBlock);
      std::string ks = std::to_string(K);
      std::string scheme = c.superblocks ? (c.nibbles ? "kind = gguf, format = q4_k"
                                                      : "kind = gguf, format = q6_k")
                           : c.nibbles   ? "kind = gguf, format = q4_1"
                           : c.group != 32 ? "kind = group, group = " + std::to_string(c.group)
                                           : "kind = gguf, format = q8_0";
      std::string qtype = "!llm.qtensor<37x" + ks +
                          (c.nibbles ? "xi4" : c.superblocks ? "xi6" : "xi8") + ", #llm.quant<" +
                          scheme + ">>";
      std::string data = "tensor<37x" + std::to_string(bytes) + "xi8>";
      std::string scales = c.superblocks ? "tensor<37x" + std::to_string(blocks) + "x" +
                                               std::to_string(sbBytes) + "xi8>"
                                         : "tensor<37x" + std::to_string(groups) + "x2xf32>";
      std::string act = "tensor<?x" + ks + "xf32>";
      Kernel kernel("func.func @forward(%x: " + act + ", %d: " + data + ", %s: " + scales +
                        ") -> tensor<?x37xf32> {\n"
                        "  %w = llm.packed_weight %d, %s group " + std::to_string(c.group) +
                        " : " + data + ", " + scales + " -> " + qtype +
                        "\n"
                        "  %y = llm.linear %x, %w : (" + act + ", " + qtype +
                        ") -> tensor<?x37xf32>\n"
                        "  return %y : tensor<?x37xf32>\n}",
                    /*int8Dot=*/true, /*bf16Dot=*/false, amx, bits);
      ASSERT_TRUE(kernel.ok()) << kernel.error;
      EXPECT_EQ(kernel.usesTiles, amx);
      std::uniform_int_distribution<int> byte(0, 255), small(-63, 63);
      std::vector<uint8_t> d(N * bytes);
      for (uint8_t &v : d)
        v = static_cast<uint8_t>(byte(rng));
      std::vector<float> s;
      std::vector<uint8_t> sb;
      if (c.superblocks) {
        sb.resize(N * blocks * sbBytes);
        std::vector<float> numbers = random(N * blocks * parts, 0.01f);
        for (int i = 0; i < N * blocks; ++i) {
          for (int part = 0; part < parts; ++part) {
            uint16_t h = moir::frontend::toF16(numbers[i * parts + part]);
            sb[i * sbBytes + 2 * part] = h & 0xff;
            sb[i * sbBytes + 2 * part + 1] = h >> 8;
          }
          for (int e = 2 * parts; e < sbBytes; ++e)
            sb[i * sbBytes + e] = static_cast<uint8_t>(static_cast<int8_t>(small(rng)));
        }
      } else {
        s = random(N * groups * 2, 0.05f);
      }
      auto param = [&](int n, int g, int part) -> double {
        if (!c.superblocks)
          return s[(n * groups + g) * 2 + part];
        const uint8_t *block = &sb[(n * blocks + g / perBlock) * sbBytes];
        float number = moir::frontend::fromF16(static_cast<uint16_t>(block[2 * part] | block[2 * part + 1] << 8));
        int8_t sub = static_cast<int8_t>(block[2 * parts + part * perBlock + g % perBlock]);
        return double(number * float(sub));
      };
      auto weight = [&](int n, int k) {
        double code = packedCode(d, bytes, c.nibbles, n, k);
        int g = k / c.group;
        return param(n, g, 0) * code + (parts == 2 ? param(n, g, 1) : 0.0);
      };
      const int step = vw == 16 && !c.superblocks ? 32 : c.nibbles ? std::max(32, 4 * vw) : 4 * vw;
      for (int T : {37, 5, 1}) {
        SCOPED_TRACE(std::to_string(T) + " rows");
        std::vector<float> x = random(T * K);
        // The activations as the kernel sees them: int8 per block of `unit`
        // from 8 rows on, and in decode where K is whole steps; the decode
        // kernel over superblocks takes one scale per 256.
        std::vector<double> xq(x.begin(), x.end());
        const int unit = c.superblocks && T < 8 ? 256 : c.group == 16 ? 16 : 32;
        if (T >= 8 || K % step == 0)
          for (int t = 0; t < T; ++t)
            for (int u = 0; u < K / unit; ++u) {
              float *blk = &x[t * K + u * unit];
              float amax = 0;
              for (int e = 0; e < unit; ++e)
                amax = std::max(amax, std::fabs(blk[e]));
              float scale = amax / 127.0f, inverse = amax > 0 ? 127.0f / amax : 0.0f;
              for (int e = 0; e < unit; ++e) {
                float y = blk[e] * inverse, code = std::nearbyint(y);
                double value = code;
                if (bits == 16 && T < 8)
                  value += std::nearbyint((y - code) * 128.0f) / 128.0;
                xq[t * K + u * unit + e] = double(scale) * value;
              }
            }
        std::vector<float> y(T * N);
        if (c.superblocks)
          kernel.run({{x.data(), {T, K}}, {d.data(), {N, bytes}}, {sb.data(), {N, blocks, sbBytes}},
                      {y.data(), {T, N}}});
        else
          kernel.run({{x.data(), {T, K}}, {d.data(), {N, bytes}}, {s.data(), {N, groups, 2}},
                      {y.data(), {T, N}}});
        expectClose(y, linearReference(xq, weight, T, N, K), 1e-5);
      }
    }
  }
}

/// bf16 weights on the AVX512-BF16 dot products: the activations rounded to
/// bf16 (to nearest, ties to even), products and sums in f32. From a group
/// of rows (the vector width) on, the broadcast kernel (one row per lane,
/// rows paired along k); fewer rows, and a last partial group of fewer
/// than half a group, the lane-sum kernel. Against the
/// rounded activations times the weights in double, within 1e-5 of the
/// largest output: 37 and 16 rows (whole and partial groups), 5 and 1
/// (decode); 37 weight rows (tiles of 8 and 5 single columns); depths with
/// and without a remainder past whole vectors (100, 96, 34) and an odd one
/// (51, the lane-sum kernel only, whose remainder past whole steps keeps
/// f32 activations).
TEST_F(LoweringNumericsTest, BF16WeightLinearDotProducts) {
  SEED_TRACE();
  llvm::Expected<moir::cpu::KernelOptions> host =
      moir::cpu::kernelOptionsFor(moir::host::HostOptions{}, true, true, false, false);
  ASSERT_TRUE(static_cast<bool>(host)) << llvm::toString(host.takeError());
  if (!host->bf16Dot)
    GTEST_SKIP() << "unsupported: the host has no AVX512-BF16";
  const int N = 37;
  for (int K : {100, 96, 34, 51}) {
    SCOPED_TRACE("K " + std::to_string(K));
    Kernel kernel(bf16Linear(N, K), /*int8Dot=*/false, /*bf16Dot=*/true);
    ASSERT_TRUE(kernel.ok()) << kernel.error;
    std::vector<uint16_t> w = randomBF16(N * K);
    for (int T : {37, 16, 5, 1}) {
      SCOPED_TRACE(std::to_string(T) + " rows");
      std::vector<float> x = random(T * K);
      std::vector<float> y(T * N, std::nanf(""));
      kernel.run({{x.data(), {T, K}}, {w.data(), {N, K}}, {y.data(), {T, N}}});
      // The lane-sum kernel multiplies the depth past its whole steps (2 *
      // vw) one product at a time, with the activations as they are. It
      // takes fewer rows than a group, and the rows of a last group of
      // fewer than half a group past whole ones (37 = 2 * 16 + 5).
      const int vw = static_cast<int>(host->vectorWidth);
      const int laneRounded = K / (2 * vw) * (2 * vw);
      const int paired = T >= vw && K % 2 == 0 ? (T % vw < vw / 2 ? T / vw * vw : T) : 0;
      std::vector<double> ref = bf16Reference(x, w, T, N, K, K);
      std::vector<double> laneRef = bf16Reference(x, w, T, N, K, laneRounded);
      std::copy(laneRef.begin() + paired * N, laneRef.end(), ref.begin() + paired * N);
      expectClose(y, ref, 1e-5);
    }
  }
}

/// bf16 prefill products on AMX tiles (tdpbf16ps; --cpu-amx): depths of
/// whole 32s, activation rows from 16 on (whole and partial groups of 16,
/// an odd group count: 2 x 2 and 1-group tiles), weight rows in pairs of
/// tiles (32), a single tile (16) and single rows past them. Against the
/// rounded activations times the weights in double, within 1e-5 of the
/// largest output; fewer than 16 rows take the lane-sum kernel, checked
/// the same way.
TEST_F(LoweringNumericsTest, BF16WeightLinearAMXTiles) {
  SEED_TRACE();
  llvm::Expected<moir::cpu::KernelOptions> host =
      moir::cpu::kernelOptionsFor(moir::host::HostOptions{}, true, true, false, true);
  ASSERT_TRUE(static_cast<bool>(host)) << llvm::toString(host.takeError());
  if (!host->amx)
    GTEST_SKIP() << "unsupported: the host has no AMX-BF16";
  for (auto [N, K] : {std::pair{37, 96}, {48, 32}, {16, 64}, {100, 1024}, {7, 64}}) {
    SCOPED_TRACE("N " + std::to_string(N) + " K " + std::to_string(K));
    Kernel kernel(bf16Linear(N, K), /*int8Dot=*/false, /*bf16Dot=*/true, /*amx=*/true);
    ASSERT_TRUE(kernel.ok()) << kernel.error;
    EXPECT_TRUE(kernel.usesTiles) << "no AMX tiles in the code";
    std::vector<uint16_t> w = randomBF16(N * K);
    for (int T : {16, 37, 64, 80, 5}) {
      SCOPED_TRACE(std::to_string(T) + " rows");
      std::vector<float> x = random(T * K);
      std::vector<float> y(T * N, std::nanf(""));
      kernel.run({{x.data(), {T, K}}, {w.data(), {N, K}}, {y.data(), {T, N}}});
      expectClose(y, bf16Reference(x, w, T, N, K, /*rounded=*/K), 1e-5);
    }
  }
}

} // namespace

namespace {

/// The E4M3 (FN) value nearest to v (|v| <= 448), ties to the even code:
/// a search over all of the format's finite values, independent of the
/// lowering's exponent arithmetic.
float nearestE4M3(float v) {
  float best = 0.0f;
  int bestCode = 0;
  double bestDistance = std::fabs(double(v));
  for (int code = 1; code < 0x7F; ++code) {
    int exponent = code >> 3, mantissa = code & 7;
    double magnitude = exponent == 0 ? std::ldexp(mantissa, -9)
                                     : std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
    double distance = std::fabs(std::fabs(double(v)) - magnitude);
    if (distance < bestDistance || (distance == bestDistance && (code & 1) == 0)) {
      best = static_cast<float>(magnitude);
      bestCode = code;
      bestDistance = distance;
    }
  }
  (void)bestCode;
  return v < 0 ? -best : best;
}

} // namespace

// W8A8 activations (llm.dynamic_quant) against compressed-tensors' formula
// written out: scale = max|row| / 127.5 (int8) or / 448 (FP8), f32
// epsilon for a row of zeros, x / scale clamped and rounded (nearest even;
// FP8 by a search over the format's values), times the scale. Bit for bit:
// the kernels must multiply exactly what the reference multiplies. Rows:
// random ones, a row of zeros, one of exact halves (ties), one with a huge
// magnitude and tiny values (FP8 subnormals).
TEST_F(LoweringNumericsTest, DynamicQuantRowsBitForBit) {
  SEED_TRACE();
  const int T = 7, K = 72;
  Kernel kernel(R"(
    func.func @forward(%x: tensor<?x72xf32>) -> (tensor<?x72xf32>, tensor<?x72xf32>) {
      %a = llm.dynamic_quant int8 %x : tensor<?x72xf32>
      %b = llm.dynamic_quant fp8_e4m3 %x : tensor<?x72xf32>
      return %a, %b : tensor<?x72xf32>, tensor<?x72xf32>
    })");
  ASSERT_TRUE(kernel.ok()) << kernel.error;
  std::vector<float> x = random(T * K, 3.0f);
  for (int k = 0; k < K; ++k) {
    x[4 * K + k] = 0.0f;
    // Row 5: max 127.5 (scale 1), the rest exact halves: ties.
    x[5 * K + k] = k == 0 ? 127.5f : static_cast<float>((k % 21) - 10) + 0.5f;
    // Row 6: one large value, the rest far below it.
    x[6 * K + k] = k == 3 ? 1000.0f : x[6 * K + k] * 1e-3f;
  }
  std::vector<float> a(T * K), b(T * K);
  kernel.run({{x.data(), {T, K}}, {a.data(), {T, K}}, {b.data(), {T, K}}});
  int mismatches = 0;
  for (int t = 0; t < T; ++t) {
    float m = 0.0f;
    for (int k = 0; k < K; ++k)
      m = std::max(m, std::fabs(x[t * K + k]));
    float si = m / 127.5f, sf = m / 448.0f;
    if (si == 0.0f)
      si = std::numeric_limits<float>::epsilon();
    if (sf == 0.0f)
      sf = std::numeric_limits<float>::epsilon();
    for (int k = 0; k < K; ++k) {
      float v = x[t * K + k];
      float qi = std::nearbyint(std::min(std::max(v / si, -128.0f), 127.0f));
      float qf = nearestE4M3(std::min(std::max(v / sf, -448.0f), 448.0f));
      float wantA = qi * si, wantB = qf * sf;
      ASSERT_TRUE(std::isfinite(a[t * K + k]) && std::isfinite(b[t * K + k]));
      if (a[t * K + k] != wantA || b[t * K + k] != wantB) {
        if (++mismatches <= 5)
          ADD_FAILURE() << "row " << t << " column " << k << ": x " << v << " int8 " << a[t * K + k]
                        << " (want " << wantA << "), fp8 " << b[t * K + k] << " (want " << wantB
                        << ")";
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  // The rounding is real: row 5's halves went to even codes (0.5 -> 0, 1.5 -> 2).
  EXPECT_EQ(a[5 * K + 10], 0.0f);
  EXPECT_EQ(a[5 * K + 11], 2.0f);
}

// Static W8A8 activations (llm.static_quant, compressed-tensors' FP8 preset):
// every value with the one stored scale, x / s clamped and rounded, times s.
// Bit for bit against the formula written out, on fresh random values of
// which some lie beyond the scale's range (clamped) and some on exact ties.
TEST_F(LoweringNumericsTest, StaticQuantBitForBit) {
  SEED_TRACE();
  const int T = 5, K = 40;
  Kernel kernel(R"(
    func.func @forward(%x: tensor<?x40xf32>, %s: tensor<1xf32>) -> (tensor<?x40xf32>, tensor<?x40xf32>) {
      %a = llm.static_quant int8 %x, %s : tensor<?x40xf32>, tensor<1xf32>
      %b = llm.static_quant fp8_e4m3 %x, %s : tensor<?x40xf32>, tensor<1xf32>
      return %a, %b : tensor<?x40xf32>, tensor<?x40xf32>
    })");
  ASSERT_TRUE(kernel.ok()) << kernel.error;
  // s = 2^-3: x / s is exact, so row 4's half-steps are ties; random values
  // (sigma 30: |x / s| around 240) reach beyond both formats' ranges.
  float scale = 0.125f;
  std::vector<float> x = random(T * K, 30.0f);
  for (int k = 0; k < K; ++k)
    x[4 * K + k] = (static_cast<float>(k % 9) - 4.0f + 0.5f) * scale;
  std::vector<float> a(T * K), b(T * K);
  kernel.run({{x.data(), {T, K}}, {&scale, {1}}, {a.data(), {T, K}}, {b.data(), {T, K}}});
  int mismatches = 0, clamped = 0;
  for (int i = 0; i < T * K; ++i) {
    float v = x[i] / scale;
    clamped += std::fabs(v) > 448.0f;
    float wantA = std::nearbyint(std::min(std::max(v, -128.0f), 127.0f)) * scale;
    float wantB = nearestE4M3(std::min(std::max(v, -448.0f), 448.0f)) * scale;
    ASSERT_TRUE(std::isfinite(a[i]) && std::isfinite(b[i]));
    if ((a[i] != wantA || b[i] != wantB) && ++mismatches <= 5)
      ADD_FAILURE() << "value " << i << ": x " << x[i] << " int8 " << a[i] << " (want " << wantA
                    << "), fp8 " << b[i] << " (want " << wantB << ")";
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(clamped, 0) << "no value beyond the scale's range: the clamp went unchecked";
  // Ties to even: -3.5 -> -4, 0.5 -> 0.
  EXPECT_EQ(a[4 * K + 0], -4.0f * scale);
  EXPECT_EQ(a[4 * K + 4], 0.0f);
}

// W8A8 rows (llm.dynamic_quant int8 in front of a linear on a packed integer
// weight): the CPU lowering hands the linear the raw rows marked
// moir.row_quant, and the kernel quantizes them as compressed-tensors does
// (scale max|row| / 127.5, codes roundeven(clamp(x / scale, -128, 127))):
// with the int8 dot products (prefill's tiles from 8 rows, the decode row
// kernel, or the f32 kernel where the depth is not whole steps) and without
// (the f32 kernel on the rows' quantized values). The reference multiplies
// exactly those codes times the scale by the weights in double, within 1e-5
// of the largest output: the codes must be the reference's. One row is all
// zeros (scale f32's epsilon).
TEST_F(LoweringNumericsTest, W8A8RowsQuantizedByTheKernel) {
  SEED_TRACE();
  for (bool int8Dot : {true, false}) {
    SCOPED_TRACE(int8Dot ? "int8 dot products" : "f32 kernels");
    const int N = 37;
    // 8-bit codes, and 4-bit ones (W4A8: nibbles, whose decode row kernel
    // reads the codes in its own order).
    struct Case {
      int group, K;
      bool nibbles;
    };
    for (Case c : {Case{32, 96, false}, Case{128, 256, false}, Case{16, 80, false},
                   Case{32, 96, true}, Case{32, 256, true}}) {
      const int K = c.K, groups = K / c.group, bytes = c.nibbles ? K / 2 : K;
      SCOPED_TRACE(std::string(c.nibbles ? "u4" : "i8") + " group " + std::to_string(c.group) +
                   " K " + std::to_string(K));
      std::string ks = std::to_string(K);
      std::string scheme = c.nibbles        ? "kind = gguf, format = q4_1"
                           : c.group == 32 ? "kind = gguf, format = q8_0"
                                           : "kind = group, group = " + std::to_string(c.group);
      std::string qtype =
          "!llm.qtensor<37x" + ks + (c.nibbles ? "xi4" : "xi8") + ", #llm.quant<" + scheme + ">>";
      std::string data = "tensor<37x" + std::to_string(bytes) + "xi8>";
      std::string scales = "tensor<37x" + std::to_string(groups) + "x2xf32>";
      std::string act = "tensor<?x" + ks + "xf32>";
      Kernel kernel("func.func @forward(%x: " + act + ", %d: " + data + ", %s: " + scales +
                        ") -> tensor<?x37xf32> {\n"
                        "  %w = llm.packed_weight %d, %s group " + std::to_string(c.group) +
                        " : " + data + ", " + scales + " -> " + qtype + "\n"
                        "  %q = llm.dynamic_quant int8 %x : " + act + "\n"
                        "  %y = llm.linear %q, %w precise : (" + act + ", " + qtype +
                        ") -> tensor<?x37xf32>\n"
                        "  return %y : tensor<?x37xf32>\n}",
                    int8Dot);
      ASSERT_TRUE(kernel.ok()) << kernel.error;
      std::uniform_int_distribution<int> byte(0, 255);
      std::vector<uint8_t> d(N * bytes);
      for (uint8_t &v : d)
        v = static_cast<uint8_t>(byte(rng));
      std::vector<float> s = random(N * groups * 2, 0.05f);
      auto weight = [&](int n, int k) {
        int g = k / c.group;
        return double(s[(n * groups + g) * 2]) * packedCode(d, bytes, c.nibbles, n, k) +
               double(s[(n * groups + g) * 2 + 1]);
      };
      for (int T : {37, 5, 1}) {
        SCOPED_TRACE(std::to_string(T) + " rows");
        std::vector<float> x = random(T * K, 2.0f);
        if (T > 2)
          std::fill(x.begin() + 2 * K, x.begin() + 3 * K, 0.0f);
        std::vector<double> xq(T * K);
        for (int t = 0; t < T; ++t) {
          float amax = 0;
          for (int k = 0; k < K; ++k)
            amax = std::max(amax, std::fabs(x[t * K + k]));
          float scale = amax / 127.5f;
          if (scale == 0.0f)
            scale = std::numeric_limits<float>::epsilon();
          for (int k = 0; k < K; ++k)
            xq[t * K + k] =
                double(std::nearbyint(std::min(std::max(x[t * K + k] / scale, -128.0f), 127.0f))) *
                double(scale);
        }
        std::vector<float> y(T * N);
        kernel.run({{x.data(), {T, K}}, {d.data(), {N, bytes}}, {s.data(), {N, groups, 2}},
                    {y.data(), {T, N}}});
        expectClose(y, linearReference(xq, weight, T, N, K), 1e-5);
      }
    }
  }
}
