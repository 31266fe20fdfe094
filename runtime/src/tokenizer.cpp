// Tokenizers: Hugging Face tokenizer.json. Text is split first into the added
// (special) tokens, matched literally; each other part is normalized
// (Prepend, Replace, NFC/NFKC/NFD/NFKD, Lowercase, Strip), cut by the
// pre-tokenizer (Split patterns in PCRE2, ByteLevel, Metaspace, Digits), and
// each piece's symbols are joined by BPE, best pair first (a priority queue
// over adjacent pairs, not a rescan per merge):
//   - byte-level BPE (GPT-2, Llama 3, Qwen, DeepSeek, OLMoE): bytes mapped to
//     characters, merges ranked by the merges list;
//   - SentencePiece-style BPE (Llama 2, Mistral, Mixtral, Gemma): characters,
//     merges ranked by the list, characters outside the vocabulary as their
//     <0xXX> byte tokens (byte_fallback) or the unknown token;
//   - "moir.ScoreBPE": SentencePiece BPE as llama.cpp runs a GGUF "llama"
//     vocabulary, which has piece scores instead of merges: any adjacent pair
//     whose concatenation is a piece may merge, highest score first (moirc
//     writes this model type from GGUF metadata; docs/tokenizers.md).
// The post-processor's TemplateProcessing gives the special tokens around a
// text (a BOS); the decoder chain (ByteLevel, Replace, ByteFallback, Fuse,
// Strip, Metaspace) turns ids back into bytes.
#include "status.h"
#include "tokenizer.h"
#include "utf8.h"

#include "moir/runtime.h"

#ifdef MOIR_HAVE_TOKENIZER

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#ifdef MOIR_HAVE_UTF8PROC
#include <utf8proc.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <queue>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

using moir::rt::fail;
using json = nlohmann::json;

namespace {

std::string utf8(uint32_t cp) {
  std::string s;
  moir::rt::appendUtf8(s, cp);
  return s;
}

/// The byte length of the UTF-8 character that starts with `lead` (1 for a
/// stray continuation byte, so a scan always moves on).
size_t charLength(unsigned char lead) {
  return lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

/// GPT-2's byte-to-character map: printable bytes stand for themselves, the
/// others for code points from 256 up, in byte order.
struct ByteLevel {
  std::string encode[256]; // byte -> UTF-8 of its character
  std::unordered_map<uint32_t, uint8_t> decode; // code point -> byte
  ByteLevel() {
    int next = 0;
    for (int byte = 0; byte < 256; ++byte) {
      bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
                       (byte >= 0xAE && byte <= 0xFF);
      uint32_t cp = printable ? static_cast<uint32_t>(byte) : 256 + next++;
      encode[byte] = utf8(cp);
      decode[cp] = static_cast<uint8_t>(byte);
    }
  }
};

const ByteLevel &byteLevel() {
  static const ByteLevel table;
  return table;
}

/// A compiled pattern and how its matches cut the text.
struct Split {
  pcre2_code *code = nullptr;
  // Isolated: matches and the text between them are pieces; others as
  // tokenizers' SplitDelimiterBehavior.
  std::string behavior = "Isolated";
  bool invert = false;
  ~Split() { pcre2_code_free(code); }
};

/// The GPT-2 pattern ByteLevel(use_regex) splits with.
constexpr char kByteLevelPattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct AddedToken {
  std::string content;
  int32_t id;
  bool special;
};

/// One normalizer of the chain.
struct Normalizer {
  enum Kind { Prepend, Replace, ReplaceRegex, Unicode, Lowercase, Strip } kind;
  std::string a, b;              // Prepend: a; Replace: a -> b
  std::unique_ptr<Split> regex;  // ReplaceRegex: the pattern
  int form = 0;                  // Unicode: 0 NFC, 1 NFKC, 2 NFD, 3 NFKD
  bool left = false, right = false; // Strip
};

/// One step of the pre-tokenizer chain.
struct PreTokenizer {
  enum Kind { SplitStep, Metaspace } kind;
  std::unique_ptr<Split> split;
  std::string replacement;       // Metaspace
  std::string prependScheme;     // Metaspace: always, first, never
};

/// One step of the decoder chain.
struct Decoder {
  enum Kind { ByteLevelStep, Replace, ByteFallback, Fuse, Strip, Metaspace } kind;
  std::string a, b;      // Replace: a -> b; Strip: a is the character
  size_t start = 0, stop = 0;
  bool prepend = false;  // Metaspace: a space was prepended when encoding
};

} // namespace

struct moir_tokenizer {
  std::string path;
  enum class Model { BPE, ScoreBPE } model = Model::BPE;
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> pieces; // id -> token string
  // Merges by the pair of ids they join ((left << 32) | right): the rank
  // (lower first: the merges list's order, or minus the joined piece's score)
  // and the joined id.
  struct Merge {
    double rank;
    int32_t id;
  };
  // Open addressing (one cache line per probe, no node chasing): a real
  // vocabulary's table holds millions of pairs.
  struct MergeTable {
    struct Slot {
      uint64_t key = kEmpty;
      double rank;
      int32_t id;
    };
    static constexpr uint64_t kEmpty = ~uint64_t(0);
    std::vector<Slot> slots;
    size_t count = 0;
    static size_t hash(uint64_t key) {
      key ^= key >> 33;
      key *= 0xff51afd7ed558ccdull;
      key ^= key >> 33;
      return static_cast<size_t>(key);
    }
    /// Keeps the first merge of a pair (as llama.cpp does).
    void insert(uint64_t key, Merge m) {
      if ((count + 1) * 2 > slots.size()) {
        std::vector<Slot> old(std::max<size_t>(64, slots.size() * 2));
        old.swap(slots);
        count = 0;
        for (const Slot &e : old)
          if (e.key != kEmpty)
            insert(e.key, {e.rank, e.id});
      }
      for (size_t i = hash(key) & (slots.size() - 1);; i = (i + 1) & (slots.size() - 1)) {
        if (slots[i].key == key)
          return;
        if (slots[i].key == kEmpty) {
          slots[i] = {key, m.rank, m.id};
          ++count;
          return;
        }
      }
    }
    const Slot *find(uint64_t key) const {
      if (slots.empty())
        return nullptr;
      for (size_t i = hash(key) & (slots.size() - 1);; i = (i + 1) & (slots.size() - 1)) {
        if (slots[i].key == key)
          return &slots[i];
        if (slots[i].key == kEmpty)
          return nullptr;
      }
    }
  } merges;
  // Characters below U+0800 (one or two bytes): their ids without hashing
  // (-1: not a piece).
  std::vector<int32_t> smallCharIds;
  int32_t byteIds[256];      // byte-level: each byte's character's id (-1: none)
  int32_t fallbackIds[256];  // each byte's <0xXX> token (-1: none)
  bool ignoreMerges = false, byteFallback = false, fuseUnk = false;
  int32_t unk = -1;
  // Byte-level: the pre-tokenizer maps bytes to characters (ByteLevel).
  bool byteLevelPieces = false, addPrefixSpace = false;
  std::vector<Normalizer> normalizers;
  std::vector<PreTokenizer> preTokenizers;
  std::vector<Decoder> decoders;
  // The post-processor's special tokens before and after a text; a
  // post-processor this runtime cannot apply is named in `postUnsupported`.
  std::vector<int32_t> prefix, suffix;
  std::string postUnsupported;
  // From the artifact's tokenizer_config.json (moir_model_tokenizer).
  int32_t bos = -1, eos = -1;
  std::vector<int32_t> stops;
  std::vector<AddedToken> added; // longest first
  std::vector<bool> isSpecial; // per id
  // The added tokens' bytes as a trie: node * 256 + byte -> child node;
  // addedAt[node]: the index into `added` of the token ending there, or -1.
  // The walk from a position finds the longest token that starts there.
  std::unordered_map<uint64_t, int32_t> addedTrie;
  std::vector<int32_t> addedAt{-1};
};

namespace {

moir_status bad(const std::string &path, const std::string &why) {
  return fail(MOIR_ERROR_FORMAT, path + ": " + why);
}

moir_status unsupported(const std::string &path, const std::string &why) {
  return fail(MOIR_ERROR_UNSUPPORTED, path + ": " + why);
}

/// Compiles `pattern` (UTF-8, Unicode properties) into *out.
moir_status compilePattern(const moir_tokenizer &t, const std::string &pattern,
                           const std::string &behavior, bool invert, std::unique_ptr<Split> *out) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  auto split = std::make_unique<Split>();
  split->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (!split->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    return bad(t.path, "pattern '" + pattern + "' does not compile at offset " +
                           std::to_string(offset) + ": " + reinterpret_cast<char *>(message));
  }
  // Machine code for the pattern where PCRE2 has a JIT for this CPU (the
  // interpreter otherwise).
  (void)pcre2_jit_compile(split->code, PCRE2_JIT_COMPLETE);
  if (behavior != "Isolated" && behavior != "Removed" && behavior != "MergedWithPrevious" &&
      behavior != "MergedWithNext" && behavior != "Contiguous")
    return unsupported(t.path, "Split behavior '" + behavior + "'");
  split->behavior = behavior;
  split->invert = invert;
  *out = std::move(split);
  return MOIR_OK;
}

moir_status addSplit(moir_tokenizer &t, const std::string &pattern, const std::string &behavior,
                     bool invert) {
  PreTokenizer step{PreTokenizer::SplitStep, nullptr, {}, {}};
  if (moir_status s = compilePattern(t, pattern, behavior, invert, &step.split); s != MOIR_OK)
    return s;
  t.preTokenizers.push_back(std::move(step));
  return MOIR_OK;
}

/// A Split or Replace pattern: {"Regex": ...} as is, {"String": ...} quoted.
bool patternOf(const json &p, std::string *out, bool *regex = nullptr) {
  const json &pattern = p.value("pattern", json());
  if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
    *out = pattern["Regex"].get<std::string>();
    if (regex)
      *regex = true;
    return true;
  }
  if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
    *out = pattern["String"].get<std::string>();
    if (regex)
      *regex = false;
    return true;
  }
  return false;
}

