// Energy counters (moir_energy_meter) and the compiler's cost model of an
// artifact (moir_model_cost): the inputs of moir-run --energy-report.
//
// Sources, each a cumulative counter in joules since the meter opened:
// - rapl: Linux powercap (intel-rapl zones, also on AMD CPUs). Sums the
//   top-level package zones intel-rapl:N (not psys, the platform zone that
//   contains the packages) and their "dram" subzones (DRAM is its own RAPL
//   domain, outside the package's); the other subzones (core, uncore) lie
//   inside their package and are left out. Each zone's energy_uj wraps at
//   its max_energy_range_uj.
// - perf: the perf `power` PMU (energy-pkg and energy-ram, one CPU per
//   package from its cpumask) through perf_event_open; 64-bit counts.
// - nvml: nvmlDeviceGetTotalEnergyConsumption (mJ since the driver loaded),
//   libnvidia-ml.so.1 loaded with dlopen.
// - amdsmi: amdsmi_get_energy_count (counts of counter_resolution uJ),
//   libamd_smi.so loaded with dlopen.
#include "model.h"
#include "status.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <dirent.h>
#include <dlfcn.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/perf_event.h>
#include <sys/syscall.h>
#endif

using moir::rt::fail;

namespace {

/// A cumulative energy counter. `reason` non-empty: not available.
class Source {
public:
  virtual ~Source() = default;
  std::string name, detail, reason;
  double resolution = 0, interval = 0, wrap = 0;
  /// Joules since the source opened; false (with *error) on a failed read.
  virtual bool read(double *joules, std::string *error) = 0;
};

/// The whole of a small text file (sysfs attributes); false with *error
/// naming the file and the system's reason.
bool readText(const std::string &path, std::string *out, std::string *error) {
  std::ifstream in(path);
  if (!in) {
    int e = errno;
    *error = path + ": " + std::strerror(e ? e : ENOENT);
    if (e == EACCES || e == EPERM)
      *error += " (Linux 5.10 and later let only root read RAPL energy counters; run as root "
                "or make energy_uj readable)";
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    *error = path + ": read failed: " + std::strerror(errno);
    return false;
  }
  *out = text.str();
  while (!out->empty() && (out->back() == '\n' || out->back() == ' '))
    out->pop_back();
  return true;
}

bool readUnsigned(const std::string &path, uint64_t *out, std::string *error) {
  std::string text;
  if (!readText(path, &text, error))
    return false;
  char *end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] < '0' || text[0] > '9' || *end || errno == ERANGE) {
    *error = path + ": not a whole number ('" + text.substr(0, 40) + "')";
    return false;
  }
  *out = v;
  return true;
}

std::vector<std::string> listDirectory(const std::string &path) {
  std::vector<std::string> names;
  if (DIR *dir = opendir(path.c_str())) {
    while (dirent *e = readdir(dir))
      if (e->d_name[0] != '.')
        names.push_back(e->d_name);
    closedir(dir);
  }
  std::sort(names.begin(), names.end());
  return names;
}

/// "intel-rapl:N" (depth 1) or "intel-rapl:N:M" (depth 2).
int raplDepth(const std::string &name) {
  const std::string prefix = "intel-rapl:";
  if (name.compare(0, prefix.size(), prefix) != 0)
    return 0;
  int depth = 1;
  bool digit = false;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] == ':' && digit) {
      ++depth;
      digit = false;
    } else if (name[i] >= '0' && name[i] <= '9') {
      digit = true;
    } else {
      return 0;
    }
  }
  return digit && depth <= 2 ? depth : 0;
}

// ---- RAPL through powercap ----

