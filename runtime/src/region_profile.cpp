// MOIR_PROFILE_REGIONS: per-region fork timing, printed at exit (see the header).
#include "region_profile.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

struct RegionStats {
  std::string name;
  /// capacityNs: the sum of each run's wall time x its threads (a region
  /// with an if clause runs on one thread when it has one work item).
  int64_t forks = 0, wallNs = 0, busyNs = 0, capacityNs = 0;
};

struct Symbol {
  uint64_t begin, end;
  std::string name;
};

/// The function symbols of an ELF shared object's .symtab, read from its file
/// (the loader maps no section headers); empty when the file cannot be read.
std::vector<Symbol> readSymbols(const char *path) {
  std::vector<Symbol> symbols;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return symbols;
  auto readAt = [&](void *out, size_t bytes, uint64_t offset) {
    return pread(fd, out, bytes, static_cast<off_t>(offset)) == static_cast<ssize_t>(bytes);
  };
  Elf64_Ehdr header;
  if (readAt(&header, sizeof header, 0) && std::memcmp(header.e_ident, ELFMAG, SELFMAG) == 0 &&
      header.e_ident[EI_CLASS] == ELFCLASS64 && header.e_shentsize == sizeof(Elf64_Shdr) &&
      header.e_shnum > 0 && header.e_shnum < 65536) {
    std::vector<Elf64_Shdr> sections(header.e_shnum);
    if (readAt(sections.data(), sections.size() * sizeof(Elf64_Shdr), header.e_shoff)) {
      for (const Elf64_Shdr &section : sections) {
        if (section.sh_type != SHT_SYMTAB || section.sh_link >= sections.size() ||
            section.sh_entsize != sizeof(Elf64_Sym) || section.sh_size > (64u << 20))
          continue;
        const Elf64_Shdr &strings = sections[section.sh_link];
        if (strings.sh_size > (64u << 20))
          continue;
        std::vector<Elf64_Sym> entries(section.sh_size / sizeof(Elf64_Sym));
        std::string names(strings.sh_size, '\0');
        if (!readAt(entries.data(), entries.size() * sizeof(Elf64_Sym), section.sh_offset) ||
            !readAt(names.data(), names.size(), strings.sh_offset))
          continue;
        for (const Elf64_Sym &entry : entries)
          if (ELF64_ST_TYPE(entry.st_info) == STT_FUNC && entry.st_size > 0 &&
              entry.st_name < names.size())
            symbols.push_back({entry.st_value, entry.st_value + entry.st_size,
                               std::string(names.c_str() + entry.st_name)});
      }
    }
  }
  close(fd);
  return symbols;
}

class Profile {
public:
  static Profile &get() {
    // Leaked: the report runs at exit, after other statics may be gone.
    static Profile *profile = [] {
      auto *p = new Profile;
      std::atexit([] { get().report(); });
      return p;
    }();
    return *profile;
  }

  void record(const void *region, int64_t wallNs, const int64_t *busyNs, int32_t threads) {
    std::lock_guard<std::mutex> lock(mutex);
    if (firstNs == 0)
      firstNs = moir::rt::profileNow() - wallNs;
    RegionStats &stats = regions[region];
    if (stats.forks == 0)
      stats.name = nameOf(region);
    ++stats.forks;
    stats.wallNs += wallNs;
    stats.capacityNs += wallNs * threads;
    for (int32_t t = 0; t < threads; ++t)
      stats.busyNs += busyNs[t];
  }

private:
  std::string nameOf(const void *address) {
    Dl_info info;
    char fallback[64];
    std::snprintf(fallback, sizeof fallback, "%p", address);
    if (!dladdr(address, &info) || !info.dli_fname)
      return fallback;
    uint64_t offset = reinterpret_cast<uintptr_t>(address) - reinterpret_cast<uintptr_t>(info.dli_fbase);
    std::string file = info.dli_fname;
    auto cached = symbolsByFile.find(file);
    if (cached == symbolsByFile.end())
      cached = symbolsByFile.emplace(file, readSymbols(info.dli_fname)).first;
    for (const Symbol &symbol : cached->second)
      if (offset >= symbol.begin && offset < symbol.end)
        return symbol.name;
    if (info.dli_sname)
      return info.dli_sname;
    std::snprintf(fallback, sizeof fallback, "%s+0x%" PRIx64, file.c_str(), offset);
    return fallback;
  }

  void report() {
    std::lock_guard<std::mutex> lock(mutex);
    if (regions.empty())
      return;
    int64_t spanNs = moir::rt::profileNow() - firstNs;
    std::vector<const RegionStats *> rows;
    int64_t wallNs = 0, busyNs = 0, capacityNs = 0, forks = 0;
    for (const auto &[region, stats] : regions) {
      rows.push_back(&stats);
      wallNs += stats.wallNs;
      busyNs += stats.busyNs;
      capacityNs += stats.capacityNs;
      forks += stats.forks;
    }
    std::sort(rows.begin(), rows.end(),
              [](const RegionStats *a, const RegionStats *b) { return a->wallNs > b->wallNs; });
    auto idle = [](int64_t busy, int64_t capacity) {
      return capacity > 0 ? 100.0 * (1.0 - static_cast<double>(busy) / capacity) : 0.0;
    };
    std::fprintf(stderr,
                 "moir: parallel regions (MOIR_PROFILE_REGIONS): %" PRId64
                 " forks, %.3f s in regions of %.3f s since the first fork, threads idle %.1f%% "
                 "of the regions' time\n",
                 forks, wallNs * 1e-9, spanNs * 1e-9, idle(busyNs, capacityNs));
    std::fprintf(stderr, "moir: %10s %6s %8s %9s %6s  %s\n", "wall ms", "share", "forks",
                 "us/fork", "idle%", "region");
    for (const RegionStats *stats : rows)
      std::fprintf(stderr, "moir: %10.3f %5.1f%% %8" PRId64 " %9.2f %5.1f%%  %s\n",
                   stats->wallNs * 1e-6, spanNs > 0 ? 100.0 * stats->wallNs / spanNs : 0.0,
                   stats->forks, stats->wallNs * 1e-3 / stats->forks,
                   idle(stats->busyNs, stats->capacityNs), stats->name.c_str());
  }

  std::mutex mutex;
  std::map<const void *, RegionStats> regions;
  std::map<std::string, std::vector<Symbol>> symbolsByFile;
  int64_t firstNs = 0;
};

} // namespace

bool moir::rt::regionProfiling() {
  static const bool enabled = [] {
    const char *env = std::getenv("MOIR_PROFILE_REGIONS");
    return env && *env && std::strcmp(env, "0") != 0;
  }();
  return enabled;
}

int64_t moir::rt::profileNow() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void moir::rt::recordRegion(const void *region, int64_t wallNs, const int64_t *busyNs,
                            int32_t threads) {
  Profile::get().record(region, wallNs, busyNs, threads);
}