std::string quotedPattern(const std::string &literal) { return "\\Q" + literal + "\\E"; }

/// A section's "type", or `absent` when it is not an object.
std::string typeOf(const json &section, const char *absent) {
  return section.is_object() ? section.value("type", std::string("?")) : std::string(absent);
}

moir_status readNormalizer(moir_tokenizer &t, const json &n) {
  if (n.is_null())
    return MOIR_OK;
  std::string type = typeOf(n, "?");
  if (type == "Sequence") {
    if (!n.contains("normalizers") || !n["normalizers"].is_array())
      return bad(t.path, "Sequence normalizer without normalizers");
    for (const json &m : n["normalizers"])
      if (moir_status s = readNormalizer(t, m); s != MOIR_OK)
        return s;
    return MOIR_OK;
  }
  Normalizer step{};
  if (type == "Prepend") {
    if (!n.contains("prepend") || !n["prepend"].is_string())
      return bad(t.path, "Prepend normalizer without a prepend string");
    step.kind = Normalizer::Prepend;
    step.a = n["prepend"].get<std::string>();
  } else if (type == "Replace") {
    bool regex = false;
    if (!patternOf(n, &step.a, &regex) || !n.contains("content") || !n["content"].is_string())
      return bad(t.path, "Replace normalizer without a pattern and content");
    step.b = n["content"].get<std::string>();
    step.kind = regex ? Normalizer::ReplaceRegex : Normalizer::Replace;
    if (regex)
      if (moir_status s = compilePattern(t, step.a, "Isolated", false, &step.regex); s != MOIR_OK)
        return s;
    if (!regex && step.a.empty())
      return bad(t.path, "Replace normalizer with an empty pattern");
  } else if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD") {
#ifdef MOIR_HAVE_UTF8PROC
    step.kind = Normalizer::Unicode;
    step.form = type == "NFC" ? 0 : type == "NFKC" ? 1 : type == "NFD" ? 2 : 3;
#else
    return unsupported(t.path, "normalizer '" + type +
                                   "' (this runtime was built without utf8proc)");
#endif
  } else if (type == "Lowercase") {
    step.kind = Normalizer::Lowercase;
#ifndef MOIR_HAVE_UTF8PROC
    return unsupported(t.path, "normalizer 'Lowercase' (this runtime was built without utf8proc)");
#endif
  } else if (type == "Strip") {
    step.kind = Normalizer::Strip;
    step.left = n.value("strip_left", false);
    step.right = n.value("strip_right", false);
  } else {
    return unsupported(t.path, "normalizer type '" + type + "'");
  }
  t.normalizers.push_back(std::move(step));
  return MOIR_OK;
}

moir_status readPreTokenizer(moir_tokenizer &t, const json &p) {
  if (p.is_null())
    return MOIR_OK;
  if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
    return bad(t.path, "pre_tokenizer without a type");
  std::string type = p["type"].get<std::string>();
  if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array())
      return bad(t.path, "Sequence pre_tokenizer without pretokenizers");
    for (const json &q : p["pretokenizers"])
      if (moir_status s = readPreTokenizer(t, q); s != MOIR_OK)
        return s;
    return MOIR_OK;
  }
  if (type == "ByteLevel") {
    t.byteLevelPieces = true;
    t.addPrefixSpace = p.value("add_prefix_space", false);
    if (p.value("use_regex", true))
      return addSplit(t, kByteLevelPattern, "Isolated", false);
    return MOIR_OK;
  }
  if (type == "Split") {
    std::string text;
    bool regex = false;
    if (!patternOf(p, &text, &regex))
      return bad(t.path, "Split pre_tokenizer without a Regex or String pattern");
    return addSplit(t, regex ? text : quotedPattern(text), p.value("behavior", std::string("Isolated")),
                    p.value("invert", false));
  }
  if (type == "Digits")
    return addSplit(t, p.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+", "Isolated",
                    false);
  if (type == "WhitespaceSplit")
    return addSplit(t, "\\s+", "Removed", false);
  if (type == "Metaspace") {
    PreTokenizer step{PreTokenizer::Metaspace, nullptr, p.value("replacement", std::string("\xE2\x96\x81")),
                      p.value("prepend_scheme", std::string("always"))};
    // Older files: add_prefix_space instead of a prepend_scheme.
    if (!p.contains("prepend_scheme") && p.contains("add_prefix_space"))
      step.prependScheme = p.value("add_prefix_space", true) ? "always" : "never";
    if (step.prependScheme != "always" && step.prependScheme != "first" &&
        step.prependScheme != "never")
      return unsupported(t.path, "Metaspace prepend_scheme '" + step.prependScheme + "'");
    if (step.replacement.empty())
      return bad(t.path, "Metaspace pre_tokenizer with an empty replacement");
    if (p.value("split", true))
      if (moir_status s = compilePattern(t, quotedPattern(step.replacement), "MergedWithNext", false,
                                         &step.split);
          s != MOIR_OK)
        return s;
    t.preTokenizers.push_back(std::move(step));
    return MOIR_OK;
  }
  return unsupported(t.path, "pre_tokenizer type '" + type + "'");
}