class RaplSource : public Source {
  struct Zone {
    std::string path, label;
    uint64_t range = 0, last = 0;
  };
  std::vector<Zone> zones;
  uint64_t totalMicrojoules = 0;

public:
  explicit RaplSource(const std::string &root) {
    name = "rapl";
    // Intel's default energy status unit, 2^-14 J: powercap reports
    // microjoules, the hardware counts in these steps.
    resolution = 1.0 / 16384;
    interval = 1e-3; // the counters update about every millisecond
    if (access(root.c_str(), F_OK) != 0) {
      reason = root + ": " + std::strerror(errno) + " (no powercap interface)";
      return;
    }
    std::vector<std::string> entries = listDirectory(root);
    std::vector<std::string> excluded;
    std::set<std::string> seen;
    bool anyPackage = false;
    auto consider = [&](const std::string &dir, const std::string &entry, int depth) {
      if (!seen.insert(entry).second)
        return;
      std::string zoneName, ignored;
      if (!readText(dir + "/name", &zoneName, &ignored))
        zoneName = entry;
      std::string label = zoneName + " (" + entry + ")";
      // Top level: packages (psys holds them); below: DRAM only (core and
      // uncore are inside their package).
      bool take = depth == 1 ? zoneName != "psys" : zoneName == "dram";
      if (!take) {
        excluded.push_back(label);
        return;
      }
      anyPackage |= depth == 1;
      zones.push_back({dir, label});
    };
    for (const std::string &e : entries)
      if (raplDepth(e) == 1)
        consider(root + "/" + e, e, 1);
    // Subzones: at the top level in /sys/class/powercap, inside their
    // package's directory in /sys/devices.
    for (const std::string &e : entries)
      if (raplDepth(e) == 2)
        consider(root + "/" + e, e, 2);
    for (const std::string &e : entries)
      if (raplDepth(e) == 1)
        for (const std::string &sub : listDirectory(root + "/" + e))
          if (raplDepth(sub) == 2)
            consider(root + "/" + e + "/" + sub, sub, 2);
    if (!anyPackage) {
      reason = root + ": no intel-rapl package zones (no RAPL interface here: a virtual "
                      "machine, or the intel_rapl_common module is not loaded)";
      zones.clear();
      return;
    }
    double minRange = 0;
    for (Zone &z : zones) {
      std::string error;
      if (!readUnsigned(z.path + "/max_energy_range_uj", &z.range, &error) ||
          !readUnsigned(z.path + "/energy_uj", &z.last, &error)) {
        reason = error;
        zones.clear();
        return;
      }
      if (z.range == 0) {
        reason = z.path + "/max_energy_range_uj: 0 (no range to undo wraps with)";
        zones.clear();
        return;
      }
      if (minRange == 0 || z.range * 1e-6 < minRange)
        minRange = z.range * 1e-6;
      detail += (detail.empty() ? "" : " + ") + z.label;
    }
    wrap = minRange;
    detail = "sum of " + detail;
    if (!excluded.empty()) {
      detail += "; not summed (contained in the above, or the platform zone): ";
      for (size_t i = 0; i < excluded.size(); ++i)
        detail += (i ? ", " : "") + excluded[i];
    }
  }

  bool read(double *joules, std::string *error) override {
    // Read every zone first: a failure leaves the state unchanged.
    std::vector<uint64_t> now(zones.size());
    for (size_t i = 0; i < zones.size(); ++i)
      if (!readUnsigned(zones[i].path + "/energy_uj", &now[i], error))
        return false;
    for (size_t i = 0; i < zones.size(); ++i) {
      Zone &z = zones[i];
      if (now[i] > z.range) {
        *error = z.path + "/energy_uj: " + std::to_string(now[i]) +
                 " exceeds max_energy_range_uj " + std::to_string(z.range);
        return false;
      }
    }
    for (size_t i = 0; i < zones.size(); ++i) {
      Zone &z = zones[i];
      // A smaller value: the counter wrapped (once: reads are less than
      // one range apart).
      totalMicrojoules += now[i] >= z.last ? now[i] - z.last : z.range - z.last + now[i];
      z.last = now[i];
    }
    *joules = static_cast<double>(totalMicrojoules) * 1e-6;
    return true;
  }
};

// ---- RAPL through the perf power PMU ----

class PerfSource : public Source {
  struct Counter {
    int fd = -1;
    double scale = 0;
    uint64_t last = 0;
  };
  std::vector<Counter> counters;
  double total = 0;

