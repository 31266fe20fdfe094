//===- CompileKernels.cpp - the moir-halide-compile-kernels pass ----------===//
//
// Describes each distinct moir.halide_call as a KernelSpec (the generator's
// MLIR-free view: kind, buffers, params) and has the generator compile
// them for the target; the object files are recorded on the module for the
// host linker (moir.link_objects).
//
//===----------------------------------------------------------------------===//

#include "moir/Target/Halide/HalideTarget.h"
#include "moir/Target/Host/Host.h"

#ifdef MOIR_HAVE_HALIDE
#include "moir/Target/Halide/Generator.h"
#endif

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "llvm/Analysis/TargetLibraryInfo.h"
#include "llvm/Bitcode/BitcodeReader.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/IR/InstIterator.h"
#include "llvm/IR/IntrinsicInst.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/SubtargetFeature.h"

#include <map>

namespace moir {
#define GEN_PASS_DEF_HALIDECOMPILEKERNELSPASS
#include "moir/Target/Halide/Passes.h.inc"
} // namespace moir

using namespace mlir;

bool moir::halide::isAvailable() {
#ifdef MOIR_HAVE_HALIDE
  return true;
#else
  return false;
#endif
}

namespace {

#ifdef MOIR_HAVE_HALIDE
namespace hl = moir::halide;

/// Halide's parallel loops on the runtime's thread pool: a definition of
/// `int halide_do_par_for(void *uc, int (*task)(void *, int, uint8_t *),
/// int min, int size, uint8_t *closure)` that overrides the weak one in
/// Halide's runtime. Its loop is an scf.parallel, which the CPU pipeline
/// lowers to the runtime's fork/join like every other parallel loop, so the
/// kernels use MOIR_NUM_THREADS' threads and no second pool competes for
/// the cores. A failed task's code is or-ed into the result.
///
/// A loop of one task (a decode kernel's loops over its one token) runs on
/// the calling thread without a fork: moir-cpu-parallel-if gives the region
/// an if clause, as every other parallel loop's.
void defineParFor(ModuleOp module) {
  constexpr llvm::StringLiteral kName = "halide_do_par_for";
  if (module.lookupSymbol(kName))
    return;
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  OpBuilder b(module.getBodyRegion());
  Type ptr = LLVM::LLVMPointerType::get(ctx), i32 = b.getI32Type();
  auto func = func::FuncOp::create(b, loc, kName,
                                   b.getFunctionType({ptr, ptr, i32, i32, ptr}, {i32}));
  Block *body = func.addEntryBlock();
  b.setInsertionPointToStart(body);
  Value uc = body->getArgument(0), task = body->getArgument(1), closure = body->getArgument(4);
  auto resultType = MemRefType::get({1}, i32);
  Value result = memref::AllocaOp::create(b, loc, resultType);
  Value first = arith::ConstantIndexOp::create(b, loc, 0);
  memref::StoreOp::create(b, loc, arith::ConstantIntOp::create(b, loc, 0, 32), result,
                          ValueRange{first});
  Value lo = arith::IndexCastOp::create(b, loc, b.getIndexType(), body->getArgument(2));
  Value size = arith::IndexCastOp::create(b, loc, b.getIndexType(), body->getArgument(3));
  Value hi = arith::AddIOp::create(b, loc, lo, size);
  Value step = arith::ConstantIndexOp::create(b, loc, 1);
  scf::ParallelOp::create(
      b, loc, ValueRange{lo}, ValueRange{hi}, ValueRange{step},
      [&](OpBuilder &nb, Location l, ValueRange iv) {
        Value index = arith::IndexCastOp::create(nb, l, i32, iv[0]);
        auto type = LLVM::LLVMFunctionType::get(i32, {ptr, i32, ptr});
        Value rc = LLVM::CallOp::create(nb, l, type, ValueRange{task, uc, index, closure})
                       .getResult();
        memref::AtomicRMWOp::create(nb, l, arith::AtomicRMWKind::ori, rc, result,
                                    ValueRange{first});
      });
  func::ReturnOp::create(b, loc,
                         ValueRange{memref::LoadOp::create(b, loc, result, ValueRange{first})});
}

/// The cache level a Halide kernel's prefetches fill on `triple`: 2 (L2,
/// prefetcht1) on x86, where MLIR's weight kernels use it at 8 and 16
/// lanes (weightPrefetchLocality in ContractionKernels.cpp: AVX and
/// AVX-512, the widths MoIR's x86 targets have), 3 elsewhere (MLIR's at
/// 4 lanes, NEON; unmeasured).
int prefetchLocality(const llvm::Triple &triple) { return triple.isX86() ? 2 : 3; }

/// A Halide host kernel's object, made by MoIR's LLVM from the bitcode
/// Halide wrote (its optimized IR) with the settings Halide's own object
/// emission takes (get_target_options and make_target_machine in Halide
/// 21's CodeGen_Internal.cpp): target, CPU and features from the module
/// flags (each function also carries its target-cpu/target-features),
/// FP-op fusion, float ABI, ABI name, PIC, code model, function sections,
/// no relaxed x86 relocations, the target's library info. Halide's
/// NoInfs/NoNaNs/UnsafeFPMath options are not set: instruction selection
/// resets them from function attributes, which Halide does not write (and
/// LLVM 22 has no UnsafeFPMath).
///
/// Two things differ on purpose: Halide's runtime writes every prefetch a
/// schedule asks for as a non-temporal one (prefetchnta on x86), which
/// made a Mixtral-shaped Q8_0 decode 30% slower where a read into L2 made
/// it 38% faster; here each is a read prefetch into prefetchLocality's
/// level. And a kernel generated at Halide's Zen 4 level for a CPU without
/// AVX512-BF16 (halide::int8Target; `cpuFeatures` and `cpu` are the
/// artifact's CPU) is compiled for that CPU. Writes `object`; returns an
/// error message or "".
std::string objectFromHalideBitcode(const std::string &bitcode, const std::string &object,
                                    llvm::ArrayRef<std::string> cpuFeatures,
                                    llvm::StringRef cpu) {
  llvm::LLVMContext context;
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> buffer = llvm::MemoryBuffer::getFile(bitcode);
  if (!buffer)
    return bitcode + ": " + buffer.getError().message();
  llvm::Expected<std::unique_ptr<llvm::Module>> parsed =
      llvm::parseBitcodeFile((*buffer)->getMemBufferRef(), context);
  if (!parsed)
    return bitcode + ": MoIR's LLVM " LLVM_VERSION_STRING " cannot read Halide's bitcode (" +
           llvm::toString(parsed.takeError()) + "); is this Halide built on a newer LLVM?";
  llvm::Module &m = **parsed;
  if (llvm::verifyModule(m, &llvm::errs()))
    return bitcode + ": Halide's LLVM IR does not verify with MoIR's LLVM " LLVM_VERSION_STRING;
  auto flagString = [&](llvm::StringRef key) -> std::string {
    if (auto *s = llvm::dyn_cast_or_null<llvm::MDString>(m.getModuleFlag(key)))
      return s->getString().str();
    return "";
  };
  // A flag's value, `absent` where the module has none (Halide's own
  // defaults: PIC unless told otherwise).
  auto flagSet = [&](llvm::StringRef key, bool absent = false) {
    auto *c = llvm::mdconst::extract_or_null<llvm::ConstantInt>(m.getModuleFlag(key));
    return c ? !c->isZero() : absent;
  };
  const llvm::Triple &triple = m.getTargetTriple();
  // (LLVM's targets are initialized: moir::host::subtargetInfo, which the
  // pass calls before the generator, initializes them all.)
  std::string lookupError;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, lookupError);
  if (!target)
    return bitcode + ": no LLVM target for '" + triple.str() + "': " + lookupError;
  llvm::TargetOptions options;
  options.AllowFPOpFusion = flagSet("halide_per_instruction_fast_math_flags")
                                ? llvm::FPOpFusion::Strict
                                : llvm::FPOpFusion::Fast;
  options.FloatABIType =
      flagSet("halide_use_soft_float_abi") ? llvm::FloatABI::Soft : llvm::FloatABI::Hard;
  options.MCOptions.ABIName = flagString("halide_mabi");
  options.MCOptions.X86RelaxRelocations = false;
  options.FunctionSections = true;
  options.UseInitArray = true;
  std::optional<llvm::CodeModel::Model> codeModel;
  if (flagSet("halide_use_large_code_model"))
    codeModel = llvm::CodeModel::Large;
  // A kernel Halide compiled at its Zen 4 level for VNNI on a CPU without
  // AVX512-BF16 (halide::int8Target): compiled without it, and refused if
  // it converts bf16 after all (instruction selection would fail on it).
  std::string cpuName = flagString("halide_mcpu_target"), attrs = flagString("halide_mattrs");
  bool dropBF16 = triple.isX86() && !llvm::is_contained(cpuFeatures, "avx512bf16") &&
                  llvm::StringRef(attrs).contains("+avx512bf16");
  if (dropBF16) {
    for (llvm::Function &f : m) {
      for (llvm::Instruction &i : llvm::instructions(f)) {
        bool usesBF16 = i.getType()->getScalarType()->isBFloatTy() ||
                        llvm::any_of(i.operands(), [](const llvm::Use &u) {
                          return u->getType()->getScalarType()->isBFloatTy();
                        });
        if (auto *call = llvm::dyn_cast<llvm::CallBase>(&i))
          if (llvm::Function *callee = call->getCalledFunction())
            usesBF16 |= callee->isIntrinsic() && callee->getName().contains("bf16");
        if (usesBF16)
          return bitcode + ": Halide kernel function '" + f.getName().str() +
                 "' converts bf16, which this CPU has no instructions for (no avx512bf16)";
      }
    }
    auto withoutBF16 = [](llvm::StringRef features) {
      std::string out;
      llvm::SmallVector<llvm::StringRef> parts;
      features.split(parts, ',', -1, false);
      for (llvm::StringRef f : parts)
        out += (out.empty() ? "" : ",") +
               (f == "+avx512bf16" ? std::string("-avx512bf16") : f.str());
      return out;
    };
    // The CPU's own name, not Zen 4's: its name implies AMD's features too.
    attrs = withoutBF16(attrs);
    cpuName = cpu.str();
    for (llvm::Function &f : m) {
      if (f.hasFnAttribute("target-features"))
        f.addFnAttr("target-features",
                    withoutBF16(f.getFnAttribute("target-features").getValueAsString()));
      if (f.hasFnAttribute("target-cpu"))
        f.addFnAttr("target-cpu", cpuName);
    }
  }
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, cpuName, attrs, options,
      flagSet("halide_use_pic", /*absent=*/true) ? llvm::Reloc::PIC_ : llvm::Reloc::Static,
      codeModel,
      llvm::CodeGenOptLevel::Aggressive));
  if (!machine)
    return bitcode + ": cannot create a target machine for " + triple.str();
  if (m.getDataLayout() != machine->createDataLayout())
    return bitcode + ": Halide's data layout '" + m.getDataLayoutStr() +
           "' is not LLVM's for " + triple.str();
  llvm::Type *i32 = llvm::Type::getInt32Ty(context);
  for (llvm::Function &f : m)
    for (llvm::Instruction &i : llvm::instructions(f))
      if (auto *call = llvm::dyn_cast<llvm::IntrinsicInst>(&i);
          call && call->getIntrinsicID() == llvm::Intrinsic::prefetch) {
        call->setArgOperand(1, llvm::ConstantInt::get(i32, 0)); // read
        call->setArgOperand(2, llvm::ConstantInt::get(i32, prefetchLocality(triple)));
      }
  std::error_code ec;
  llvm::raw_fd_ostream os(object, ec, llvm::sys::fs::OF_None);
  if (ec)
    return object + ": " + ec.message();
  llvm::legacy::PassManager pm;
  pm.add(new llvm::TargetLibraryInfoWrapperPass(triple));
  if (machine->addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::ObjectFile))
    return bitcode + ": the target cannot emit object files";
  pm.run(m);
  os.close();
  if (os.has_error())
    return object + ": " + os.error().message();
  return "";
}