moir_status readDecoder(moir_tokenizer &t, const json &d) {
  std::string type = typeOf(d, "none");
  if (type == "Sequence") {
    if (!d.contains("decoders") || !d["decoders"].is_array())
      return bad(t.path, "Sequence decoder without decoders");
    for (const json &e : d["decoders"])
      if (moir_status s = readDecoder(t, e); s != MOIR_OK)
        return s;
    return MOIR_OK;
  }
  Decoder step{};
  if (type == "ByteLevel") {
    step.kind = Decoder::ByteLevelStep;
  } else if (type == "Replace") {
    bool regex = false;
    if (!patternOf(d, &step.a, &regex) || regex || step.a.empty() || !d.contains("content") ||
        !d["content"].is_string())
      return unsupported(t.path, "Replace decoder other than a string pattern with content");
    step.kind = Decoder::Replace;
    step.b = d["content"].get<std::string>();
  } else if (type == "ByteFallback") {
    step.kind = Decoder::ByteFallback;
  } else if (type == "Fuse") {
    step.kind = Decoder::Fuse;
  } else if (type == "Strip") {
    step.kind = Decoder::Strip;
    step.a = d.value("content", std::string(" "));
    step.start = d.value("start", size_t(0));
    step.stop = d.value("stop", size_t(0));
    if (step.a.empty() || charLength(step.a[0]) != step.a.size())
      return bad(t.path, "Strip decoder whose content is not one character");
  } else if (type == "Metaspace") {
    step.kind = Decoder::Metaspace;
    step.a = d.value("replacement", std::string("\xE2\x96\x81"));
    std::string scheme = d.value("prepend_scheme", std::string("always"));
    if (!d.contains("prepend_scheme") && d.contains("add_prefix_space"))
      scheme = d.value("add_prefix_space", true) ? "always" : "never";
    step.prepend = scheme != "never";
    if (step.a.empty())
      return bad(t.path, "Metaspace decoder with an empty replacement");
  } else {
    return unsupported(t.path, "decoder '" + type + "'");
  }
  t.decoders.push_back(std::move(step));
  return MOIR_OK;
}

/// The special tokens a post-processor puts around one text: the "single"
/// template of TemplateProcessing (a ByteLevel post-processor only moves
/// offsets). Others are remembered as unsupported, for add_special.
moir_status readPostProcessor(moir_tokenizer &t, const json &p) {
  std::string type = typeOf(p, "none");
  if (type == "none" || type == "ByteLevel")
    return MOIR_OK;
  if (type == "Sequence") {
    if (!p.contains("processors") || !p["processors"].is_array())
      return bad(t.path, "Sequence post_processor without processors");
    for (const json &q : p["processors"])
      if (moir_status s = readPostProcessor(t, q); s != MOIR_OK)
        return s;
    return MOIR_OK;
  }
  if (type != "TemplateProcessing") {
    t.postUnsupported = "post_processor '" + type + "'";
    return MOIR_OK;
  }
  const json &single = p.value("single", json());
  const json &specials = p.value("special_tokens", json::object());
  if (!single.is_array() || !specials.is_object())
    return bad(t.path, "TemplateProcessing without a single template");
  bool seenText = false;
  for (const json &item : single) {
    if (item.is_object() && item.contains("Sequence")) {
      if (seenText)
        return unsupported(t.path, "a TemplateProcessing single template with two texts");
      seenText = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken") || !item["SpecialToken"].is_object() ||
        !item["SpecialToken"].contains("id") || !item["SpecialToken"]["id"].is_string())
      return bad(t.path, "a TemplateProcessing item that is neither a Sequence nor a SpecialToken");
    std::string name = item["SpecialToken"]["id"].get<std::string>();
    if (!specials.contains(name) || !specials[name].is_object() ||
        !specials[name].contains("ids") || !specials[name]["ids"].is_array())
      return bad(t.path, "TemplateProcessing names special token '" + name +
                             "' without its ids");
    for (const json &id : specials[name]["ids"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t(1) << 30))
        return bad(t.path, "TemplateProcessing special token '" + name + "' has a bad id");
      (seenText ? t.suffix : t.prefix).push_back(id.get<int32_t>());
    }
  }
  if (!seenText)
    return bad(t.path, "a TemplateProcessing single template without the text ($A)");
  return MOIR_OK;
}

/// Cuts every piece of `pieces` by `split`.
std::vector<std::string> applySplit(const Split &split, const std::vector<std::string> &pieces,
                                    pcre2_match_data *match) {
  std::vector<std::string> out;
  for (const std::string &piece : pieces) {
    // Spans: (begin, end, matched).
    std::vector<std::tuple<size_t, size_t, bool>> spans;
    size_t at = 0;
    PCRE2_SIZE start = 0;
    while (start <= piece.size()) {
      // The text was checked to be UTF-8 once, up front.
      int rc = pcre2_match(split.code, reinterpret_cast<PCRE2_SPTR>(piece.data()), piece.size(),
                           start, PCRE2_NO_UTF_CHECK, match, nullptr);
      if (rc < 0)
        break;
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(match);
      size_t b = ov[0], e = ov[1];
      if (b > at)
        spans.emplace_back(at, b, false);
      if (e > b)
        spans.emplace_back(b, e, true);
      at = e;
      start = e > b ? e : e + 1;
      // Step over a whole UTF-8 character after an empty match.
      while (e == b && start < piece.size() && (piece[start] & 0xC0) == 0x80)
        ++start;
    }
    if (at < piece.size())
      spans.emplace_back(at, piece.size(), false);
    if (split.invert)
      for (auto &s : spans)
        std::get<2>(s) = !std::get<2>(s);
    // tokenizers' SplitDelimiterBehavior: a match joins its neighbour only
    // when that neighbour is not a match itself.
    const std::string &how = split.behavior;
    std::vector<std::string> cut;
    if (how == "MergedWithNext") {
      bool previousMatch = false;
      for (size_t i = spans.size(); i-- > 0;) {
        auto [b, e, matched] = spans[i];
        if (matched && !previousMatch && !cut.empty())
          cut.back() = piece.substr(b, e - b) + cut.back();
        else
          cut.push_back(piece.substr(b, e - b));
        previousMatch = matched;
      }
      std::reverse(cut.begin(), cut.end());
    } else {
      bool previousMatch = false;
      for (auto [b, e, matched] : spans) {
        std::string text = piece.substr(b, e - b);
        bool join = how == "MergedWithPrevious" ? matched && !previousMatch
                    : how == "Contiguous"       ? matched == previousMatch
                                                : false;
        if (how == "Removed" && matched) {
        } else if (join && !cut.empty()) {
          cut.back() += text;
        } else {
          cut.push_back(std::move(text));
        }
        previousMatch = matched;
      }
    }
    for (std::string &c : cut)
      out.push_back(std::move(c));
  }
  return out;
}