  static bool readCount(int fd, uint64_t *count) {
    return ::read(fd, count, sizeof *count) == static_cast<ssize_t>(sizeof *count);
  }

public:
  PerfSource() {
    name = "perf";
    resolution = 1.0 / 16384;
    interval = 1e-3;
#if defined(__linux__)
    const std::string root = "/sys/bus/event_source/devices/power";
    std::string typeText, cpumask, error;
    if (!readText(root + "/type", &typeText, &error)) {
      reason = "no perf power PMU (" + error + ")";
      return;
    }
    if (!readText(root + "/cpumask", &cpumask, &error)) {
      reason = error;
      return;
    }
    // One CPU per package: "0" or "0,56" (ranges "0-1" are not expected
    // here; take their first CPU).
    std::vector<int> cpus;
    std::stringstream list(cpumask);
    for (std::string item; std::getline(list, item, ',');)
      if (!item.empty())
        cpus.push_back(std::atoi(item.c_str()));
    for (const char *event : {"energy-pkg", "energy-ram"}) {
      std::string config, scaleText;
      if (!readText(root + "/events/" + event, &config, &error))
        continue; // energy-ram is optional; energy-pkg is checked below
      if (!readText(root + "/events/" + std::string(event) + ".scale", &scaleText, &error)) {
        reason = error;
        break;
      }
      size_t at = config.find("event=");
      if (at == std::string::npos) {
        reason = root + "/events/" + event + ": unexpected '" + config + "'";
        break;
      }
      perf_event_attr attr;
      std::memset(&attr, 0, sizeof attr);
      attr.type = static_cast<uint32_t>(std::atoi(typeText.c_str()));
      attr.size = sizeof attr;
      attr.config = std::strtoull(config.c_str() + at + 6, nullptr, 0);
      for (int cpu : cpus) {
        long fd = syscall(__NR_perf_event_open, &attr, -1, cpu, -1, 0);
        if (fd < 0) {
          int e = errno;
          reason = std::string("perf_event_open(") + event + ", cpu " + std::to_string(cpu) +
                   "): " + std::strerror(e);
          if (e == EACCES || e == EPERM)
            reason += " (needs CAP_PERFMON, or kernel.perf_event_paranoid <= 0)";
          break;
        }
        Counter c;
        c.fd = static_cast<int>(fd);
        c.scale = std::strtod(scaleText.c_str(), nullptr);
        if (!readCount(c.fd, &c.last)) {
          reason = std::string("reading ") + event + ": " + std::strerror(errno);
          close(c.fd);
          break;
        }
        counters.push_back(c);
        detail += (detail.empty() ? "" : " + ") + std::string(event) + " (cpu " +
                  std::to_string(cpu) + ")";
      }
      if (!reason.empty())
        break;
    }
    if (reason.empty() && counters.empty())
      reason = root + ": no energy-pkg event";
    if (!reason.empty()) {
      for (Counter &c : counters)
        close(c.fd);
      counters.clear();
      detail.clear();
      return;
    }
    detail = "sum of " + detail;
#else
    reason = "perf_event_open is Linux only";
#endif
  }
  ~PerfSource() override {
    for (Counter &c : counters)
      close(c.fd);
  }

  bool read(double *joules, std::string *error) override {
    std::vector<uint64_t> now(counters.size());
    for (size_t i = 0; i < counters.size(); ++i)
      if (!readCount(counters[i].fd, &now[i])) {
        *error = std::string("reading the perf power counter: ") + std::strerror(errno);
        return false;
      }
    for (size_t i = 0; i < counters.size(); ++i) {
      total += static_cast<double>(now[i] - counters[i].last) * counters[i].scale;
      counters[i].last = now[i];
    }
    *joules = total;
    return true;
  }
};

// ---- GPUs: devices to count ----

