//===- moirc.cpp - MoIR's compile driver -----------------------------------===//
//
// moirc MODULE.mlir --compile-to=<phase> -o OUT
//
// Runs the compile phases in order and stops after the one asked for, writing
// its IR. Today the input is a module in the input contract; checkpoint import
// (config.json + safetensors, GGUF) plugs in before the input phase.
//
//===----------------------------------------------------------------------===//

#include "moir/InitAll.h"
#include "moir/Pipelines/Pipelines.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;
namespace cl = llvm::cl;

static cl::opt<std::string> inputFile(cl::Positional, cl::desc("<module.mlir>"),
                                      cl::Required);
static cl::opt<std::string> outputFile("o", cl::desc("output file"),
                                       cl::value_desc("file"), cl::init("-"));
static cl::opt<std::string>
    compileTo("compile-to",
              cl::desc("stop after this phase and write its IR (input, graph)"),
              cl::init("graph"));

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  cl::ParseCommandLineOptions(argc, argv, "MoIR compile driver\n");

  std::optional<moir::CompilePhase> phase = moir::parseCompilePhase(compileTo);
  if (!phase) {
    llvm::errs() << "moirc: unknown phase '" << compileTo
                 << "' for --compile-to (known: input, graph)\n";
    return 1;
  }

  DialectRegistry registry;
  moir::registerAllDialects(registry);
  MLIRContext context(registry);

  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> input = openInputFile(inputFile, &error);
  if (!input) {
    llvm::errs() << "moirc: " << error << "\n";
    return 1;
  }
  auto sourceMgr = std::make_shared<llvm::SourceMgr>();
  sourceMgr->AddNewSourceBuffer(std::move(input), llvm::SMLoc());
  SourceMgrDiagnosticHandler diagnostics(*sourceMgr, &context);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    return 1;

  PassManager pm(&context);
  if (failed(applyPassManagerCLOptions(pm)))
    return 1;
  moir::buildPipelineToPhase(pm, *phase, moir::GraphPipelineOptions());
  if (failed(pm.run(*module))) {
    llvm::errs() << "moirc: " << inputFile << ": compiling to the '" << compileTo
                 << "' phase failed\n";
    return 1;
  }

  std::unique_ptr<llvm::ToolOutputFile> output = openOutputFile(outputFile, &error);
  if (!output) {
    llvm::errs() << "moirc: " << error << "\n";
    return 1;
  }
  module->print(output->os());
  output->keep();
  return 0;
}