FailureOr<hl::TensorSpec> tensorSpec(Operation *op, Type type) {
  auto tensor = cast<RankedTensorType>(type);
  hl::TensorSpec spec;
  Type e = tensor.getElementType();
  if (e.isF32())
    spec.type = hl::ElementType::F32;
  else if (e.isBF16())
    spec.type = hl::ElementType::BF16;
  else if (e.isF16())
    spec.type = hl::ElementType::F16;
  else if (e.isInteger(32))
    spec.type = hl::ElementType::I32;
  else if (e.isInteger(64))
    spec.type = hl::ElementType::I64;
  else if (e.isInteger(8) || isa<Float8E4M3FNType>(e))
    spec.type = hl::ElementType::I8; // FP8 codes: bytes the kernel decodes
  else
    return op->emitOpError() << "Halide kernels take f32, bf16, f16, i32, i64 or i8 buffers, not "
                             << type;
  for (int64_t d : tensor.getShape())
    spec.shape.push_back(ShapedType::isDynamic(d) ? -1 : d);
  return spec;
}

FailureOr<hl::KernelSpec> kernelSpec(moir::HalideCallOp call) {
  hl::KernelSpec spec;
  spec.symbol = call.getCallee().str();
  spec.kind = call.getKernel().str();
  for (Value input : call.getInputs()) {
    FailureOr<hl::TensorSpec> t = tensorSpec(call, input.getType());
    if (failed(t))
      return failure();
    spec.inputs.push_back(*t);
  }
  // Packed quantized weights ("packed" = "<input>=<form>,..."; their scales
  // are the last inputs, in that order).
  if (auto packed = call.getParams().getAs<StringAttr>("packed")) {
    SmallVector<StringRef> entries;
    packed.getValue().split(entries, ',', -1, false);
    if (entries.size() >= spec.inputs.size())
      return call.emitOpError() << "more packed weights than inputs: " << packed;
    size_t logical = spec.inputs.size() - entries.size();
    for (StringRef entry : entries) {
      auto [index, form] = entry.split('=');
      unsigned i;
      if (index.getAsInteger(10, i) || i >= logical || spec.inputs[i].type != hl::ElementType::I8 ||
          !(form.starts_with("i8:") || form == "u4:32" || form.starts_with("f8e4m3:")))
        return call.emitOpError() << "malformed packed weight '" << entry << "'";
      spec.inputs[i].packed = form.str();
      if (form.starts_with("u4"))
        spec.inputs[i].shape.back() *= 2;
    }
    spec.scales.assign(spec.inputs.begin() + logical, spec.inputs.end());
    spec.inputs.resize(logical);
  }
  // Packed weights whose codes multiply int8 activations ("int8" =
  // "<input>,...", moir-halide-select-kernels).
  if (auto int8 = call.getParams().getAs<StringAttr>("int8")) {
    SmallVector<StringRef> entries;
    int8.getValue().split(entries, ',', -1, false);
    for (StringRef entry : entries) {
      unsigned i;
      if (entry.getAsInteger(10, i) || i >= spec.inputs.size() || spec.inputs[i].packed.empty())
        return call.emitOpError() << "int8 names input '" << entry
                                  << "', which is not a packed weight";
      spec.inputs[i].int8 = true;
    }
  }
  for (Type type : call.getResultTypes()) {
    FailureOr<hl::TensorSpec> out = tensorSpec(call, type);
    if (failed(out))
      return failure();
    spec.outputs.push_back(*out);
  }
  for (NamedAttribute p : call.getParams()) {
    StringRef name = p.getName().getValue();
    if (auto f = dyn_cast<FloatAttr>(p.getValue()))
      spec.numbers[name.str()] = f.getValueAsDouble();
    else if (auto i = dyn_cast<IntegerAttr>(p.getValue()))
      spec.numbers[name.str()] = static_cast<double>(i.getInt());
    else if (auto s = dyn_cast<StringAttr>(p.getValue()))
      spec.strings[name.str()] = s.str();
    else if (auto a = dyn_cast<DenseF64ArrayAttr>(p.getValue()))
      spec.table.assign(a.asArrayRef().begin(), a.asArrayRef().end());
    else
      return call.emitOpError() << "param '" << name << "' has no Halide form";
  }
  return spec;
}
#endif