void replaceAll(std::string &s, const std::string &from, const std::string &to) {
  std::string out;
  size_t at = 0;
  for (size_t hit; (hit = s.find(from, at)) != std::string::npos; at = hit + from.size())
    out.append(s, at, hit - at).append(to);
  out.append(s, at, std::string::npos);
  s.swap(out);
}

/// The normalizer chain on one part of the text (between added tokens).
moir_status normalize(const moir_tokenizer &t, std::string &s) {
  for (const Normalizer &n : t.normalizers) {
    switch (n.kind) {
    case Normalizer::Prepend:
      if (!s.empty())
        s = n.a + s;
      break;
    case Normalizer::Replace:
      replaceAll(s, n.a, n.b);
      break;
    case Normalizer::ReplaceRegex: {
      PCRE2_SIZE size = s.size() * 2 + n.b.size() + 64;
      std::string out;
      for (int attempt = 0; attempt < 2; ++attempt) {
        out.assign(size, '\0');
        int rc = pcre2_substitute(
            n.regex->code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0,
            PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_LITERAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH |
                PCRE2_NO_UTF_CHECK,
            nullptr, nullptr, reinterpret_cast<PCRE2_SPTR>(n.b.data()), n.b.size(),
            reinterpret_cast<PCRE2_UCHAR *>(out.data()), &size);
        if (rc >= 0) {
          out.resize(size);
          break;
        }
        if (rc != PCRE2_ERROR_NOMEMORY || attempt == 1)
          return fail(MOIR_ERROR_FORMAT, t.path + ": Replace normalizer failed (" +
                                               std::to_string(rc) + ")");
      }
      s.swap(out);
      break;
    }
    case Normalizer::Unicode:
    case Normalizer::Lowercase: {
#ifdef MOIR_HAVE_UTF8PROC
      static const utf8proc_option_t forms[] = {
          utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE),
          utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT),
          utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE),
          utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT)};
      if (n.kind == Normalizer::Lowercase) {
        std::string out;
        for (size_t at = 0; at < s.size();) {
          utf8proc_int32_t cp = 0;
          utf8proc_ssize_t len = utf8proc_iterate(
              reinterpret_cast<const utf8proc_uint8_t *>(s.data()) + at, s.size() - at, &cp);
          if (len <= 0)
            return fail(MOIR_ERROR_FORMAT, t.path + ": Lowercase met bytes that are not UTF-8");
          out += utf8(static_cast<uint32_t>(utf8proc_tolower(cp)));
          at += len;
        }
        s.swap(out);
        break;
      }
      utf8proc_uint8_t *result = nullptr;
      utf8proc_ssize_t len =
          utf8proc_map(reinterpret_cast<const utf8proc_uint8_t *>(s.data()), s.size(), &result,
                       forms[n.form]);
      if (len < 0)
        return fail(MOIR_ERROR_FORMAT, t.path + ": Unicode normalization failed: " +
                                             utf8proc_errmsg(len));
      s.assign(reinterpret_cast<char *>(result), len);
      std::free(result);
#endif
      break;
    }
    case Normalizer::Strip: {
      size_t b = 0, e = s.size();
      auto space = [](unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
      while (n.left && b < e && space(s[b]))
        ++b;
      while (n.right && e > b && space(s[e - 1]))
        --e;
      s = s.substr(b, e - b);
      break;
    }
    }
  }
  return MOIR_OK;
}

inline uint64_t pairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

