//===- Options.h - one set of compile options ------------------*- C++ -*-===//
//
// CompileOptions is the one object a compile reads: moirc binds its command
// line to it, moir-opt's moir-compile pipeline builds it from its options,
// and C++ callers fill it in. Its fields come from Options.def.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_PIPELINES_OPTIONS_H
#define MOIR_PIPELINES_OPTIONS_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace moir {

/// The phases a compile goes through, in order; `--compile-to=<phase>` stops
/// after one and prints its IR. A target goes through input, graph and
/// linalg, then its own: llvm (CPU); kernels, device, binary, llvm (GPUs).
enum class CompilePhase {
  /// The importer's output, checked against the input contract.
  Input,
  /// Graph-level IR: composite ops decomposed, fused, canonicalized.
  Graph,
  /// The target's lowering configuration written, weights bound to entry
  /// arguments, every MoIR op lowered to linalg/tensor/scf on tensors.
  Linalg,
  /// GPUs: bufferized, mapped onto gpu.launch kernels in one gpu.module,
  /// host code with async launches.
  Kernels,
  /// GPUs: the kernels lowered to the vendor's LLVM dialect (NVVM, ROCDL).
  Device,
  /// GPUs: the kernels serialized (fatbin, HSACO) into gpu.binary.
  Binary,
  /// The LLVM dialect with the exported entry `moir_forward`: the whole
  /// model (CPU) or the host code (GPUs).
  LLVM,
};

/// Phase names as `--compile-to` spells them, in order.
llvm::ArrayRef<CompilePhase> allCompilePhases();
llvm::StringRef stringifyCompilePhase(CompilePhase phase);
std::optional<CompilePhase> parseCompilePhase(llvm::StringRef name);

/// Import choices: what the importer builds.
struct ImportSection {
#define MOIR_IMPORT_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) TYPE FIELD = DEFAULT;
#include "moir/Pipelines/Options.def"
};

/// Target-neutral choices of the graph phase (each fusion's reference form
/// is one flag away).
struct GraphSection {
#define MOIR_GRAPH_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) TYPE FIELD = DEFAULT;
#include "moir/Pipelines/Options.def"
  /// The expert loads read from --expert-placement's files by the driver, as
  /// moe-expert-parallel's `loads` option ("<layer>=<count>,...;...").
  std::string expertLoads;

  /// The ranks of a parallel artifact (--expert-parallel, --tensor-parallel;
  /// both: the same ranks), 1 without.
  int64_t parallelRanks() const { return std::max(expertParallel, tensorParallel); }
};

/// The CPU target's choices.
struct CPUSection {
#define MOIR_CPU_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) TYPE FIELD = DEFAULT;
#include "moir/Pipelines/Options.def"
  unsigned optLevel = 3;
};

/// The GPU targets' choices.
struct GPUSection {
#define MOIR_GPU_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) TYPE FIELD = DEFAULT;
#include "moir/Pipelines/Options.def"
  unsigned optLevel = 3;
};

/// Everything a compile reads.
struct CompileOptions {
  /// A registered target backend: cpu, nvidia, amd.
  std::string target = "cpu";
  ImportSection import;
  GraphSection graph;
  CPUSection cpu;
  GPUSection gpu;
  /// GPUs: also write the device binary (fatbin, HSACO) to this file, for
  /// checks; empty: no.
  std::string deviceCodePath;
  /// GPUs: also write the kernels' assembly text (PTX, AMDGCN) to this file;
  /// empty: no. It costs the device code generation a second time.
  std::string deviceAssemblyPath;
  /// Also write every quantized weight's values as the compiled code sees
  /// them (f32, safetensors) to this file, for references; empty: no.
  std::string dequantizedWeightsPath;
  /// With a key file (moirc --sign): the artifact is signed with it.
  std::string signingKeyPath;
  /// Named resources packed after the weights: the tokenizer
  /// (tokenizer.json, tokenizer_config.json, chat_template.jinja), which
  /// moirc reads from the checkpoint (moir/Frontend/Tokenizer.h).
  std::vector<std::pair<std::string, std::string>> resources;
};

/// Checks the values an option list cannot (a known KV-cache format, a
/// thread count in range); the message names the flag. The importer checks
/// the import section, a target's configure() its own section.
llvm::Error validateOptions(const CompileOptions &options);

/// "800M", "12G", "64K", "4096": bytes (K, M, G: powers of 1024); nullopt
/// for anything else, zero or an overflow.
std::optional<uint64_t> parseByteSize(llvm::StringRef text);

/// Each option's flag and the targets it applies to ("" = all), from
/// Options.def, for drivers that refuse options for other targets.
struct OptionSpelling {
  llvm::StringLiteral flag;
  llvm::StringLiteral targets;
};
llvm::ArrayRef<OptionSpelling> optionSpellings();
/// Whether an option whose TARGETS is `targets` applies to `target`.
bool optionAppliesTo(llvm::StringRef targets, llvm::StringRef target);

} // namespace moir

#endif // MOIR_PIPELINES_OPTIONS_H