struct HalideCompileKernelsPass
    : moir::impl::HalideCompileKernelsPassBase<HalideCompileKernelsPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<moir::HalideCallOp> calls;
    module.walk([&](moir::HalideCallOp call) { calls.push_back(call); });
    if (calls.empty())
      return;
#ifndef MOIR_HAVE_HALIDE
    calls.front().emitOpError()
        << "this moirc was built without Halide (scripts/setup.sh installs it; "
           "rebuild), so it cannot compile Halide kernels";
    return signalPassFailure();
#else
    // One spec per callee; calls of one callee must agree.
    std::map<std::string, hl::KernelSpec> specs;
    std::map<std::string, moir::HalideCallOp> first;
    for (moir::HalideCallOp call : calls) {
      auto [it, inserted] = first.emplace(call.getCallee().str(), call);
      if (!inserted) {
        moir::HalideCallOp other = it->second;
        if (other.getKernel() != call.getKernel() || other.getParams() != call.getParams() ||
            other->getOperandTypes() != call->getOperandTypes() ||
            other->getResultTypes() != call->getResultTypes()) {
          call.emitOpError() << "callee '" << call.getCallee()
                             << "' is used with another kernel, params or types";
          return signalPassFailure();
        }
        continue;
      }
      FailureOr<hl::KernelSpec> spec = kernelSpec(call);
      if (failed(spec))
        return signalPassFailure();
      specs.emplace(spec->symbol, std::move(*spec));
    }

    moir::host::HostOptions host;
    host.triple = triple;
    host.cpu = cpu;
    hl::GeneratorOptions options;
    options.triple = moir::host::resolveTriple(host);
    llvm::Expected<std::unique_ptr<llvm::MCSubtargetInfo>> info = moir::host::subtargetInfo(host);
    if (!info) {
      mlir::emitError(module.getLoc()) << llvm::toString(info.takeError());
      return signalPassFailure();
    }
    for (const llvm::SubtargetFeatureKV &f : (*info)->getAllProcessorFeatures())
      if ((*info)->checkFeatures(std::string("+") + f.Key))
        options.features.push_back(f.Key);
    options.schedulesIn = schedulesIn;
    options.schedulesOut = schedulesOut;
    options.autoscheduler = autoscheduler;
    options.parallelism = static_cast<int>(parallelism);

    std::vector<hl::KernelSpec> list;
    for (auto &[name, spec] : specs)
      list.push_back(spec);
    std::vector<std::string> objects;
    options.hostBitcode = true;
    std::string error = hl::generateKernels(list, options, objects);
    // The host kernels' bitcode made objects (objectFromHalideBitcode).
    for (std::string &o : objects) {
      if (!error.empty() || !llvm::StringRef(o).ends_with(".bc"))
        continue;
      std::string object = o.substr(0, o.size() - 3) + ".o";
      if (std::string e = objectFromHalideBitcode(o, object, options.features, (*info)->getCPU());
          !e.empty())
        error = "Halide: " + e;
      llvm::sys::fs::remove(o);
      o = object;
    }
    if (!error.empty()) {
      // Nothing left behind: the objects and their temporary folder.
      for (const std::string &o : objects)
        llvm::sys::fs::remove(o);
      if (!objects.empty())
        llvm::sys::fs::remove(llvm::sys::path::parent_path(objects.front()));
      // Not on the module: its diagnostic would print the whole module.
      mlir::emitError(module.getLoc()) << error;
      return signalPassFailure();
    }
    if (llvm::any_of(list, [](const hl::KernelSpec &k) { return !k.strings.count("device"); }))
      defineParFor(module);
    SmallVector<Attribute> files;
    if (auto existing = module->getAttrOfType<ArrayAttr>(moir::attrs::linkObjectsName()))
      files.append(existing.begin(), existing.end());
    for (const std::string &o : objects)
      files.push_back(StringAttr::get(module.getContext(), o));
    module->setAttr(moir::attrs::linkObjectsName(), ArrayAttr::get(module.getContext(), files));
#endif
  }
};

} // namespace
