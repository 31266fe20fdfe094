//===- Generator.h - MoIR's kernels as Halide pipelines ---------*- C++ -*-===//
//
// The Halide side of the second code generator, free of MLIR (and of
// Halide's headers): the MLIR side describes each kernel a pass selected
// (moir.halide_call) as a KernelSpec, and generateKernels builds one Halide
// pipeline per spec from its shapes and dtypes, schedules it (a schedule
// text: written out with --halide-schedules-out, read back with
// --halide-schedules-in), and compiles it ahead of time to an object file
// for the artifact's target, plus one object with Halide's runtime.
// libHalide is built with RTTI and exceptions; this interface keeps both
// inside the library that links it.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_HALIDE_GENERATOR_H
#define MOIR_TARGET_HALIDE_GENERATOR_H

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moir::halide {

enum class ElementType { F32, BF16, F16, I32, I64, I8 };

/// A buffer of a kernel: element type and shape, outermost dimension first
/// (as in MLIR); -1 is a dimension known only at run time.
///
/// A quantized weight in one of the packed forms the kernels read
/// (include/moir/Frontend/Quantization.h) has `packed` set to its form,
/// "i8:<group>" or "u4:32", and `shape` the weight's own (dequantized)
/// shape; its buffer holds the codes (i8: one per element; u4: two per
/// byte, the last dimension halved) and its scales are the kernel's
/// KernelSpec::scales.
struct TensorSpec {
  ElementType type = ElementType::F32;
  std::vector<int64_t> shape;
  std::string packed;
  /// A packed weight whose integer codes multiply activations quantized to
  /// int8 (integer dot products, per-block scales after), not f32 ones.
  bool int8 = false;
};

/// One kernel: `int symbol(halide_buffer_t *inputs..., halide_buffer_t
/// *outputs...)`.
struct KernelSpec {
  std::string symbol;
  /// rms_norm (inputs x, weight; epsilon, offset), linear (x, weight
  /// [out, in], optional bias), glu (gate, up; activation), activation (x;
  /// activation), rope (x [tokens, heads, head_dim], positions [tokens];
  /// dim, interleaved, factor, inv_freq), glu_linear (gate, up, weight,
  /// optional bias; activation), router (x [tokens, hidden], router
  /// [experts, hidden], optional correction bias [experts]; top_k,
  /// sigmoid, method (greedy, group_limited, noaux_tc), n_group,
  /// topk_group, norm_topk_prob, scaling -> weights and ids [tokens,
  /// top_k]), experts (x, ids, weights, gate/up [experts, ffn, hidden],
  /// down [experts, hidden, ffn], optional shared gate/up [ffn', hidden]
  /// and down [hidden, ffn']; activation).
  std::string kind;
  std::vector<TensorSpec> inputs;
  /// The scales of the packed inputs, in input order ([..., cols / group,
  /// 2] scale and offset, or [..., cols / group, 1] symmetric; f32 or f16):
  /// the kernel's arguments after `inputs`.
  std::vector<TensorSpec> scales;
  /// Every output has the first one's shape (a kernel with several outputs
  /// computes them together, a Halide Tuple).
  std::vector<TensorSpec> outputs;
  std::map<std::string, double> numbers;
  std::map<std::string, std::string> strings;
  std::vector<double> table;
};

struct GeneratorOptions {
  /// LLVM's view of the target: triple and the features its CPU enables
  /// ("avx2", "fma", "avx512f", ...), mapped to a Halide target.
  std::string triple;
  std::vector<std::string> features;
  /// When set, the Halide target as is ("wasm-32-wasmrt",
  /// "arm-64-osx-metal", ...), instead of one mapped from triple and
  /// features: compile-only checks of targets MoIR's runtime does not run.
  std::string target;
  /// When set: the folder the schedules are written to / read from, one
  /// file `<symbol>.schedule` per kernel.
  std::string schedulesOut, schedulesIn;
  /// When set: Halide's autoscheduler (Mullapudi2016 or Li2018)
  /// schedules each kernel that has no schedules-in file, for
  /// `parallelism` cores, instead of the default schedules.
  std::string autoscheduler;
  int parallelism = 16;
  /// The host kernels (not the device ones, nor the runtime) as LLVM
  /// bitcode (`<symbol>.bc`), Halide's optimized IR, instead of objects:
  /// moir-halide-compile-kernels makes the objects with MoIR's LLVM
  /// (objectFromHalideBitcode), which sets the prefetches' cache level.
  bool hostBitcode = false;
};

/// The Halide target string for `options` ("x86-64-linux-avx2-fma-...").
/// Empty, with `error` set, for a triple Halide cannot compile for.
std::string halideTarget(const GeneratorOptions &options, std::string &error);

/// Compiles every kernel and Halide's runtime to object files (host
/// kernels to bitcode with `hostBitcode`) in a new temporary folder, their
/// paths appended to `objects`. Returns an error
/// message (naming the kernel and, for a schedule file, the file and line),
/// or "" on success; on an error no object and no folder is left.
std::string generateKernels(const std::vector<KernelSpec> &specs, const GeneratorOptions &options,
                            std::vector<std::string> &objects);

} // namespace moir::halide

#endif // MOIR_TARGET_HALIDE_GENERATOR_H
