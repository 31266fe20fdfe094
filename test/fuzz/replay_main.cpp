//===- replay_main.cpp - runs a fuzz target over saved inputs --------------===//
//
// The regression side of the fuzzers: links with one *_fuzzer.cpp (built with
// ASan+UBSan, without libFuzzer) and calls its LLVMFuzzerTestOneInput once
// for every file under the given paths (directories recursively), optionally
// only files whose name contains --match=TEXT. A crash or sanitizer report
// fails the run; so does finding no input at all.
//
//   replay [--match=TEXT] PATH...
//
//===----------------------------------------------------------------------===//

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <string>
#include <sys/stat.h>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

namespace {

std::string match;
long replayed = 0;

void replay(const std::string &path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "replay: %s: cannot stat\n", path.c_str());
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    DIR *dir = opendir(path.c_str());
    if (!dir)
      return;
    std::vector<std::string> names;
    while (dirent *e = readdir(dir))
      if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
        names.push_back(e->d_name);
    closedir(dir);
    for (const std::string &name : names)
      replay(path + "/" + name);
    return;
  }
  std::string base = path.substr(path.rfind('/') + 1);
  if (!S_ISREG(st.st_mode) || (!match.empty() && base.find(match) == std::string::npos))
    return;
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    return;
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  size_t n = data.empty() ? 0 : std::fread(data.data(), 1, data.size(), f);
  std::fclose(f);
  LLVMFuzzerTestOneInput(data.data(), n);
  ++replayed;
}

} // namespace

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--match=", 8) == 0)
      match = argv[i] + 8;
    else
      replay(argv[i]);
  }
  std::printf("replay: %ld inputs, no failure\n", replayed);
  if (replayed == 0) {
    std::fprintf(stderr, "replay: no input found\n");
    return 1;
  }
  return 0;
}
