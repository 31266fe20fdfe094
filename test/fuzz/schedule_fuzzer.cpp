//===- schedule_fuzzer.cpp - libFuzzer target for Halide schedule texts ---===//
//
// The input is a schedule text (moirc --halide-schedules-in). It is applied
// to kernels of every kind the generator builds (a linear's decode and
// prefill forms, glu_linear, RMSNorm, RoPE); where it applies, the pipeline
// is lowered for x86-64 AVX2. Every outcome must be a result or an error
// (std::runtime_error from the parser, Halide::Error from Halide), never a
// crash.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include <string>
#include <vector>

using namespace moir::halide;

namespace {

std::vector<KernelSpec> specs() {
  std::vector<KernelSpec> all;
  KernelSpec linear;
  linear.symbol = "linear_decode";
  linear.kind = "linear";
  linear.inputs = {{ElementType::F32, {-1, 96}}, {ElementType::BF16, {40, 96}}};
  linear.outputs = {{ElementType::F32, {-1, 40}}};
  linear.strings["variant"] = "decode";
  linear.numbers["lanes"] = 8;
  all.push_back(linear);
  linear.symbol = "linear_prefill";
  linear.strings["variant"] = "prefill";
  all.push_back(linear);
  KernelSpec fused = linear;
  fused.symbol = "glu_linear";
  fused.kind = "glu_linear";
  fused.inputs = {{ElementType::F32, {-1, 96}}, {ElementType::F32, {-1, 96}},
                  {ElementType::F32, {40, 96}}};
  fused.strings["activation"] = "silu";
  all.push_back(fused);
  KernelSpec norm;
  norm.symbol = "rms_norm";
  norm.kind = "rms_norm";
  norm.inputs = {{ElementType::F32, {-1, 3, 16}}, {ElementType::F32, {16}}};
  norm.outputs = {{ElementType::F32, {-1, 3, 16}}};
  norm.numbers["epsilon"] = 1e-6;
  all.push_back(norm);
  KernelSpec rope;
  rope.symbol = "rope";
  rope.kind = "rope";
  rope.inputs = {{ElementType::F32, {-1, 2, 16}}, {ElementType::I64, {-1}}};
  rope.outputs = {{ElementType::F32, {-1, 2, 16}}};
  rope.numbers = {{"dim", 8}, {"interleaved", 1}, {"factor", 1.0}};
  rope.table = {1.0, 0.1, 0.01, 0.001};
  all.push_back(rope);
  return all;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const std::vector<KernelSpec> kSpecs = specs();
  static const Halide::Target kTarget("x86-64-linux-avx-avx2-fma-sse41-no_runtime");
  installReporter();
  std::string text(reinterpret_cast<const char *>(data), size);
  for (const KernelSpec &spec : kSpecs) {
    try {
      BuiltKernel kernel = buildKernel(spec);
      applySchedule(kernel, text, "fuzz");
      std::vector<Halide::Argument> args(kernel.inputs.begin(), kernel.inputs.end());
      kernel.output.compile_to_module(args, spec.symbol, kTarget);
      checkCompiled();
    } catch (const Halide::Error &) {
    } catch (const std::runtime_error &) {
    }
  }
  return 0;
}