/// The devices a GPU counter sums: MOIR_ENERGY_DEVICES ("all" or "0,2");
/// otherwise the first device of the vendor's visibility variable when it
/// names one by index, else device 0 (the device the runtime's GPU driver
/// uses). `uuid` receives a CUDA_VISIBLE_DEVICES UUID ("GPU-...") instead.
std::vector<int> gpuDevices(const char *visibleVariable, int count, std::string *uuid) {
  std::vector<int> devices;
  if (const char *env = std::getenv("MOIR_ENERGY_DEVICES"); env && *env) {
    if (std::strcmp(env, "all") == 0) {
      for (int i = 0; i < count; ++i)
        devices.push_back(i);
      return devices;
    }
    std::stringstream list(env);
    for (std::string item; std::getline(list, item, ',');)
      if (!item.empty())
        devices.push_back(std::atoi(item.c_str()));
    return devices;
  }
  if (const char *env = std::getenv(visibleVariable); env && *env) {
    std::string first = std::string(env).substr(0, std::string(env).find(','));
    if (first.compare(0, 4, "GPU-") == 0 && uuid) {
      *uuid = first;
      return devices;
    }
    if (!first.empty() && first.find_first_not_of("0123456789") == std::string::npos) {
      devices.push_back(std::atoi(first.c_str()));
      return devices;
    }
  }
  devices.push_back(0);
  return devices;
}

/// dlsym into a typed pointer.
template <typename F> F symbol(void *library, const char *name) {
  return reinterpret_cast<F>(dlsym(library, name));
}

// ---- NVML ----

class NvmlSource : public Source {
  // The few NVML entry points used, declared here (no CUDA headers): int
  // return codes (0: NVML_SUCCESS), opaque device handles.
  using Device = void *;
  void *library = nullptr;
  int (*shutdown)() = nullptr;
  int (*totalEnergy)(Device, unsigned long long *) = nullptr;
  const char *(*errorString)(int) = nullptr;
  std::vector<Device> devices;
  std::vector<unsigned long long> last;
  double total = 0;

  std::string describe(int rc) const {
    std::string text = errorString ? errorString(rc) : "";
    return "NVML error " + std::to_string(rc) + (text.empty() ? "" : " (" + text + ")");
  }

public:
  NvmlSource() {
    name = "nvml";
    resolution = 1e-3; // millijoules
    interval = 0.1;    // NVML's counters update every 20-100 ms, by GPU
    library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
      const char *why = dlerror();
      reason = std::string("cannot load libnvidia-ml.so.1 (no NVIDIA driver): ") +
               (why ? why : "not found");
      return;
    }
    auto init = symbol<int (*)()>(library, "nvmlInit_v2");
    shutdown = symbol<int (*)()>(library, "nvmlShutdown");
    auto getCount = symbol<int (*)(unsigned *)>(library, "nvmlDeviceGetCount_v2");
    auto byIndex = symbol<int (*)(unsigned, Device *)>(library, "nvmlDeviceGetHandleByIndex_v2");
    auto byUUID = symbol<int (*)(const char *, Device *)>(library, "nvmlDeviceGetHandleByUUID");
    auto getName = symbol<int (*)(Device, char *, unsigned)>(library, "nvmlDeviceGetName");
    totalEnergy = symbol<int (*)(Device, unsigned long long *)>(
        library, "nvmlDeviceGetTotalEnergyConsumption");
    errorString = symbol<const char *(*)(int)>(library, "nvmlErrorString");
    if (!init || !shutdown || !getCount || !byIndex || !getName || !totalEnergy) {
      reason = "libnvidia-ml.so.1 lacks nvmlInit_v2, nvmlDeviceGetCount_v2, "
               "nvmlDeviceGetHandleByIndex_v2, nvmlDeviceGetName or "
               "nvmlDeviceGetTotalEnergyConsumption";
      dlclose(library);
      library = nullptr;
      return;
    }
    if (int rc = init()) {
      reason = "nvmlInit_v2: " + describe(rc);
      dlclose(library);
      library = nullptr;
      return;
    }
    unsigned count = 0;
    if (int rc = getCount(&count)) {
      reason = "nvmlDeviceGetCount_v2: " + describe(rc);
      return;
    }
    std::string uuid;
    std::vector<int> wanted = gpuDevices("CUDA_VISIBLE_DEVICES", static_cast<int>(count), &uuid);
    std::vector<std::string> labels;
    if (!uuid.empty()) {
      Device d = nullptr;
      if (!byUUID) {
        reason = "CUDA_VISIBLE_DEVICES names " + uuid + " and NVML lacks nvmlDeviceGetHandleByUUID";
        return;
      }
      if (int rc = byUUID(uuid.c_str(), &d)) {
        reason = "nvmlDeviceGetHandleByUUID(" + uuid + "): " + describe(rc);
        return;
      }
      devices.push_back(d);
      labels.push_back(uuid);
    }
    for (int i : wanted) {
      Device d = nullptr;
      if (i < 0 || static_cast<unsigned>(i) >= count) {
        reason = "no NVML device " + std::to_string(i) + " (" + std::to_string(count) +
                 " devices)";
        return;
      }
      if (int rc = byIndex(static_cast<unsigned>(i), &d)) {
        reason = "nvmlDeviceGetHandleByIndex_v2(" + std::to_string(i) + "): " + describe(rc);
        return;
      }
      devices.push_back(d);
      labels.push_back("GPU " + std::to_string(i));
    }
    for (size_t i = 0; i < devices.size(); ++i) {
      char deviceName[96] = {0};
      getName(devices[i], deviceName, sizeof deviceName - 1);
      unsigned long long mj = 0;
      if (int rc = totalEnergy(devices[i], &mj)) {
        reason = "nvmlDeviceGetTotalEnergyConsumption(" + labels[i] + "): " + describe(rc) +
                 (rc == 3 ? " (energy counters need a Volta or newer GPU)" : "");
        devices.clear();
        return;
      }
      last.push_back(mj);
      detail += (detail.empty() ? "" : " + ") + labels[i] + ": " + deviceName;
    }
    detail = "sum of " + detail + " (nvmlDeviceGetTotalEnergyConsumption)";
  }
  ~NvmlSource() override {
    if (library) {
      shutdown();
      dlclose(library);
    }
  }

  bool read(double *joules, std::string *error) override {
    std::vector<unsigned long long> now(devices.size());
    for (size_t i = 0; i < devices.size(); ++i)
      if (int rc = totalEnergy(devices[i], &now[i])) {
        *error = "nvmlDeviceGetTotalEnergyConsumption: " + describe(rc);
        return false;
      }
    for (size_t i = 0; i < devices.size(); ++i) {
      if (now[i] < last[i]) {
        *error = "the NVML energy counter went backwards (driver reloaded?)";
        return false;
      }
      total += static_cast<double>(now[i] - last[i]) * 1e-3;
      last[i] = now[i];
    }
    *joules = total;
    return true;
  }
};

