//===- HalideGeneratorTest.cpp - the Halide generator alone ---------------===//
//
// What the generator does without MLIR or a runtime: which Halide target a
// triple and LLVM's features map to, and compile-only checks of targets
// MoIR's runtime does not run (WebAssembly, Metal, Hexagon), where Halide
// can compile the kernels: object files of the right format.
//
//===----------------------------------------------------------------------===//

#include "moir/Target/Halide/Generator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

using namespace moir::halide;

namespace {

std::vector<KernelSpec> kernels() {
  KernelSpec norm;
  norm.symbol = "moir_hl_norm";
  norm.kind = "rms_norm";
  norm.inputs = {{ElementType::F32, {-1, 64}}, {ElementType::F32, {64}}};
  norm.outputs = {{ElementType::F32, {-1, 64}}};
  norm.numbers["epsilon"] = 1e-5;
  KernelSpec linear;
  linear.symbol = "moir_hl_linear";
  linear.kind = "linear";
  linear.inputs = {{ElementType::F32, {-1, 64}}, {ElementType::F16, {48, 64}}};
  linear.outputs = {{ElementType::F32, {-1, 48}}};
  linear.strings["variant"] = "decode";
  KernelSpec rope;
  rope.symbol = "moir_hl_rope";
  rope.kind = "rope";
  rope.inputs = {{ElementType::F32, {-1, 2, 16}}, {ElementType::I32, {-1}}};
  rope.outputs = {{ElementType::F32, {-1, 2, 16}}};
  rope.numbers = {{"dim", 16}, {"interleaved", 0}, {"factor", 1.0}};
  for (int j = 0; j < 8; ++j)
    rope.table.push_back(1.0 / std::pow(10000.0, j / 8.0));
  return {norm, linear, rope};
}

std::string head(const std::string &path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes(n, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(n));
  return bytes.substr(0, static_cast<size_t>(in.gcount()));
}

/// The objects and their temporary folder, as the artifact's linker does.
void removeObjects(const std::vector<std::string> &objects) {
  for (const std::string &o : objects)
    std::filesystem::remove(o);
  if (!objects.empty())
    std::filesystem::remove(std::filesystem::path(objects.front()).parent_path());
}

void compileFor(const std::string &target, const std::string &magic) {
  GeneratorOptions options;
  options.target = target;
  std::vector<std::string> objects;
  std::string error = generateKernels(kernels(), options, objects);
  ASSERT_EQ(error, "") << target;
  ASSERT_EQ(objects.size(), 4u) << "three kernels and the runtime for " << target;
  for (const std::string &o : objects) {
    EXPECT_EQ(head(o, magic.size()), magic) << o << " for " << target;
  }
  removeObjects(objects);
}

TEST(HalideTarget, MapsTriplesAndFeatures) {
  GeneratorOptions x86;
  x86.triple = "x86_64-unknown-linux-gnu";
  x86.features = {"sse4.1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512cd", "avx512bw",
                  "avx512dq", "avx512vl"};
  std::string error;
  EXPECT_EQ(halideTarget(x86, error), "x86-64-linux-sse41-avx-avx2-fma-f16c-avx512-avx512_skylake");
  GeneratorOptions arm;
  arm.triple = "aarch64-linux-gnu";
  arm.features = {"neon", "dotprod", "fullfp16"};
  EXPECT_EQ(halideTarget(arm, error), "arm-64-linux-arm_dot_prod-arm_fp16");
  GeneratorOptions riscv;
  riscv.triple = "riscv64-linux-gnu";
  EXPECT_EQ(halideTarget(riscv, error), "");
  EXPECT_NE(error.find("riscv64-linux-gnu"), std::string::npos) << error;
}

TEST(HalideTarget, LeavesNothingWithoutKernels) {
  // No kernel: no objects, and no temporary folder left in $TMPDIR.
  std::filesystem::path tmp = std::filesystem::temp_directory_path() / "moir-halide-test-empty";
  std::filesystem::remove_all(tmp);
  std::filesystem::create_directories(tmp);
  const char *old = std::getenv("TMPDIR");
  std::string saved = old ? old : "";
  setenv("TMPDIR", tmp.c_str(), 1);
  GeneratorOptions options;
  options.target = "x86-64-linux-avx2";
  std::vector<std::string> objects;
  std::string error = generateKernels({}, options, objects);
  old ? setenv("TMPDIR", saved.c_str(), 1) : unsetenv("TMPDIR");
  EXPECT_EQ(error, "");
  EXPECT_TRUE(objects.empty());
  EXPECT_TRUE(std::filesystem::is_empty(tmp));
  std::filesystem::remove_all(tmp);
}

TEST(HalideTarget, RefusesWhatIsNotATarget) {
  GeneratorOptions options;
  options.target = "x86-64-linux-no_such_feature";
  std::vector<std::string> objects;
  std::string error = generateKernels(kernels(), options, objects);
  EXPECT_NE(error.find("is not a Halide target"), std::string::npos) << error;
  EXPECT_TRUE(objects.empty());
}

// Compile-only: the runtime runs none of these here.
TEST(HalideTarget, CompilesForWebAssembly) { compileFor("wasm-32-wasmrt", std::string("\0asm", 4)); }
TEST(HalideTarget, CompilesForMetal) {
  compileFor("arm-64-osx-metal", std::string("\xcf\xfa\xed\xfe", 4)); // Mach-O 64-bit
}
// Vulkan: the kernels' SPIR-V is inside the host object (halide-vulkan.test
// runs them where a Vulkan driver is installed).
TEST(HalideTarget, CompilesForVulkan) {
  GeneratorOptions options;
  options.triple = "x86_64-unknown-linux-gnu";
  options.features = {"sse4.1", "avx", "avx2", "fma"};
  std::vector<KernelSpec> specs = kernels();
  for (KernelSpec &spec : specs)
    spec.strings["device"] = "vulkan";
  std::vector<std::string> objects;
  ASSERT_EQ(generateKernels(specs, options, objects), "");
  ASSERT_EQ(objects.size(), 4u);
  for (const std::string &o : objects) {
    EXPECT_EQ(head(o, 4), std::string("\x7f" "ELF", 4)) << o;
  }
  removeObjects(objects);
}
TEST(HalideTarget, CompilesForHexagon) {
  compileFor("hexagon-32-qurt-hvx-hvx_v68", std::string("\x7f" "ELF", 4));
}

// hostBitcode: host kernels come out as LLVM bitcode (for MoIR's LLVM to
// compile, moir-halide-compile-kernels), device kernels and the runtime as
// objects.
TEST(HalideTarget, WritesHostKernelsAsBitcode) {
  GeneratorOptions options;
  options.triple = "x86_64-unknown-linux-gnu";
  options.features = {"sse4.1", "avx", "avx2", "fma"};
  options.hostBitcode = true;
  std::vector<KernelSpec> specs = kernels();
  specs.back().strings["device"] = "opencl";
  std::vector<std::string> objects;
  ASSERT_EQ(generateKernels(specs, options, objects), "");
  ASSERT_EQ(objects.size(), 4u);
  size_t bitcode = 0;
  for (const std::string &o : objects) {
    bool bc = o.size() > 3 && o.compare(o.size() - 3, 3, ".bc") == 0;
    EXPECT_EQ(head(o, 4), bc ? std::string("BC\xc0\xde", 4) : std::string("\x7f" "ELF", 4)) << o;
    bitcode += bc;
  }
  EXPECT_EQ(bitcode, 2u) << "the two host kernels; the OpenCL one and the runtime are objects";
  removeObjects(objects);
}

} // namespace