/// BPE over one pre-token: joins the best adjacent pair until none is left
/// (pairs in a priority queue, symbols as ids in a linked list; stale queue
/// entries are skipped). Merges rank pairs by the merges list (BPE) or by the
/// joined piece's score (ScoreBPE, higher first); ties go to the leftmost
/// pair.
void bpe(const moir_tokenizer &t, const std::string &text, std::vector<int32_t> &ids) {
  const ByteLevel &bl = byteLevel();
  struct Symbol {
    int32_t id;    // -1: a character outside the vocabulary (ScoreBPE)
    int32_t prev, next;
    uint32_t from, size; // its bytes in `text` (unknown characters)
  };
  std::vector<Symbol> sym;
  sym.reserve(text.size());
  auto add = [&](int32_t id, size_t from, size_t size) {
    int32_t i = static_cast<int32_t>(sym.size());
    if (i)
      sym.back().next = i;
    sym.push_back({id, i - 1, -1, static_cast<uint32_t>(from), static_cast<uint32_t>(size)});
  };
  if (t.ignoreMerges) {
    std::string whole;
    if (t.byteLevelPieces)
      for (unsigned char c : text)
        whole += bl.encode[c];
    auto it = t.vocab.find(t.byteLevelPieces ? whole : text);
    if (it != t.vocab.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  if (t.byteLevelPieces) {
    for (size_t i = 0; i < text.size(); ++i)
      if (int32_t id = t.byteIds[static_cast<unsigned char>(text[i])]; id >= 0)
        add(id, i, 1); // a byte-level vocabulary holds every byte
  } else {
    bool lastUnk = false;
    std::string c;
    for (size_t at = 0; at < text.size();) {
      size_t n = std::min(charLength(text[at]), text.size() - at);
      int32_t id = -1;
      unsigned char lead = text[at];
      if (n == 1) {
        id = t.smallCharIds[lead];
      } else if (n == 2) {
        id = t.smallCharIds[((lead & 0x1F) << 6) | (text[at + 1] & 0x3F)];
      } else {
        c.assign(text, at, n);
        auto it = t.vocab.find(c);
        id = it != t.vocab.end() ? it->second : -1;
      }
      if (id >= 0 || t.model == moir_tokenizer::Model::ScoreBPE) {
        // ScoreBPE keeps a character outside the vocabulary as it is: its
        // bytes' tokens at the end, as llama.cpp does.
        add(id, at, n);
        lastUnk = false;
        at += n;
        continue;
      }
      // tokenizers: the character's <0xXX> byte tokens when all exist, else
      // the unknown token (consecutive ones fused with fuse_unk), else
      // nothing.
      bool all = t.byteFallback;
      for (size_t k = 0; all && k < n; ++k)
        all = t.fallbackIds[static_cast<unsigned char>(text[at + k])] >= 0;
      if (all) {
        for (size_t k = 0; k < n; ++k)
          add(t.fallbackIds[static_cast<unsigned char>(text[at + k])], at + k, 1);
        lastUnk = false;
      } else if (t.unk >= 0 && !(t.fuseUnk && lastUnk)) {
        add(t.unk, at, n);
        lastUnk = true;
      }
      at += n;
    }
  }
  struct Pair {
    double rank;
    int32_t left, leftId, rightId, joined;
    bool operator>(const Pair &o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::vector<Pair> storage;
  storage.reserve(sym.size());
  std::priority_queue<Pair, std::vector<Pair>, std::greater<Pair>> queue(std::greater<Pair>(),
                                                                        std::move(storage));
  auto push = [&](int32_t left) {
    if (left < 0 || sym[left].next < 0)
      return;
    int32_t a = sym[left].id, b = sym[sym[left].next].id;
    if (a < 0 || b < 0)
      return;
    if (const auto *m = t.merges.find(pairKey(a, b)))
      queue.push({m->rank, left, a, b, m->id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i)
    push(i);
  while (!queue.empty()) {
    Pair p = queue.top();
    queue.pop();
    Symbol &l = sym[p.left];
    // Stale: the left symbol was merged away or changed, or its neighbour did.
    if (l.id != p.leftId || l.next < 0 || sym[l.next].id != p.rightId)
      continue;
    Symbol &r = sym[l.next];
    l.id = p.joined;
    r.id = -2; // merged away
    l.next = r.next;
    if (r.next >= 0)
      sym[r.next].prev = p.left;
    push(l.prev);
    push(p.left);
  }
  for (int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
    if (sym[i].id >= 0) {
      ids.push_back(sym[i].id);
      continue;
    }
    // A character outside the vocabulary (ScoreBPE): its bytes' tokens,
    // else the unknown token.
    for (uint32_t k = 0; k < sym[i].size; ++k) {
      int32_t byte = t.fallbackIds[static_cast<unsigned char>(text[sym[i].from + k])];
      if (byte >= 0)
        ids.push_back(byte);
      else if (t.unk >= 0)
        ids.push_back(t.unk);
    }
  }
}

/// Pieces whose ids one call remembers.
constexpr size_t kCacheEntries = 1 << 16;

/// The offset of the first byte that is not part of well-formed UTF-8, or npos.
size_t invalidUtf8(const std::string &s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = moir::rt::utf8Sequence(s, i);
    if (!n)
      return i;
    i += n;
  }
  return std::string::npos;
}

/// The text's ids (no post-processor): the added tokens, longest first at
/// each position, cut the text; each other part is normalized,
/// pre-tokenized and joined by BPE.
moir_status encode(const moir_tokenizer *t, const std::string &input, std::vector<int32_t> &out) {
  std::vector<std::tuple<size_t, std::string, int32_t>> parts; // (offset, text, id or -1)
  size_t at = 0, plain = 0;
  while (at < input.size()) {
    const AddedToken *hit = nullptr;
    int64_t node = 0;
    for (size_t k = at; k < input.size() && !t->addedTrie.empty(); ++k) {
      auto next = t->addedTrie.find(static_cast<uint64_t>(node) * 256 +
                                    static_cast<unsigned char>(input[k]));
      if (next == t->addedTrie.end())
        break;
      node = next->second;
      if (t->addedAt[node] >= 0)
        hit = &t->added[t->addedAt[node]];
    }
    if (!hit) {
      ++at;
      continue;
    }
    if (at > plain)
      parts.emplace_back(plain, input.substr(plain, at - plain), -1);
    parts.emplace_back(at, hit->content, hit->id);
    at += hit->content.size();
    plain = at;
  }
  if (plain < input.size())
    parts.emplace_back(plain, input.substr(plain), -1);
  std::unordered_map<std::string, std::vector<int32_t>> cache;
  // Each pattern's match data, once per call.
  std::vector<pcre2_match_data *> matches;
  for (const PreTokenizer &p : t->preTokenizers)
    matches.push_back(p.split ? pcre2_match_data_create_from_pattern(p.split->code, nullptr)
                              : nullptr);
  moir_status status = MOIR_OK;
  for (auto &[offset, part, id] : parts) {
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    if (status = normalize(*t, part); status != MOIR_OK)
      break;
    if (part.empty())
      continue;
    std::vector<std::string> pieces{t->addPrefixSpace && part[0] != ' ' ? " " + part : part};
    for (size_t k = 0; k < t->preTokenizers.size(); ++k) {
      const PreTokenizer &p = t->preTokenizers[k];
      if (p.kind == PreTokenizer::Metaspace) {
        for (size_t i = 0; i < pieces.size(); ++i) {
          replaceAll(pieces[i], " ", p.replacement);
          // "first": only the text's very first piece.
          bool prepend = p.prependScheme == "always" ||
                         (p.prependScheme == "first" && offset == 0 && i == 0);
          if (prepend && pieces[i].compare(0, p.replacement.size(), p.replacement) != 0)
            pieces[i] = p.replacement + pieces[i];
        }
      }
      if (p.split)
        pieces = applySplit(*p.split, pieces, matches[k]);
    }
    for (const std::string &piece : pieces) {
      if (piece.empty())
        continue;
      // Words repeat: each piece's ids once per call.
      auto hit = cache.find(piece);
      if (hit != cache.end()) {
        out.insert(out.end(), hit->second.begin(), hit->second.end());
        continue;
      }
      size_t from = out.size();
      bpe(*t, piece, out);
      if (cache.size() < kCacheEntries)
        cache.emplace(piece, std::vector<int32_t>(out.begin() + from, out.end()));
    }
  }
  for (pcre2_match_data *m : matches)
    pcre2_match_data_free(m);
  return status;
}

/// Byte-level characters back to bytes (characters outside the map as they are).
void unmapByteLevel(const std::string &piece, std::string &out) {
  const ByteLevel &bl = byteLevel();
  for (size_t at = 0; at < piece.size();) {
    size_t len = std::min(charLength(piece[at]), piece.size() - at);
    uint32_t cp = static_cast<unsigned char>(piece[at]);
    if (len == 2)
      cp = ((cp & 0x1F) << 6) | (piece[at + 1] & 0x3F);
    else if (len == 3)
      cp = ((cp & 0x0F) << 12) | ((piece[at + 1] & 0x3F) << 6) | (piece[at + 2] & 0x3F);
    auto it = len <= 3 ? bl.decode.find(cp) : bl.decode.end();
    if (it != bl.decode.end())
      out += static_cast<char>(it->second);
    else
      out.append(piece, at, len);
    at += len;
  }
}

/// "<0xXX>" -> the byte XX, or -1.
int byteToken(const std::string &piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>')
    return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    char c = piece[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0)
      return -1;
    value = value * 16 + d;
  }
  return value;
}

/// The decoder chain over the ids' pieces. `continuing`: the ids continue a
/// text (a stream), so nothing strips the text's first space.
moir_status decode(const moir_tokenizer *t, const int32_t *ids, size_t n, bool skipSpecial,
                   bool continuing, std::string &out) {
  std::vector<std::string> tokens;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || static_cast<size_t>(ids[i]) >= t->pieces.size())
      return fail(MOIR_ERROR_OUT_OF_RANGE, "moir_detokenize: token id " + std::to_string(ids[i]) +
                                               " outside the vocabulary");
    if (skipSpecial && t->isSpecial[ids[i]])
      continue;
    tokens.push_back(t->pieces[ids[i]]);
  }
  if (t->decoders.empty()) {
    for (const std::string &s : tokens)
      out += s;
    return MOIR_OK;
  }
  bool fused = false;
  for (const Decoder &d : t->decoders) {
    switch (d.kind) {
    case Decoder::ByteLevelStep: {
      std::string joined;
      for (const std::string &s : tokens)
        unmapByteLevel(s, joined);
      tokens.assign(1, joined);
      fused = true;
      break;
    }
    case Decoder::Replace:
      for (std::string &s : tokens)
        replaceAll(s, d.a, d.b);
      break;
    case Decoder::ByteFallback: {
      // Runs of byte tokens become their bytes. (tokenizers writes U+FFFD for
      // a run that is not UTF-8; the runtime gives the bytes, and its text
      // streams hold back a character until it is whole.)
      std::vector<std::string> merged;
      bool inRun = false;
      for (std::string &s : tokens) {
        int b = byteToken(s);
        if (b >= 0) {
          if (!inRun)
            merged.emplace_back();
          merged.back() += static_cast<char>(b);
          inRun = true;
        } else {
          merged.push_back(std::move(s));
          inRun = false;
        }
      }
      tokens.swap(merged);
      break;
    }
    case Decoder::Fuse: {
      std::string joined;
      for (const std::string &s : tokens)
        joined += s;
      tokens.assign(1, joined);
      fused = true;
      break;
    }
    case Decoder::Strip:
      for (std::string &s : tokens) {
        size_t b = 0, e = s.size(), w = d.a.size();
        // After Fuse the one token is the whole text: a continuing text
        // keeps its first space.
        for (size_t k = 0; k < d.start && !(continuing && fused) && b + w <= e &&
                           s.compare(b, w, d.a) == 0;
             ++k)
          b += w;
        for (size_t k = 0; k < d.stop && e >= b + w && s.compare(e - w, w, d.a) == 0; ++k)
          e -= w;
        s = s.substr(b, e - b);
      }
      break;
    case Decoder::Metaspace:
      for (size_t i = 0; i < tokens.size(); ++i) {
        replaceAll(tokens[i], d.a, " ");
        if (i == 0 && d.prepend && !continuing && !tokens[i].empty() && tokens[i][0] == ' ')
          tokens[i].erase(0, 1);
      }
      break;
    }
  }
  for (const std::string &s : tokens)
    out += s;
  return MOIR_OK;
}

moir_status copyOut(const std::vector<int32_t> &ids, int32_t *out, size_t capacity,
                    size_t *count) {
  *count = ids.size();
  if (ids.size() > capacity)
    return fail(MOIR_ERROR_OUT_OF_RANGE, "moir_tokenize: " + std::to_string(ids.size()) +
                                             " tokens, room for " + std::to_string(capacity));
  std::copy(ids.begin(), ids.end(), out);
  return moir::rt::ok();
}

moir_status checkId(const moir_tokenizer &t, const json &value, const std::string &what,
                    int32_t *out) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
      value.get<int64_t>() >= static_cast<int64_t>(t.pieces.size()))
    return bad(t.path, what + " is not a token id of the vocabulary");
  *out = value.get<int32_t>();
  return MOIR_OK;
}

} // namespace

