// Tokenizer conformance: for every fixture folder (test/fixtures/tokenizers/
// <name>/ with tokenizer.json and the `tokenizers` package's expected.json),
// the runtime's token ids must equal the package's for every corpus line, for
// the whole corpus and with the post-processor's special tokens, and decoding
// (whole, and streamed token by token) must give back the package's text.
//
// Then every bad-*.json of MALFORMED_DIR must be refused with a message that
// names the file.
//
//   moir_tokenizer_test FIXTURES_DIR [MALFORMED_DIR]   (exit 77: built without tokenizers)
//
// With --llama-cpp, a tokenizer.json moirc wrote from a GGUF file
// (moirc --tokenizer-out) against llama.cpp's ids for the same file
// (test/fixtures/gemma3/llama_cpp_tokens.json: every corpus line and the
// whole corpus, no special tokens; llama_cpp_greedy.json: prompts with BOS):
//
//   moir_tokenizer_test --llama-cpp TOKENIZER_JSON TOKENS_JSON [GREEDY_JSON]
#include "moir/runtime.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using json = nlohmann::json;

namespace {

std::string slurp(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<int32_t> encode(moir_tokenizer *t, const std::string &text, bool *ok) {
  std::vector<int32_t> ids(text.size() + 16);
  size_t n = 0;
  *ok = moir_tokenize(t, text.data(), text.size(), ids.data(), ids.size(), &n) == MOIR_OK;
  if (!*ok)
    std::fprintf(stderr, "  tokenize failed: %s\n", moir_last_error());
  ids.resize(*ok ? n : 0);
  return ids;
}

std::string show(const std::vector<int32_t> &ids) {
  std::string s;
  for (int32_t id : ids)
    s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

/// --llama-cpp: ids identical to llama.cpp's, and text back from them.
int checkAgainstLlamaCpp(int argc, char **argv) {
  moir_tokenizer *t = nullptr;
  if (moir_tokenizer_open(argv[2], &t) != MOIR_OK) {
    std::string why = moir_last_error();
    std::fprintf(stderr, "%s\n", why.c_str());
    return why.find("built without tokenizers") != std::string::npos ? 77 : 1;
  }
  int passed = 0, failed = 0;
  auto check = [&](const std::string &what, const std::string &text, const json &want,
                   bool special) {
    std::vector<int32_t> ids(text.size() + 16), ref = want;
    size_t n = 0;
    bool ok = moir_tokenize_special(t, text.data(), text.size(), special, ids.data(), ids.size(),
                                    &n) == MOIR_OK;
    ids.resize(ok ? n : 0);
    // Decoded back to the text (without the BOS that add_special put there).
    std::string back(text.size() * 2 + 64, '\0');
    size_t bytes = 0;
    bool decoded = moir_detokenize(t, ref.data(), ref.size(), /*skip_special=*/special, back.data(),
                                   back.size(), &bytes) == MOIR_OK;
    back.resize(decoded ? bytes : 0);
    if (!ok || ids != ref || ref.empty() || back != text) {
      std::fprintf(stderr, "%s differs\n  got  %s\n  want %s\n  text back %s\n", what.c_str(),
                   show(ids).c_str(), show(ref).c_str(), back == text ? "same" : "DIFFERS");
      ++failed;
    } else {
      ++passed;
    }
  };
  json tokens = json::parse(slurp(argv[3]), nullptr, false);
  if (tokens.is_discarded() || !tokens.contains("lines") || !tokens.contains("whole")) {
    std::fprintf(stderr, "%s: not llama.cpp's token ids\n", argv[3]);
    return 1;
  }
  std::string whole;
  size_t line = 0;
  for (const json &l : tokens["lines"]) {
    ++line;
    if (!l.contains("text"))
      continue; // not UTF-8: the runtime refuses such text
    std::string text = l["text"];
    whole += text + "\n";
    if (!text.empty())
      check("line " + std::to_string(line), text, l["ids"], false);
  }
  check("the whole corpus", whole, tokens["whole"], false);
  if (argc > 4) {
    json greedy = json::parse(slurp(argv[4]), nullptr, false);
    if (greedy.is_discarded() || !greedy.contains("prompts")) {
      std::fprintf(stderr, "%s: not llama.cpp's greedy runs\n", argv[4]);
      return 1;
    }
    for (const json &p : greedy["prompts"])
      check("prompt '" + p["prompt"].get<std::string>() + "' with BOS", p["prompt"],
            p["prompt_ids"], true);
  }
  moir_tokenizer_close(t);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed || passed == 0 ? 1 : 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc >= 4 && std::string(argv[1]) == "--llama-cpp")
    return checkAgainstLlamaCpp(argc, argv);
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: moir_tokenizer_test FIXTURES_DIR [MALFORMED_DIR]\n");
    return 2;
  }
  std::string root = argv[1];
  std::vector<std::string> names;
  if (DIR *dir = opendir(root.c_str())) {
    while (dirent *e = readdir(dir))
      if (e->d_name[0] != '.' && std::ifstream(root + "/" + e->d_name + "/tokenizer.json"))
        names.push_back(e->d_name);
    closedir(dir);
  }
  std::string corpus = slurp(root + "/corpus.txt");
  int passed = 0, failed = 0;
  for (const std::string &name : names) {
    std::string dir = root + "/" + name;
    moir_tokenizer *t = nullptr;
    if (moir_tokenizer_open((dir + "/tokenizer.json").c_str(), &t) != MOIR_OK) {
      std::string why = moir_last_error();
      if (why.find("built without tokenizers") != std::string::npos) {
        std::printf("unsupported: %s\n", why.c_str());
        return 77;
      }
      std::fprintf(stderr, "%s: %s\n", name.c_str(), why.c_str());
      ++failed;
      continue;
    }
    json expected = json::parse(slurp(dir + "/expected.json"));
    // The corpus's lines, with their line ends, as the generator cut them.
    std::vector<std::string> lines;
    for (size_t at = 0; at < corpus.size();) {
      size_t end = corpus.find('\n', at);
      end = end == std::string::npos ? corpus.size() : end + 1;
      lines.push_back(corpus.substr(at, end - at));
      at = end;
    }
    int wrong = 0;
    const json &want = expected["lines"];
    if (want.size() != lines.size()) {
      std::fprintf(stderr, "%s: %zu expected lines, corpus has %zu\n", name.c_str(), want.size(),
                   lines.size());
      ++wrong;
    }
    for (size_t i = 0; i < lines.size() && i < want.size(); ++i) {
      bool ok;
      std::vector<int32_t> got = encode(t, lines[i], &ok), ref = want[i];
      if (got != ref) {
        std::fprintf(stderr, "%s: line %zu differs\n  got  %s\n  want %s\n", name.c_str(), i + 1,
                     show(got).c_str(), show(ref).c_str());
        ++wrong;
      }
    }
    bool ok;
    std::vector<int32_t> whole = encode(t, corpus, &ok), ref = expected["corpus"];
    if (whole != ref || whole.empty()) {
      std::fprintf(stderr, "%s: the whole corpus differs (%zu ids, want %zu)\n", name.c_str(),
                   whole.size(), ref.size());
      ++wrong;
    }
    // The post-processor's special tokens (a BOS) around the first line.
    if (expected.contains("special")) {
      std::vector<int32_t> ids(lines[0].size() + 16), want = expected["special"];
      size_t n = 0;
      bool okSpecial = moir_tokenize_special(t, lines[0].data(), lines[0].size(), 1, ids.data(),
                                             ids.size(), &n) == MOIR_OK;
      ids.resize(okSpecial ? n : 0);
      if (!okSpecial || ids != want) {
        std::fprintf(stderr, "%s: with special tokens differs\n  got  %s\n  want %s\n",
                     name.c_str(), show(ids).c_str(), show(want).c_str());
        ++wrong;
      }
    }
    std::string text(corpus.size() * 2 + 64, '\0');
    size_t bytes = 0;
    if (moir_detokenize(t, ref.data(), ref.size(), 0, text.data(), text.size(), &bytes) != MOIR_OK ||
        text.substr(0, bytes) != expected["decoded"].get<std::string>()) {
      std::fprintf(stderr, "%s: decoding differs from the package's\n", name.c_str());
      ++wrong;
    }
    // Streaming, token by token: the pieces join to the decoded text, and
    // each is intact UTF-8 characters (none ends inside one).
    moir_text_stream *stream = nullptr;
    std::string joined;
    bool intact = moir_text_stream_create(t, 0, &stream) == MOIR_OK;
    for (size_t i = 0; intact && i < ref.size(); ++i) {
      const char *piece = nullptr;
      size_t n = 0;
      intact = moir_text_stream_push(stream, ref[i], &piece, &n) == MOIR_OK;
      std::string p(piece ? piece : "", n);
      if (!p.empty()) {
        unsigned char last = p.back();
        size_t back = 0;
        while (back < p.size() && (static_cast<unsigned char>(p[p.size() - 1 - back]) & 0xC0) == 0x80)
          ++back;
        unsigned char lead = p[p.size() - 1 - back];
        size_t need = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
        intact = intact && (last < 0x80 || back + 1 == need);
      }
      joined += p;
    }
    const char *rest = nullptr;
    size_t restBytes = 0;
    moir_text_stream_finish(stream, &rest, &restBytes);
    joined.append(rest, restBytes);
    moir_text_stream_destroy(stream);
    // A stream continues a text: decoders keep its first space ("streamed",
    // the package's decoding without the strip, where the two differ).
    std::string streamed = expected.value("streamed", expected["decoded"].get<std::string>());
    if (!intact || joined != streamed) {
      std::fprintf(stderr, "%s: streamed decoding differs or splits a character\n", name.c_str());
      ++wrong;
    }
    moir_tokenizer_close(t);
    std::printf("%s: %zu lines + corpus (%zu ids) %s\n", name.c_str(), lines.size(), ref.size(),
                wrong ? "DIFFER" : "identical to tokenizers");
    (wrong ? failed : passed) += 1;
  }
  if (argc == 3) {
    std::vector<std::string> bad;
    if (DIR *dir = opendir(argv[2])) {
      while (dirent *e = readdir(dir))
        if (std::string(e->d_name).rfind("bad-", 0) == 0)
          bad.push_back(std::string(argv[2]) + "/" + e->d_name);
      closedir(dir);
    }
    for (const std::string &path : bad) {
      moir_tokenizer *t = nullptr;
      moir_status s = moir_tokenizer_open(path.c_str(), &t);
      std::string why = moir_last_error();
      bool ok = s != MOIR_OK && !t && why.find(path) != std::string::npos;
      std::printf("%s: %s\n", path.c_str(), ok ? why.c_str() : "NOT REFUSED AS IT SHOULD BE");
      moir_tokenizer_close(t);
      (ok ? passed : failed) += 1;
    }
    if (bad.empty()) {
      std::fprintf(stderr, "no bad-*.json in %s\n", argv[2]);
      ++failed;
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed || passed == 0 ? 1 : 0;
}
