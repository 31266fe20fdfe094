//===- moirc.cpp - MoIR's compile driver -----------------------------------===//
//
// moirc MODEL --target=cpu|nvidia|amd -o model.moir     an artifact
// moirc MODEL [--target=T] --compile-to=PHASE [-o F]    a phase's IR
// moirc MODEL --report                                  work per token
//
// MODEL is a Hugging Face checkpoint folder (config.json + safetensors), a
// GGUF file, or a .mlir module already in the input contract. The options
// are one CompileOptions object (moir/Pipelines/Options.def); the driver
// library runs the target's phases.
//
//===----------------------------------------------------------------------===//

#include "MoIR/IR/MoIRDialect.h"
#include "moir/Driver/Compile.h"
#include "moir/Frontend/GGUF.h"
#include "moir/Frontend/Importer.h"
#include "moir/Frontend/Tokenizer.h"
#include "moir/InitAll.h"
#include "moir/Pipelines/Options.h"
#include "moir/Target/ArtifactSigning.h"
#include "moir/Target/TargetBackend.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/Timing.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

#include <csignal>

using namespace mlir;
namespace cl = llvm::cl;

namespace {

cl::OptionCategory ioCategory("Input, output and target");
cl::OptionCategory graphCategory("Graph phase (fusions; every target unless noted)");
cl::OptionCategory cpuCategory("CPU target (--target=cpu)");
cl::OptionCategory gpuCategory("GPU targets (--target=nvidia, --target=amd)");
cl::OptionCategory reportCategory("Report (--report)");

/// The one options object every flag below is bound to.
moir::CompileOptions options;

cl::opt<std::string> inputFile(cl::Positional,
                               cl::desc("<checkpoint folder | model.gguf | module.mlir>"),
                               cl::Optional, cl::cat(ioCategory));
cl::opt<std::string> outputFile("o", cl::desc("output file: the artifact, or the IR of a phase "
                                               "(default: stdout)"),
                                cl::value_desc("file"), cl::init("-"), cl::cat(ioCategory));
cl::opt<std::string> target("target",
                            cl::desc("compile for this target (the list is set in main from the "
                                     "backend registry)"),
                            cl::init(""), cl::cat(ioCategory));
cl::opt<std::string> compileTo("compile-to",
                               cl::desc("stop after this phase and print its IR: input, graph, "
                                        "linalg, kernels, device, binary (GPUs), llvm "
                                        "(default without --target: graph)"),
                               cl::init("graph"), cl::cat(ioCategory));
cl::opt<std::string, true> deviceCode(
    "dump-device-code",
    cl::desc("GPU targets: also write the device binary (fatbin, HSACO) to this file, for "
             "checks"),
    cl::value_desc("file"), cl::location(options.deviceCodePath), cl::cat(gpuCategory));
cl::opt<std::string, true> deviceAssembly(
    "dump-device-assembly",
    cl::desc("GPU targets: also write the kernels' assembly text (PTX, AMDGCN) to this file, "
             "for checks (NVIDIA: the PTX the fatbin is made from; AMD: generated a second time)"),
    cl::value_desc("file"), cl::location(options.deviceAssemblyPath), cl::cat(gpuCategory));

cl::opt<std::string, true> dequantizedWeights(
    "dump-dequantized-weights",
    cl::desc("also write each quantized weight's values as the compiled code sees them (f32 "
             "safetensors, one tensor per checkpoint tensor), for references"),
    cl::value_desc("file"), cl::location(options.dequantizedWeightsPath), cl::cat(ioCategory));

cl::opt<std::string, true> signingKey(
    "sign",
    cl::desc("sign the artifact with this secret key (Ed25519; a runtime given trusted keys "
             "refuses unsigned or wrongly signed artifacts)"),
    cl::value_desc("key file"), cl::location(options.signingKeyPath), cl::cat(ioCategory));
cl::opt<std::string> tokenizerFile(
    "tokenizer",
    cl::desc("pack this tokenizer.json (with the tokenizer_config.json, generation_config.json "
             "and chat template beside it) into the artifact; default: MODEL/tokenizer.json "
             "when MODEL is a folder that has one, a GGUF file's own vocabulary; 'none': no "
             "tokenizer"),
    cl::value_desc("file"), cl::cat(ioCategory));
cl::opt<std::string> tokenizerOut(
    "tokenizer-out",
    cl::desc("write the tokenizer resources moirc packs (tokenizer.json, tokenizer_config.json, "
             "chat_template.jinja) into this folder; without --target, nothing else"),
    cl::value_desc("dir"), cl::cat(ioCategory));
cl::opt<std::string> generateKey(
    "generate-signing-key",
    cl::desc("write a new signing key pair to PREFIX.key (secret) and PREFIX.pub (public, for "
             "the runtime's trusted-keys file), then exit"),
    cl::value_desc("PREFIX"), cl::cat(ioCategory));

cl::opt<bool> report("report",
                     cl::desc("print, per layer and in total, the FLOPs and bytes per decode "
                              "token and per prefill token with and without the fusions, and "
                              "the fusions applied (alone: only the report)"),
                     cl::init(false), cl::cat(reportCategory));
cl::opt<int64_t> reportContext("report-context", cl::desc("context of the decode token"),
                               cl::init(4096), cl::cat(reportCategory));
cl::opt<int64_t> reportPrompt("report-prompt", cl::desc("prefill length"), cl::init(512),
                              cl::cat(reportCategory));

// Every compile option, from Options.def, bound to `options`.
#define MOIR_OPTION_FLAG(CATEGORY, SECTION, TYPE, FIELD, FLAG, DEFAULT, HELP)                      \
  cl::opt<TYPE, true> SECTION##_##FIELD(FLAG, cl::desc(HELP), cl::location(options.SECTION.FIELD), \
                                        cl::init(DEFAULT), cl::cat(CATEGORY));