extern "C" moir_status moir_tokenizer_open(const char *path, moir_tokenizer **out) {
  if (!path || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_tokenizer_open: null argument");
  *out = nullptr;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(MOIR_ERROR_IO, std::string(path) + ": cannot open: " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  std::string json = text.str();
  return moir_tokenizer_open_memory(path, json.data(), json.size(), out);
}

extern "C" moir_status moir_tokenizer_open_memory(const char *name, const char *data,
                                                  size_t bytes, moir_tokenizer **out) {
  if (!name || (!data && bytes) || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_tokenizer_open_memory: null argument");
  *out = nullptr;
  auto t = std::make_unique<moir_tokenizer>();
  t->path = name;
  json j = json::parse(std::string(data ? data : "", bytes), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return bad(t->path, "not a JSON object");
  try {
    const json &model = j.value("model", json());
    std::string modelType = typeOf(model, "?");
    if (modelType == "moir.ScoreBPE")
      t->model = moir_tokenizer::Model::ScoreBPE;
    else if (modelType != "BPE")
      return unsupported(t->path, "model type '" + modelType +
                                      "' (this runtime reads BPE models: byte-level and "
                                      "SentencePiece style)");
    for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(key) && !model[key].is_null() &&
          !(model[key].is_string() && model[key].get<std::string>().empty()))
        return unsupported(t->path, std::string("BPE with ") + key);
    if (model.contains("dropout") && model["dropout"].is_number() &&
        model["dropout"].get<double>() > 0)
      return unsupported(t->path, "BPE with dropout (not deterministic)");
    t->ignoreMerges = model.value("ignore_merges", false);
    t->byteFallback = model.value("byte_fallback", false);
    t->fuseUnk = model.value("fuse_unk", false);
    const json &vocab = model.value("vocab", json());
    auto addPiece = [&](const std::string &piece, const json &id) -> moir_status {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() >= (int64_t(1) << 30))
        return bad(t->path, "model.vocab['" + piece + "'] is not a token id");
      int32_t i = id.get<int32_t>();
      t->vocab[piece] = i;
      if (t->pieces.size() <= static_cast<size_t>(i))
        t->pieces.resize(i + 1);
      t->pieces[i] = piece;
      return MOIR_OK;
    };
    if (t->model == moir_tokenizer::Model::ScoreBPE) {
      // [[piece, score], ...] in id order, as a Unigram vocabulary.
      if (!vocab.is_array() || vocab.empty())
        return bad(t->path, "model.vocab is not a non-empty array of [piece, score]");
      t->vocab.reserve(vocab.size());
      std::vector<float> scores; // per id: they rank the merges below
      for (size_t i = 0; i < vocab.size(); ++i) {
        const json &e = vocab[i];
        if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number())
          return bad(t->path, "model.vocab[" + std::to_string(i) + "] is not [piece, score]");
        if (moir_status s = addPiece(e[0].get<std::string>(), json(i)); s != MOIR_OK)
          return s;
        scores.push_back(e[1].get<float>());
      }
      // Every way a piece splits into two pieces is a merge, ranked by the
      // piece's score (higher first).
      std::string left, right; // reused: no allocation per split
      for (size_t id = 0; id < t->pieces.size(); ++id) {
        const std::string &piece = t->pieces[id];
        if (t->vocab.find(piece)->second != static_cast<int32_t>(id))
          continue; // a duplicate piece: the vocabulary keeps its last id
        for (size_t cut = charLength(piece[0]); cut < piece.size();
             cut += charLength(piece[cut])) {
          left.assign(piece, 0, cut);
          auto a = t->vocab.find(left);
          if (a == t->vocab.end())
            continue;
          right.assign(piece, cut, std::string::npos);
          auto b = t->vocab.find(right);
          if (b != t->vocab.end())
            t->merges.insert(pairKey(a->second, b->second),
                              moir_tokenizer::Merge{-static_cast<double>(scores[id]),
                                                    static_cast<int32_t>(id)});
        }
      }
    } else {
      if (!vocab.is_object() || vocab.empty())
        return bad(t->path, "model.vocab is not a non-empty object");
      t->vocab.reserve(vocab.size());
      for (auto it = vocab.begin(); it != vocab.end(); ++it)
        if (moir_status s = addPiece(it.key(), it.value()); s != MOIR_OK)
          return s;
      const json &merges = model.value("merges", json::array());
      if (!merges.is_array())
        return bad(t->path, "model.merges is not an array");
      int32_t rank = 0;
      for (const json &m : merges) {
        std::string left, right;
        if (m.is_string()) {
          // "left right", split at the first space after the first character.
          const std::string &both = m.get_ref<const std::string &>();
          size_t space = both.find(' ', 1);
          if (space == std::string::npos)
            return bad(t->path, "model.merges[" + std::to_string(rank) + "] is not a pair");
          left = both.substr(0, space);
          right = both.substr(space + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
          left = m[0].get<std::string>();
          right = m[1].get<std::string>();
        } else {
          return bad(t->path, "model.merges[" + std::to_string(rank) + "] is not a pair");
        }
        auto a = t->vocab.find(left), b = t->vocab.find(right), ab = t->vocab.find(left + right);
        // A merge of pieces outside the vocabulary can never apply.
        if (a != t->vocab.end() && b != t->vocab.end() && ab != t->vocab.end())
          t->merges.insert(pairKey(a->second, b->second),
                            moir_tokenizer::Merge{static_cast<double>(rank), ab->second});
        ++rank;
      }
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      auto it = t->vocab.find(model["unk_token"].get<std::string>());
      if (it == t->vocab.end())
        return bad(t->path, "model.unk_token '" + model["unk_token"].get<std::string>() +
                                "' is not in the vocabulary");
      t->unk = it->second;
    } else if (model.contains("unk_id") && !model["unk_id"].is_null()) {
      if (moir_status s = checkId(*t, model["unk_id"], "model.unk_id", &t->unk); s != MOIR_OK)
        return s;
    }
    t->smallCharIds.assign(0x800, -1);
    for (uint32_t cp = 0; cp < 0x800; ++cp)
      if (auto it = t->vocab.find(utf8(cp)); it != t->vocab.end())
        t->smallCharIds[cp] = it->second;
    const ByteLevel &bl = byteLevel();
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      auto fallback = t->vocab.find(name);
      t->fallbackIds[b] = fallback != t->vocab.end() ? fallback->second : -1;
      auto mapped = t->vocab.find(bl.encode[b]);
      t->byteIds[b] = mapped != t->vocab.end() ? mapped->second : -1;
    }
    if (moir_status s = readNormalizer(*t, j.value("normalizer", json())); s != MOIR_OK)
      return s;
    if (moir_status s = readPreTokenizer(*t, j.value("pre_tokenizer", json())); s != MOIR_OK)
      return s;
    const json &decoder = j.value("decoder", json());
    if (decoder.is_null() && !t->byteLevelPieces)
      return unsupported(t->path, "no decoder (ids could not be turned back into text)");
    if (moir_status s = readDecoder(*t, decoder.is_null() ? json{{"type", "ByteLevel"}} : decoder);
        s != MOIR_OK)
      return s;
    const json &added = j.value("added_tokens", json::array());
    if (!added.is_array())
      return bad(t->path, "added_tokens is not an array");
    for (const json &a : added) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string() ||
          a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() >= (int64_t(1) << 30))
        return bad(t->path, "an added_tokens entry without an id and content");
      AddedToken token{a["content"].get<std::string>(), a["id"].get<int32_t>(),
                       a.value("special", false)};
      if (token.content.empty())
        return bad(t->path, "an added token with empty content");
      if (t->pieces.size() <= static_cast<size_t>(token.id))
        t->pieces.resize(token.id + 1);
      t->pieces[token.id] = token.content;
      t->added.push_back(token);
    }
    std::stable_sort(t->added.begin(), t->added.end(), [](const AddedToken &a, const AddedToken &b) {
      return a.content.size() > b.content.size();
    });
    t->isSpecial.assign(t->pieces.size(), false);
    for (size_t i = 0; i < t->added.size(); ++i) {
      t->isSpecial[t->added[i].id] = t->isSpecial[t->added[i].id] || t->added[i].special;
      int64_t node = 0;
      for (unsigned char c : t->added[i].content) {
        auto [child, isNew] = t->addedTrie.emplace(static_cast<uint64_t>(node) * 256 + c,
                                                   static_cast<int32_t>(t->addedAt.size()));
        if (isNew)
          t->addedAt.push_back(-1);
        node = child->second;
      }
      // Two added tokens with the same content: the first (longest-first
      // order is stable) keeps it.
      if (t->addedAt[node] < 0)
        t->addedAt[node] = static_cast<int32_t>(i);
    }
    if (moir_status s = readPostProcessor(*t, j.value("post_processor", json())); s != MOIR_OK)
      return s;
    for (int32_t id : t->prefix)
      if (static_cast<size_t>(id) >= t->pieces.size())
        return bad(t->path, "the post_processor's token id " + std::to_string(id) +
                                " is outside the vocabulary");
    for (int32_t id : t->suffix)
      if (static_cast<size_t>(id) >= t->pieces.size())
        return bad(t->path, "the post_processor's token id " + std::to_string(id) +
                                " is outside the vocabulary");
    if (!t->prefix.empty())
      t->bos = t->prefix.front();
  } catch (const std::exception &e) {
    return bad(t->path, std::string("malformed tokenizer: ") + e.what());
  }
  *out = t.release();
  return moir::rt::ok();
}

