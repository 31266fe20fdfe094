# -*- Python -*-
import os
import shutil
import subprocess

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "MoIR"
# bash: the e2e tests use process substitution.
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "fixtures", "Inputs", "corpus", "fuzz"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moir_obj_root, "test")

config.substitutions.append(("%moir_src", config.moir_src_root))
config.substitutions.append(("%python", "/usr/bin/python3"))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.moir_tools_dir, config.llvm_tools_dir]
llvm_config.add_tool_substitutions(
    [ToolSubst(t, unresolved="fatal") for t in
     ("moir-opt", "moirc", "moir-run", "moir-check-fixture", "moir-compare-artifacts",
      "moir-make-model", "moir-bandwidth")], tool_dirs)
# FileCheck, not and friends come from LLVM's tool directory.
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.moir_tools_dir, append_path=True)

# The vendor backends built into this moirc (lit.local.cfg in Target/NVIDIA and
# Target/AMD marks their tests unsupported without them).
if config.moir_enable_nvidia:
    config.available_features.add("nvidia-backend")
if config.moir_enable_amd:
    config.available_features.add("amd-backend")
# halide: this moirc has the Halide code generator (--kernels=halide).
# halide-opencl: and this machine has an OpenCL platform with a device (PoCL
# from scripts/setup.sh runs on the CPU), so --halide-target=opencl artifacts
# run.
if config.moir_have_halide:
    config.available_features.add("halide")
    clinfo = shutil.which("clinfo")
    if clinfo and "Device #" in subprocess.run(
            [clinfo, "-l"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True).stdout:
        config.available_features.add("halide-opencl")
    # halide-vulkan: a Vulkan device (Mesa's lavapipe from scripts/setup.sh
    # runs on the CPU), so --halide-target=vulkan artifacts run.
    vulkaninfo = shutil.which("vulkaninfo")
    if vulkaninfo and "deviceName" in subprocess.run(
            [vulkaninfo, "--summary"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True).stdout:
        config.available_features.add("halide-vulkan")

# The CUDA toolkit (ptxas, libdevice) for the NVIDIA backend's compile checks;
# no GPU is needed for them.
cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
if os.path.exists(os.path.join(cuda_home, "bin", "ptxas")):
    config.available_features.add("cuda")
    config.substitutions.append(("%ptxas", os.path.join(cuda_home, "bin", "ptxas")))
# nvdisasm (the toolkit's, or the PyPI wheel scripts/setup.sh installs) for
# checks of the SASS the cubins hold.
import glob
nvdisasm = [p for p in [os.path.join(cuda_home, "bin", "nvdisasm")] + sorted(glob.glob(
    os.path.join(config.moir_src_root, ".venv-cuda-tools", "lib", "python3*", "site-packages",
                 "nvidia", "cu*", "bin", "nvdisasm"))) if os.access(p, os.X_OK)]
if nvdisasm:
    config.available_features.add("nvdisasm")
    config.substitutions.append(("%nvdisasm", nvdisasm[0]))
# Without the NVIDIA driver, running a GPU artifact must fail cleanly.
import ctypes
try:
    ctypes.CDLL("libcuda.so.1")
except OSError:
    config.available_features.add("no-cuda-driver")
# The ROCm device libraries (Debian's rocm-device-libs, or a ROCm install)
# for the AMD backend's compile checks.
if os.path.exists("/usr/lib/x86_64-linux-gnu/amdgcn/bitcode/ocml.bc") or \
        os.path.exists(os.path.join(os.environ.get("ROCM_PATH", "/opt/rocm"), "amdgcn", "bitcode", "ocml.bc")):
    config.available_features.add("rocm")

# host-avx512bf16: moirc's host build (--cpu=native, the default) multiplies
# bf16 weights with AVX512-BF16 dot products. Without them it silently uses
# f32 arithmetic, and the checks written for the dot products (within 2e-2)
# would compare something else, so they require this feature. Asked the way
# moirc asks (LLVM's host feature query, LLVMGetHostCPUFeatures); the
# kernel's CPU flags where libLLVM cannot be loaded.
def host_cpu_features():
    libllvm = os.path.join(os.path.dirname(config.llvm_tools_dir), "lib", "libLLVM.so")
    try:
        llvm = ctypes.CDLL(libllvm)
        llvm.LLVMGetHostCPUFeatures.restype = ctypes.c_void_p
        llvm.LLVMDisposeMessage.argtypes = [ctypes.c_void_p]
        text = llvm.LLVMGetHostCPUFeatures()
        features = ctypes.cast(text, ctypes.c_char_p).value.decode()
        llvm.LLVMDisposeMessage(text)
        return {f[1:] for f in features.split(",") if f.startswith("+")}
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    # The kernel spells LLVM's avx512bf16 avx512_bf16 (and
                    # avx512vnni, avxvnni with underscores).
                    return {f.replace("avx512_bf16", "avx512bf16")
                             .replace("avx512_vnni", "avx512vnni")
                             .replace("avx_vnni", "avxvnni")
                             .replace("amx_tile", "amx-tile")
                             .replace("amx_bf16", "amx-bf16") for f in flags}
    except OSError:
        pass
    return set()

if {"avx512f", "avx512bf16"} <= host_cpu_features():
    config.available_features.add("host-avx512bf16")
# host-int8-dot: the host build multiplies integer-coded weights' prefill with
# int8 activations and VNNI dot products (AVX512-VNNI, or AVX-VNNI at 8 lanes);
# without, it silently keeps f32 activations and int8-dot.test would compare
# the exact path with itself.
if {"avx512f", "avx512vnni"} <= host_cpu_features() or \
        ("avxvnni" in host_cpu_features() and "avx512f" not in host_cpu_features()):
    config.available_features.add("host-int8-dot")
# host-amx: moirc's host build puts bf16 prefill products on AMX tiles
# (--cpu-amx, AMX-BF16 with AVX512-BF16), and this kernel grants the tiles'
# state (amx.test runs those artifacts).
if {"avx512f", "avx512bf16", "amx-tile", "amx-bf16"} <= host_cpu_features():
    config.available_features.add("host-amx")
# host-avxvnni: the host runs code built for AVX-VNNI without AVX-512
# (--cpu=alderlake), the int8 dot products' 8-lane form.
if "avxvnni" in host_cpu_features():
    config.available_features.add("host-avxvnni")

# aarch64-qemu: AArch64 artifacts run here, by the runtime's tools cross-built
# for AArch64 (%aarch64_tools) under qemu-aarch64 (%qemu_aarch64; -cpu max has
# NEON, dotprod and SVE).
aarch64_tools = getattr(config, "moir_aarch64_runtime_dir", "")
qemu_aarch64 = getattr(config, "moir_qemu_aarch64", "")
if aarch64_tools and qemu_aarch64 and os.path.exists(qemu_aarch64) and \
        os.path.exists(os.path.join(aarch64_tools, "moir-check-fixture")):
    config.available_features.add("aarch64-qemu")
    config.substitutions.append(("%aarch64_tools", aarch64_tools))
    config.substitutions.append(
        ("%qemu_aarch64",
         "env QEMU_LD_PREFIX=/usr/aarch64-linux-gnu QEMU_CPU=max " + qemu_aarch64))

# The runtime's tools built with ASan+UBSan (%runtime_asan) and with TSan
# (%runtime_tsan), and the plain build's (%runtime_dir): compiled models run
# on them in the concurrency and fault tests.
config.substitutions.append(("%runtime_dir", getattr(config, "moir_runtime_dir", "")))
for kind in ("asan", "tsan"):
    path = getattr(config, "moir_runtime_%s_dir" % kind, "")
    if path and os.path.exists(os.path.join(path, "moir_concurrency_test")):
        config.available_features.add("runtime-" + kind)
        config.substitutions.append(("%runtime_" + kind, path))

# signing: this build's moirc and runtime sign and check artifacts (libsodium).
sodium = getattr(config, "moir_sodium_library", "")
if sodium and not sodium.endswith("-NOTFOUND"):
    config.available_features.add("signing")

# tokenizer: the runtime reads tokenizer.json (built with PCRE2).
pcre2 = getattr(config, "moir_pcre2_library", "")
if pcre2 and not pcre2.endswith("-NOTFOUND"):
    config.available_features.add("tokenizer")

# gemma3-270m: the real Gemma 3 270M Q4_K_M GGUF is in build/models
# (scripts/fetch-gemma3.sh, run by scripts/test.sh); %gemma3_gguf is its path.
gemma3 = os.path.join(os.path.dirname(config.moir_runtime_dir), "models",
                      "gemma-3-270m-q4_k_m.gguf")
if os.path.exists(gemma3):
    config.available_features.add("gemma3-270m")
    config.substitutions.append(("%gemma3_gguf", gemma3))

# mpi: this build has the runtime's MPI plugin and mpirun is installed; the
# expert-parallel tests start their ranks with %mpirun (oversubscribed, as
# root where CI runs as root; without the daemons' shared-memory topology,
# whose write now and then crashed a daemon, and without hwloc's OpenCL and
# OpenGL plugins: scripts/netns-mpi.sh says why). netns: scripts/netns-mpi.sh can build network
# namespaces here (root, ip netns), for ranks that talk over veth links.
mpirun = shutil.which("mpirun")
if mpirun and os.path.exists(os.path.join(config.moir_runtime_dir, "libmoir_comm_mpi.so")):
    config.available_features.add("mpi")
    config.substitutions.append(
        ("%mpirun", "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
                    "OMPI_MCA_rtc_hwloc_vmhole=none HWLOC_PLUGINS_BLACKLIST=hwloc_opencl,hwloc_gl "
                    "OMPI_MCA_rmaps_base_oversubscribe=1 MOIR_COMM_TIMEOUT=120 "
                    "timeout 300 " + mpirun))
    netns_probe = os.path.join(config.moir_src_root, "scripts", "netns-mpi.sh")
    if os.path.exists(netns_probe) and subprocess.run(
            ["bash", netns_probe, "--probe"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0:
        config.available_features.add("netns")