#define MOIR_IMPORT_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP)                              \
  MOIR_OPTION_FLAG(ioCategory, import, TYPE, FIELD, FLAG, DEFAULT, HELP)
#define MOIR_GRAPH_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP)                               \
  MOIR_OPTION_FLAG(graphCategory, graph, TYPE, FIELD, FLAG, DEFAULT, HELP)
#define MOIR_CPU_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP)                                 \
  MOIR_OPTION_FLAG(cpuCategory, cpu, TYPE, FIELD, FLAG, DEFAULT, HELP)
#define MOIR_GPU_OPTION(TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP)                                 \
  MOIR_OPTION_FLAG(gpuCategory, gpu, TYPE, FIELD, FLAG, DEFAULT, HELP)
#include "moir/Pipelines/Options.def"
#undef MOIR_OPTION_FLAG

int error(const llvm::Twine &message) {
  llvm::errs() << "moirc: error: " << message << "\n";
  return 1;
}

bool given(llvm::StringRef flag) {
  auto &registered = cl::getRegisteredOptions();
  auto it = registered.find(flag);
  return it != registered.end() && it->second->getNumOccurrences() > 0;
}

/// An option for another target is a mistake, not something to ignore.
bool refuseForeignOptions(llvm::StringRef targetName) {
  for (const moir::OptionSpelling &option : moir::optionSpellings())
    if (given(option.flag) && !moir::optionAppliesTo(option.targets, targetName)) {
      error("--" + option.flag + " does not apply to target '" + targetName +
            "' (it applies to: " + option.targets + ")");
      return true;
    }
  for (const char *flag : {"dump-device-code", "dump-device-assembly"})
    if (given(flag) && targetName == "cpu") {
      error("--" + std::string(flag) + " applies to GPU targets only");
      return true;
    }
  if ((given("report-context") || given("report-prompt")) && !report) {
    error("--report-context and --report-prompt go with --report");
    return true;
  }
  return false;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  // A file-size limit then fails the write like a full disk does, with an
  // error, instead of killing moirc.
  std::signal(SIGXFSZ, SIG_IGN);
  moir::registerAllPasses(); // for -mlir-print-ir-after=<pass>; registers the targets too
  // --target's help lists the backends this build has, as they describe
  // themselves.
  std::string targets = "compile for this target (with -o: an artifact; with --compile-to: "
                        "that phase for it):";
  for (const moir::TargetBackend *backend : moir::registeredTargetBackends())
    targets += " " + backend->name().str() + " = " + backend->description().str() + ";";
  targets.pop_back();
  target.setDescription(targets);
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  // --mlir-timing: each phase's passes timed (compile-time work).
  registerDefaultTimingManagerCLOptions();
  // MoIR's options in --help; LLVM's and MLIR's own under --help-hidden.
  const cl::OptionCategory *ours[] = {&ioCategory, &graphCategory, &cpuCategory, &gpuCategory,
                                      &reportCategory, &cl::getGeneralCategory()};
  for (auto &[name, option] : cl::getRegisteredOptions())
    if (llvm::none_of(option->Categories, [&](const cl::OptionCategory *category) {
          return llvm::is_contained(ours, category) && category != &cl::getGeneralCategory();
        }) && !name.starts_with("help") && name != "version")
      option->setHiddenFlag(cl::Hidden);
  cl::ParseCommandLineOptions(
      argc, argv,
      "MoIR compile driver\n\n"
      "  moirc MODEL --target=cpu -o model.moir       compile an artifact\n"
      "  moirc MODEL --target=T --compile-to=PHASE    print a phase's IR\n"
      "  moirc MODEL --report                         FLOPs and bytes per token\n\n"
      "MODEL: a Hugging Face checkpoint folder, a GGUF file or a .mlir module.\n");

  if (!generateKey.empty()) {
    if (llvm::Error err = moir::generateSigningKey(generateKey))
      return error(llvm::toString(std::move(err)));
    llvm::outs() << "wrote " << generateKey << ".key (secret) and " << generateKey
                 << ".pub (public)\n";
    return 0;
  }
  if (inputFile.empty())
    return error("no input: moirc MODEL ... (moirc --help)");
  std::optional<moir::CompilePhase> phase = moir::parseCompilePhase(compileTo);
  if (!phase) {
    llvm::SmallVector<std::string> names;
    for (moir::CompilePhase p : moir::allCompilePhases())
      names.push_back(moir::stringifyCompilePhase(p).str());
    return error("unknown phase '" + compileTo + "' for --compile-to (known: " +
                 llvm::join(names, ", ") + ")");
  }
  options.target = target.empty() ? "cpu" : target.getValue();
  if (llvm::Expected<const moir::TargetBackend *> backend =
          moir::lookupTargetBackend(options.target);
      !backend)
    return error(llvm::toString(backend.takeError()));
  if (refuseForeignOptions(options.target))
    return 1;
  if (llvm::Error err = moir::validateOptions(options))
    return error(llvm::toString(std::move(err)));
  if (report && (reportContext < 1 || reportPrompt < 1))
    return error("--report-context and --report-prompt must be positive");
  bool artifact = !target.empty() && !given("compile-to");
  if (!options.signingKeyPath.empty() && !artifact)
    return error("--sign goes with an artifact (--target=... -o FILE)");
  if (!options.signingKeyPath.empty())
    if (llvm::Error err = moir::checkSigningKey(options.signingKeyPath))
      return error(llvm::toString(std::move(err)));
  if (artifact && outputFile == "-" && !report)
    return error("--target needs -o <artifact.moir> (or --compile-to=PHASE for its IR)");

  // The tokenizer, packed so the artifact takes text: --tokenizer's file,
  // else MODEL/tokenizer.json, else a GGUF file's own vocabulary.
  if ((artifact || !tokenizerOut.empty()) && tokenizerFile != "none") {
    llvm::Expected<moir::frontend::TokenizerResources> resources =
        moir::frontend::TokenizerResources();
    llvm::SmallString<256> candidate(inputFile);
    llvm::sys::path::append(candidate, "tokenizer.json");
    if (!tokenizerFile.empty()) {
      resources = moir::frontend::readHFTokenizer(tokenizerFile);
    } else if (llvm::sys::fs::is_directory(inputFile)) {
      if (llvm::sys::fs::exists(candidate))
        resources = moir::frontend::readHFTokenizer(candidate);
    } else if (!llvm::StringRef(inputFile).ends_with(".mlir")) {
      moir::frontend::WeightStore metadataOnly;
      llvm::Expected<moir::frontend::GGUFFile> gguf =
          moir::frontend::readGGUF(inputFile, metadataOnly);
      if (!gguf)
        return error(llvm::toString(gguf.takeError()));
      resources = moir::frontend::readGGUFTokenizer(*gguf);
    }
    if (!resources)
      return error(llvm::toString(resources.takeError()));
    options.resources = std::move(*resources);
  }

  if (!tokenizerOut.empty()) {
    if (std::error_code ec = llvm::sys::fs::create_directories(tokenizerOut))
      return error(tokenizerOut + ": cannot create the folder: " + ec.message());
    for (const auto &[name, bytes] : options.resources) {
      llvm::SmallString<256> path(tokenizerOut);
      llvm::sys::path::append(path, name);
      std::error_code ec;
      llvm::raw_fd_ostream out(path, ec);
      if (!ec)
        out << bytes;
      if (ec || out.has_error())
        return error(std::string(path) + ": cannot write: " +
                     (ec ? ec : out.error()).message());
    }
    if (!artifact)
      return 0;
  }

  DialectRegistry registry;
  moir::registerAllDialects(registry);
  MLIRContext context(registry);

  std::string message;
  moir::frontend::WeightStore store;
  OwningOpRef<ModuleOp> module;
  auto sourceMgr = std::make_shared<llvm::SourceMgr>();
  SourceMgrDiagnosticHandler diagnostics(*sourceMgr, &context);
  if (!llvm::StringRef(inputFile).ends_with(".mlir")) {
    moir::frontend::ImportOptions import;
    import.cacheCapacity = options.import.cacheCapacity;
    import.weightType = options.import.weightType;
    import.weightTypeOverrides = options.import.weightTypeOverrides;
    auto imported = moir::frontend::importModel(context, inputFile, store, import);
    if (!imported)
      return error(llvm::toString(imported.takeError()));
    module = std::move(*imported);
  } else {
    std::unique_ptr<llvm::MemoryBuffer> input = openInputFile(inputFile, &message);
    if (!input)
      return error(message);
    sourceMgr->AddNewSourceBuffer(std::move(input), llvm::SMLoc());
    module = parseSourceFile<ModuleOp>(sourceMgr, &context);
    if (!module)
      return 1;
  }

  // Objects another code generator compiled for the artifact (Halide's
  // kernels, listed in moir.link_objects) are linked and removed by the
  // artifact's linker; a printed phase, or a compile that fails before the
  // link, leaves none behind either.
  auto removeLinkObjects = llvm::make_scope_exit([&] {
    if (!module)
      return;
    if (auto files = (*module)->getAttrOfType<mlir::ArrayAttr>(moir::attrs::linkObjectsName()))
      for (mlir::Attribute f : files) {
        llvm::StringRef path = llvm::cast<mlir::StringAttr>(f).getValue();
        llvm::sys::fs::remove(path);
        llvm::sys::fs::remove(llvm::sys::path::parent_path(path)); // only once empty
      }
  });
  if (report) {
    if (llvm::Error err =
            moir::reportWork(*module, options, reportContext, reportPrompt, llvm::outs()))
      return error(inputFile + ": " + llvm::toString(std::move(err)));
    if (!artifact && !given("compile-to"))
      return 0;
  }
  if (artifact) {
    if (llvm::Error err = moir::compileArtifact(*module, store, options, outputFile))
      return error(inputFile + ": " + llvm::toString(std::move(err)));
    return 0;
  }
  if (llvm::Error err = moir::compileToPhase(*module, options, *phase)) {
    llvm::errs() << "moirc: " << inputFile << ": " << llvm::toString(std::move(err)) << "\n";
    return 1;
  }
  std::unique_ptr<llvm::ToolOutputFile> output = openOutputFile(outputFile, &message);
  if (!output)
    return error(message);
  module->print(output->os());
  output->keep();
  return 0;
}