/// Reads the artifact's tokenizer_config.json (what moirc keeps of a
/// checkpoint's tokenizer_config.json, generation_config.json and GGUF
/// metadata): {"bos_token": text, "eos_token": text, "stop_token_ids": [...]}.
moir_status moirTokenizerConfigure(moir_tokenizer *t, const std::string &name, const char *data,
                                   size_t bytes) {
  json j = json::parse(std::string(data, bytes), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return bad(name, "not a JSON object");
  auto idOf = [&](const char *key, int32_t *out) -> moir_status {
    if (!j.contains(key) || j[key].is_null())
      return MOIR_OK;
    if (!j[key].is_string())
      return bad(name, std::string(key) + " is not a string");
    auto it = t->vocab.find(j[key].get<std::string>());
    int32_t id = -1;
    if (it != t->vocab.end()) {
      id = it->second;
    } else {
      for (const AddedToken &a : t->added)
        if (a.content == j[key].get<std::string>())
          id = a.id;
    }
    if (id < 0)
      return bad(name, std::string(key) + " '" + j[key].get<std::string>() +
                           "' is not a token of the tokenizer");
    *out = id;
    return MOIR_OK;
  };
  if (moir_status s = idOf("bos_token", &t->bos); s != MOIR_OK)
    return s;
  if (moir_status s = idOf("eos_token", &t->eos); s != MOIR_OK)
    return s;
  if (t->eos >= 0)
    t->stops.push_back(t->eos);
  if (j.contains("stop_token_ids")) {
    if (!j["stop_token_ids"].is_array())
      return bad(name, "stop_token_ids is not an array");
    for (const json &v : j["stop_token_ids"]) {
      int32_t id = -1;
      if (moir_status s = checkId(*t, v, name + ": stop_token_ids entry", &id); s != MOIR_OK)
        return s;
      if (std::find(t->stops.begin(), t->stops.end(), id) == t->stops.end())
        t->stops.push_back(id);
    }
  }
  return MOIR_OK;
}

extern "C" void moir_tokenizer_close(moir_tokenizer *t) { delete t; }

extern "C" int64_t moir_tokenizer_vocab_size(const moir_tokenizer *t) {
  return t ? static_cast<int64_t>(t->pieces.size()) : 0;
}

extern "C" moir_status moir_tokenize(const moir_tokenizer *t, const char *text, size_t bytes,
                                     int32_t *ids, size_t capacity, size_t *count) {
  return moir_tokenize_special(t, text, bytes, 0, ids, capacity, count);
}

extern "C" moir_status moir_tokenize_special(const moir_tokenizer *t, const char *text,
                                             size_t bytes, int add_special, int32_t *ids,
                                             size_t capacity, size_t *count) {
  if (!t || (!text && bytes) || !count || (!ids && capacity))
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_tokenize: null argument");
  if (add_special && !t->postUnsupported.empty())
    return unsupported(t->path, t->postUnsupported + " (special tokens cannot be added)");
  std::string input(text ? text : "", bytes);
  if (size_t bad = invalidUtf8(input); bad != std::string::npos)
    return fail(MOIR_ERROR_INVALID_ARGUMENT,
                "moir_tokenize: the text is not UTF-8 (byte " + std::to_string(bad) + ")");
  std::vector<int32_t> out;
  if (add_special)
    out = t->prefix;
  if (moir_status s = encode(t, input, out); s != MOIR_OK)
    return s;
  if (add_special)
    out.insert(out.end(), t->suffix.begin(), t->suffix.end());
  return copyOut(out, ids, capacity, count);
}

extern "C" int32_t moir_tokenizer_bos_id(const moir_tokenizer *t) { return t ? t->bos : -1; }

extern "C" int32_t moir_tokenizer_eos_id(const moir_tokenizer *t) { return t ? t->eos : -1; }

extern "C" size_t moir_tokenizer_stop_ids(const moir_tokenizer *t, int32_t *ids,
                                          size_t capacity) {
  if (!t)
    return 0;
  for (size_t i = 0; i < t->stops.size() && i < capacity && ids; ++i)
    ids[i] = t->stops[i];
  return t->stops.size();
}

extern "C" const char *moir_tokenizer_token(const moir_tokenizer *t, int32_t id, size_t *bytes) {
  if (!t || id < 0 || static_cast<size_t>(id) >= t->pieces.size())
    return nullptr;
  if (bytes)
    *bytes = t->pieces[id].size();
  return t->pieces[id].c_str();
}

extern "C" int moir_tokenizer_is_special(const moir_tokenizer *t, int32_t id) {
  return t && id >= 0 && static_cast<size_t>(id) < t->pieces.size() && t->isSpecial[id];
}

extern "C" moir_status moir_detokenize(const moir_tokenizer *t, const int32_t *ids, size_t n,
                                       int skip_special, char *text, size_t capacity,
                                       size_t *bytes) {
  if (!t || (!ids && n) || !bytes || (!text && capacity))
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_detokenize: null argument");
  std::string out;
  if (moir_status s = decode(t, ids, n, skip_special, /*continuing=*/false, out); s != MOIR_OK)
    return s;
  *bytes = out.size();
  if (out.size() > capacity)
    return fail(MOIR_ERROR_OUT_OF_RANGE, "moir_detokenize: " + std::to_string(out.size()) +
                                             " bytes, room for " + std::to_string(capacity));
  std::memcpy(text, out.data(), out.size());
  return moir::rt::ok();
}

struct moir_text_stream {
  const moir_tokenizer *tokenizer;
  int skipSpecial;
  std::string held, out;
};

namespace {
/// The length of the longest prefix of `s` that does not end inside a UTF-8
/// character (a lead byte whose continuation bytes have not all come).
size_t completePrefix(const std::string &s) {
  size_t end = s.size(), back = 0;
  while (back < 3 && back < end && (static_cast<unsigned char>(s[end - 1 - back]) & 0xC0) == 0x80)
    ++back;
  if (back == end)
    return end;
  unsigned char lead = s[end - 1 - back];
  size_t need = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3
              : lead >= 0xF0 && lead <= 0xF4 ? 4 : 1;
  return back + 1 >= need ? end : end - 1 - back;
}
} // namespace

extern "C" moir_status moir_text_stream_create(const moir_tokenizer *t, int skipSpecial,
                                               moir_text_stream **out) {
  if (!t || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_text_stream_create: null argument");
  *out = new moir_text_stream{t, skipSpecial, {}, {}};
  return moir::rt::ok();
}

extern "C" moir_status moir_text_stream_push(moir_text_stream *s, int32_t id, const char **text,
                                             size_t *bytes) {
  if (!s || !text || !bytes)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_text_stream_push: null argument");
  // Decoded as a continuation: the stream's text goes on from what came
  // before, so no decoder strips a first space.
  std::string piece;
  if (moir_status st = decode(s->tokenizer, &id, 1, s->skipSpecial, /*continuing=*/true, piece);
      st != MOIR_OK)
    return st;
  s->held += piece;
  size_t complete = completePrefix(s->held);
  s->out = s->held.substr(0, complete);
  s->held.erase(0, complete);
  *text = s->out.c_str();
  *bytes = s->out.size();
  return moir::rt::ok();
}

extern "C" void moir_text_stream_finish(moir_text_stream *s, const char **text, size_t *bytes) {
  if (!s)
    return;
  s->out.swap(s->held);
  s->held.clear();
  if (text)
    *text = s->out.c_str();
  if (bytes)
    *bytes = s->out.size();
}

extern "C" void moir_text_stream_destroy(moir_text_stream *s) { delete s; }

#else // !MOIR_HAVE_TOKENIZER

// Built without PCRE2 or nlohmann-json (libpcre2-dev, nlohmann-json3-dev):
// tokenizers are refused, saying why.
using moir::rt::fail;

extern "C" moir_status moir_tokenizer_open(const char *path, moir_tokenizer **out) {
  if (out)
    *out = nullptr;
  return fail(MOIR_ERROR_UNSUPPORTED,
              std::string(path ? path : "tokenizer") +
                  ": this runtime was built without tokenizers (needs libpcre2-dev and "
                  "nlohmann-json3-dev)");
}
extern "C" moir_status moir_tokenizer_open_memory(const char *name, const char *, size_t,
                                                  moir_tokenizer **out) {
  return moir_tokenizer_open(name, out);
}
extern "C" void moir_tokenizer_close(moir_tokenizer *) {}
extern "C" int64_t moir_tokenizer_vocab_size(const moir_tokenizer *) { return 0; }
extern "C" moir_status moir_tokenize(const moir_tokenizer *, const char *, size_t, int32_t *,
                                     size_t, size_t *) {
  return fail(MOIR_ERROR_UNSUPPORTED, "this runtime was built without tokenizers");
}
extern "C" moir_status moir_tokenize_special(const moir_tokenizer *, const char *, size_t, int,
                                             int32_t *, size_t, size_t *) {
  return fail(MOIR_ERROR_UNSUPPORTED, "this runtime was built without tokenizers");
}
extern "C" int32_t moir_tokenizer_bos_id(const moir_tokenizer *) { return -1; }
extern "C" int32_t moir_tokenizer_eos_id(const moir_tokenizer *) { return -1; }
extern "C" size_t moir_tokenizer_stop_ids(const moir_tokenizer *, int32_t *, size_t) { return 0; }
extern "C" const char *moir_tokenizer_token(const moir_tokenizer *, int32_t, size_t *) {
  return nullptr;
}
extern "C" int moir_tokenizer_is_special(const moir_tokenizer *, int32_t) { return 0; }
moir_status moirTokenizerConfigure(moir_tokenizer *, const std::string &, const char *, size_t) {
  return fail(MOIR_ERROR_UNSUPPORTED, "this runtime was built without tokenizers");
}
extern "C" moir_status moir_detokenize(const moir_tokenizer *, const int32_t *, size_t, int,
                                       char *, size_t, size_t *) {
  return fail(MOIR_ERROR_UNSUPPORTED, "this runtime was built without tokenizers");
}
extern "C" moir_status moir_text_stream_create(const moir_tokenizer *, int, moir_text_stream **out) {
  if (out)
    *out = nullptr;
  return fail(MOIR_ERROR_UNSUPPORTED, "this runtime was built without tokenizers");
}
extern "C" moir_status moir_text_stream_push(moir_text_stream *, int32_t, const char **, size_t *) {
  return fail(MOIR_ERROR_UNSUPPORTED, "this runtime was built without tokenizers");
}
extern "C" void moir_text_stream_finish(moir_text_stream *, const char **text, size_t *bytes) {
  if (text)
    *text = "";
  if (bytes)
    *bytes = 0;
}
extern "C" void moir_text_stream_destroy(moir_text_stream *) {}

#endif