// ---- AMD SMI ----

class AmdSmiSource : public Source {
  // amdsmi.h (ROCm 6): amdsmi_status_t is an int enum (0: success),
  // handles are void pointers; AMDSMI_INIT_AMD_GPUS is 1 << 1.
  using Handle = void *;
  void *library = nullptr;
  int (*shutdown)() = nullptr;
  int (*energyCount)(Handle, uint64_t *, float *, uint64_t *) = nullptr;
  std::vector<Handle> devices;
  std::vector<double> last;
  double total = 0;

  bool joulesOf(Handle h, double *out, std::string *error) const {
    uint64_t count = 0, timestamp = 0;
    float microjoulesPerCount = 0;
    if (int rc = energyCount(h, &count, &microjoulesPerCount, &timestamp)) {
      *error = "amdsmi_get_energy_count: AMD SMI status " + std::to_string(rc);
      return false;
    }
    *out = static_cast<double>(count) * microjoulesPerCount * 1e-6;
    return true;
  }

public:
  AmdSmiSource() {
    name = "amdsmi";
    resolution = 15.3e-6; // typical counter_resolution; the reads report theirs
    interval = 1e-3;
    for (const char *path : {"libamd_smi.so", "/opt/rocm/lib/libamd_smi.so"})
      if ((library = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
        break;
    if (!library) {
      const char *why = dlerror();
      reason = std::string("cannot load libamd_smi.so (no ROCm AMD SMI): ") +
               (why ? why : "not found");
      return;
    }
    auto init = symbol<int (*)(uint64_t)>(library, "amdsmi_init");
    shutdown = symbol<int (*)()>(library, "amdsmi_shut_down");
    auto sockets = symbol<int (*)(uint32_t *, Handle *)>(library, "amdsmi_get_socket_handles");
    auto processors =
        symbol<int (*)(Handle, uint32_t *, Handle *)>(library, "amdsmi_get_processor_handles");
    energyCount = symbol<int (*)(Handle, uint64_t *, float *, uint64_t *)>(
        library, "amdsmi_get_energy_count");
    if (!init || !shutdown || !sockets || !processors || !energyCount) {
      reason = "libamd_smi.so lacks amdsmi_init, amdsmi_get_socket_handles, "
               "amdsmi_get_processor_handles or amdsmi_get_energy_count";
      dlclose(library);
      library = nullptr;
      return;
    }
    if (int rc = init(uint64_t(1) << 1)) {
      reason = "amdsmi_init: AMD SMI status " + std::to_string(rc);
      dlclose(library);
      library = nullptr;
      return;
    }
    uint32_t socketCount = 0;
    std::vector<Handle> gpus;
    if (int rc = sockets(&socketCount, nullptr)) {
      reason = "amdsmi_get_socket_handles: AMD SMI status " + std::to_string(rc);
      return;
    }
    std::vector<Handle> socketHandles(socketCount);
    if (socketCount && sockets(&socketCount, socketHandles.data()) == 0)
      for (uint32_t s = 0; s < socketCount; ++s) {
        uint32_t n = 0;
        if (processors(socketHandles[s], &n, nullptr) || n == 0)
          continue;
        std::vector<Handle> handles(n);
        if (processors(socketHandles[s], &n, handles.data()) == 0)
          gpus.insert(gpus.end(), handles.begin(), handles.begin() + n);
      }
    const char *visible = std::getenv("HIP_VISIBLE_DEVICES") ? "HIP_VISIBLE_DEVICES"
                                                              : "ROCR_VISIBLE_DEVICES";
    for (int i : gpuDevices(visible, static_cast<int>(gpus.size()), nullptr)) {
      if (i < 0 || static_cast<size_t>(i) >= gpus.size()) {
        reason = "no AMD SMI GPU " + std::to_string(i) + " (" + std::to_string(gpus.size()) +
                 " found)";
        devices.clear();
        return;
      }
      double j = 0;
      std::string error;
      if (!joulesOf(gpus[i], &j, &error)) {
        reason = error;
        devices.clear();
        return;
      }
      devices.push_back(gpus[i]);
      last.push_back(j);
      detail += (detail.empty() ? "" : " + ") + ("GPU " + std::to_string(i));
    }
    detail = "sum of " + detail + " (amdsmi_get_energy_count)";
  }
  ~AmdSmiSource() override {
    if (library) {
      shutdown();
      dlclose(library);
    }
  }

  bool read(double *joules, std::string *error) override {
    std::vector<double> now(devices.size());
    for (size_t i = 0; i < devices.size(); ++i)
      if (!joulesOf(devices[i], &now[i], error))
        return false;
    for (size_t i = 0; i < devices.size(); ++i) {
      if (now[i] < last[i]) {
        *error = "the AMD SMI energy counter went backwards (driver reloaded?)";
        return false;
      }
      total += now[i] - last[i];
      last[i] = now[i];
    }
    *joules = total;
    return true;
  }
};

/// A source that is never available.
class NoSource : public Source {
public:
  explicit NoSource(std::string why) {
    name = "none";
    reason = std::move(why);
  }
  bool read(double *, std::string *error) override {
    *error = reason;
    return false;
  }
};

std::unique_ptr<Source> openSource(const std::string &name) {
  if (name == "rapl") {
    const char *root = std::getenv("MOIR_POWERCAP_ROOT");
    return std::make_unique<RaplSource>(root && *root ? root : "/sys/class/powercap");
  }
  if (name == "perf")
    return std::make_unique<PerfSource>();
  if (name == "nvml")
    return std::make_unique<NvmlSource>();
  if (name == "amdsmi")
    return std::make_unique<AmdSmiSource>();
  return std::make_unique<NoSource>("no energy counter requested (source 'none')");
}

} // namespace

struct moir_energy_meter {
  std::unique_ptr<Source> source;
  /// Reads may come from several threads (a keeper thread reads a wrapping
  /// counter every second so that no wrap is missed).
  std::mutex mutex;
};

extern "C" moir_status moir_energy_meter_open(const char *source, const moir_model *model,
                                              moir_energy_meter **out) {
  if (!out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_energy_meter_open: null argument");
  *out = nullptr;
  std::string wanted = source ? source : "auto";
  auto meter = std::make_unique<moir_energy_meter>();
  if (wanted == "auto") {
    // The counter of the device that does the work: the GPU of a GPU
    // artifact (the host's CPU counters would measure the wrong chip), the
    // CPU packages otherwise.
    std::string kind = model ? model->target.substr(0, model->target.find(' ')) : "cpu";
    std::vector<std::string> order = kind == "nvidia" ? std::vector<std::string>{"nvml"}
                                     : kind == "amd"  ? std::vector<std::string>{"amdsmi"}
                                                      : std::vector<std::string>{"rapl", "perf"};
    std::string reasons;
    for (const std::string &name : order) {
      std::unique_ptr<Source> s = openSource(name);
      if (s->reason.empty()) {
        meter->source = std::move(s);
        break;
      }
      reasons += (reasons.empty() ? "" : "; ") + name + ": " + s->reason;
    }
    if (!meter->source)
      meter->source = std::make_unique<NoSource>(reasons);
  } else if (wanted == "rapl" || wanted == "perf" || wanted == "nvml" || wanted == "amdsmi" ||
             wanted == "none") {
    meter->source = openSource(wanted);
    if (!meter->source->reason.empty() && wanted != "none")
      meter->source->reason = wanted + ": " + meter->source->reason;
  } else {
    return fail(MOIR_ERROR_INVALID_ARGUMENT,
                "unknown energy source '" + wanted + "' (auto, rapl, perf, nvml, amdsmi, none)");
  }
  *out = meter.release();
  return moir::rt::ok();
}

extern "C" moir_status moir_energy_meter_read(moir_energy_meter *meter, double *joules) {
  if (!meter || !joules)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_energy_meter_read: null argument");
  Source &s = *meter->source;
  if (!s.reason.empty())
    return fail(MOIR_ERROR_UNSUPPORTED, "no energy counter: " + s.reason);
  std::string error;
  std::lock_guard<std::mutex> lock(meter->mutex);
  if (!s.read(joules, &error))
    return fail(MOIR_ERROR_IO, error);
  return moir::rt::ok();
}

extern "C" void moir_energy_meter_describe(const moir_energy_meter *meter,
                                           moir_energy_info *out) {
  const Source &s = *meter->source;
  bool available = s.reason.empty();
  out->source = available ? s.name.c_str() : "none";
  out->detail = s.detail.c_str();
  out->reason = s.reason.c_str();
  out->available = available;
  out->resolution_j = available ? s.resolution : 0;
  out->update_interval_s = available ? s.interval : 0;
  out->wrap_j = available ? s.wrap : 0;
}

extern "C" void moir_energy_meter_close(moir_energy_meter *meter) { delete meter; }

// ---- The compiler's cost model ----

extern "C" int64_t moir_model_cost_count(const moir_model *m) {
  return m->costs.empty() ? 1 : static_cast<int64_t>(m->costs.size());
}

extern "C" int64_t moir_model_cost_prompt(const moir_model *m) { return m->costPrompt; }

extern "C" moir_status moir_model_cost(const moir_model *m, int64_t index, moir_cost *out) {
  if (!m || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_model_cost: null argument");
  if (index < 0 || index >= moir_model_cost_count(m))
    return fail(MOIR_ERROR_OUT_OF_RANGE, "moir_model_cost: component " + std::to_string(index) +
                                             " of " + std::to_string(moir_model_cost_count(m)));
  if (m->costs.empty()) {
    // An older artifact: the decode line alone.
    *out = {"model", static_cast<double>(m->decodeFlops), 0,
            static_cast<double>(m->decodeWeightBytes), 0, static_cast<double>(m->decodeFlops),
            static_cast<double>(m->decodeWeightBytes), 0};
    return moir::rt::ok();
  }
  const moir::rt::Cost &c = m->costs[static_cast<size_t>(index)];
  *out = {c.name.c_str(), c.decodeFlops, c.decodeFlopsPerRow, c.decodeBytes,
          c.decodeBytesPerRow, c.prefillFlops, c.prefillBytes, c.experts};
  return moir::rt::ok();
}
