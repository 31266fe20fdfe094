// Tokenizers: Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama 3,
// Qwen, DeepSeek, OLMoE style). Text is split first into the added (special)
// tokens, matched literally, then by the pre-tokenizer's patterns (PCRE2);
// each piece's bytes become byte-level symbols that the merges join, lowest
// rank first (a priority queue over adjacent pairs, not a rescan per merge).
#include "status.h"
#include "utf8.h"

#include "moir/runtime.h"

#ifdef MOIR_HAVE_TOKENIZER

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
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
  static std::string utf8(uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  }
};

const ByteLevel &byteLevel() {
  static const ByteLevel table;
  return table;
}

/// A compiled split pattern and how its matches cut the text.
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

} // namespace

struct moir_tokenizer {
  std::string path;
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> pieces; // id -> token string
  // Merge ranks, keyed by "left right" token strings.
  std::unordered_map<std::string, int32_t> ranks;
  std::vector<std::unique_ptr<Split>> splits;
  bool addPrefixSpace = false, ignoreMerges = false;
  std::vector<AddedToken> added; // longest first
  std::vector<bool> isAdded;     // per id
  // Indices into `added` by first byte (longest first): the literal scan
  // looks at the few that can start at a position.
  std::vector<uint32_t> addedByByte[256];
};

namespace {

moir_status bad(const std::string &path, const std::string &why) {
  return fail(MOIR_ERROR_FORMAT, path + ": " + why);
}

moir_status unsupported(const std::string &path, const std::string &why) {
  return fail(MOIR_ERROR_UNSUPPORTED, path + ": " + why);
}

/// Compiles `pattern` (UTF-8, Unicode properties).
moir_status compileSplit(moir_tokenizer &t, const std::string &pattern, const std::string &behavior,
                         bool invert) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  auto split = std::make_unique<Split>();
  split->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (!split->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    return bad(t.path, "pre_tokenizer pattern does not compile at offset " +
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
  t.splits.push_back(std::move(split));
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
    t.addPrefixSpace = p.value("add_prefix_space", false);
    if (p.value("use_regex", true))
      return compileSplit(t, kByteLevelPattern, "Isolated", false);
    return MOIR_OK;
  }
  if (type == "Split") {
    const json &pattern = p.value("pattern", json());
    std::string text;
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      text = pattern["Regex"].get<std::string>();
    } else if (pattern.is_object() && pattern.contains("String") &&
               pattern["String"].is_string()) {
      // A literal: quote it for PCRE2.
      text = "\\Q" + pattern["String"].get<std::string>() + "\\E";
    } else {
      return bad(t.path, "Split pre_tokenizer without a Regex or String pattern");
    }
    return compileSplit(t, text, p.value("behavior", std::string("Isolated")),
                        p.value("invert", false));
  }
  return unsupported(t.path, "pre_tokenizer type '" + type + "'");
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
    const std::string &how = split.behavior;
    std::string pending;
    for (size_t i = 0; i < spans.size(); ++i) {
      auto [b, e, matched] = spans[i];
      std::string text = piece.substr(b, e - b);
      if (how == "Isolated") {
        out.push_back(text);
      } else if (how == "Removed") {
        if (!matched)
          out.push_back(text);
      } else if (how == "MergedWithPrevious") {
        if (matched && !out.empty() && i > 0)
          out.back() += text;
        else
          out.push_back(text);
      } else if (how == "MergedWithNext") {
        pending += text;
        if (!matched) {
          out.push_back(pending);
          pending.clear();
        }
      } else { // Contiguous
        if (matched && i > 0 && std::get<2>(spans[i - 1]))
          out.back() += text;
        else
          out.push_back(text);
      }
    }
    if (!pending.empty())
      out.push_back(pending);
  }
  return out;
}

/// BPE over one pre-token's byte-level symbols: joins the adjacent pair of
/// lowest merge rank until none is left (pairs in a priority queue, symbols
/// in a linked list; stale queue entries are skipped).
void bpe(const moir_tokenizer &t, const std::string &bytes, std::vector<int32_t> &ids) {
  const ByteLevel &bl = byteLevel();
  std::string mapped;
  for (unsigned char c : bytes)
    mapped += bl.encode[c];
  if (t.ignoreMerges) {
    auto it = t.vocab.find(mapped);
    if (it != t.vocab.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    std::string text;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> sym;
  for (size_t i = 0; i < bytes.size(); ++i)
    sym.push_back({bl.encode[static_cast<unsigned char>(bytes[i])], static_cast<int>(i) - 1,
                   i + 1 < bytes.size() ? static_cast<int>(i) + 1 : -1, true});
  struct Pair {
    int32_t rank;
    int left;
    std::string text; // the merged symbol, to detect stale entries
    bool operator>(const Pair &o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Pair, std::vector<Pair>, std::greater<Pair>> queue;
  auto push = [&](int left) {
    if (left < 0 || sym[left].next < 0)
      return;
    const std::string &a = sym[left].text, &b = sym[sym[left].next].text;
    auto it = t.ranks.find(a + " " + b);
    if (it != t.ranks.end())
      queue.push({it->second, left, a + b});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i)
    push(i);
  while (!queue.empty()) {
    Pair p = queue.top();
    queue.pop();
    Symbol &l = sym[p.left];
    if (!l.alive || l.next < 0)
      continue;
    Symbol &r = sym[l.next];
    if (l.text + r.text != p.text)
      continue; // stale: a neighbour changed since it was queued
    l.text = p.text;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0)
      sym[r.next].prev = p.left;
    push(l.prev);
    push(p.left);
  }
  for (int i = 0; i >= 0 && i < static_cast<int>(sym.size()); i = sym[i].next) {
    auto it = t.vocab.find(sym[i].text);
    if (it != t.vocab.end()) {
      ids.push_back(it->second);
      continue;
    }
    // Not in the vocabulary (a byte-level BPE vocabulary holds every byte):
    // its bytes one by one, those the vocabulary has.
    for (size_t at = 0; at < sym[i].text.size();) {
      size_t n = 1;
      while (at + n < sym[i].text.size() && (sym[i].text[at + n] & 0xC0) == 0x80)
        ++n;
      auto one = t.vocab.find(sym[i].text.substr(at, n));
      if (one != t.vocab.end())
        ids.push_back(one->second);
      at += n;
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
    // A section's "type", or `absent` when it is not an object.
    auto typeOf = [](const json &section, const char *absent) {
      return section.is_object() ? section.value("type", std::string("?")) : std::string(absent);
    };
    if (j.contains("normalizer") && !j["normalizer"].is_null())
      return unsupported(t->path, "normalizer '" + typeOf(j["normalizer"], "?") +
                                      "' (byte-level BPE tokenizers have none)");
    const json &model = j.value("model", json());
    if (typeOf(model, "?") != "BPE")
      return unsupported(t->path, "model type '" + typeOf(model, "?") +
                                      "' (this runtime reads byte-level BPE)");
    if (model.value("byte_fallback", false))
      return unsupported(t->path, "BPE with byte_fallback (SentencePiece style)");
    const json &decoder = j.value("decoder", json());
    if (typeOf(decoder, "none") != "ByteLevel")
      return unsupported(t->path, "decoder '" + typeOf(decoder, "none") +
                                      "' (this runtime reads byte-level BPE)");
    t->ignoreMerges = model.value("ignore_merges", false);
    const json &vocab = model.value("vocab", json());
    if (!vocab.is_object() || vocab.empty())
      return bad(t->path, "model.vocab is not a non-empty object");
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
          it.value().get<int64_t>() >= (int64_t(1) << 30))
        return bad(t->path, "model.vocab['" + it.key() + "'] is not a token id");
      int32_t id = it.value().get<int32_t>();
      t->vocab[it.key()] = id;
      if (t->pieces.size() <= static_cast<size_t>(id))
        t->pieces.resize(id + 1);
      t->pieces[id] = it.key();
    }
    const json &merges = model.value("merges", json::array());
    if (!merges.is_array())
      return bad(t->path, "model.merges is not an array");
    int32_t rank = 0;
    for (const json &m : merges) {
      std::string key;
      if (m.is_string()) {
        key = m.get<std::string>();
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        key = m[0].get<std::string>() + " " + m[1].get<std::string>();
      } else {
        return bad(t->path, "model.merges[" + std::to_string(rank) + "] is not a pair");
      }
      t->ranks.emplace(key, rank++);
    }
    if (moir_status s = readPreTokenizer(*t, j.value("pre_tokenizer", json())); s != MOIR_OK)
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
    t->isAdded.assign(t->pieces.size(), false);
    for (size_t i = 0; i < t->added.size(); ++i) {
      t->isAdded[t->added[i].id] = true;
      t->addedByByte[static_cast<unsigned char>(t->added[i].content[0])].push_back(
          static_cast<uint32_t>(i));
    }
  } catch (const std::exception &e) {
    return bad(t->path, std::string("malformed tokenizer: ") + e.what());
  }
  *out = t.release();
  return moir::rt::ok();
}

extern "C" void moir_tokenizer_close(moir_tokenizer *t) { delete t; }

extern "C" int64_t moir_tokenizer_vocab_size(const moir_tokenizer *t) {
  return t ? static_cast<int64_t>(t->pieces.size()) : 0;
}

extern "C" moir_status moir_tokenize(const moir_tokenizer *t, const char *text, size_t bytes,
                                     int32_t *ids, size_t capacity, size_t *count) {
  if (!t || (!text && bytes) || !count || (!ids && capacity))
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_tokenize: null argument");
  std::string input(text ? text : "", bytes);
  if (size_t bad = invalidUtf8(input); bad != std::string::npos)
    return fail(MOIR_ERROR_INVALID_ARGUMENT,
                "moir_tokenize: the text is not UTF-8 (byte " + std::to_string(bad) + ")");
  std::vector<int32_t> out;
  // The added tokens, longest first at each position, cut the text; the
  // rest goes through the pre-tokenizer and BPE.
  std::vector<std::pair<std::string, int32_t>> parts; // (text, id or -1)
  size_t at = 0, plain = 0;
  while (at < input.size()) {
    const AddedToken *hit = nullptr;
    for (uint32_t i : t->addedByByte[static_cast<unsigned char>(input[at])]) {
      const AddedToken &a = t->added[i];
      if (input.compare(at, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++at;
      continue;
    }
    if (at > plain)
      parts.emplace_back(input.substr(plain, at - plain), -1);
    parts.emplace_back(hit->content, hit->id);
    at += hit->content.size();
    plain = at;
  }
  if (plain < input.size())
    parts.emplace_back(input.substr(plain), -1);
  std::unordered_map<std::string, std::vector<int32_t>> cache;
  // Each pattern's match data, once per call.
  std::vector<pcre2_match_data *> matches;
  for (const auto &split : t->splits)
    matches.push_back(pcre2_match_data_create_from_pattern(split->code, nullptr));
  for (auto &[part, id] : parts) {
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    std::vector<std::string> pieces{t->addPrefixSpace && part[0] != ' ' ? " " + part : part};
    for (size_t k = 0; k < t->splits.size(); ++k)
      pieces = applySplit(*t->splits[k], pieces, matches[k]);
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
  *count = out.size();
  if (out.size() > capacity)
    return fail(MOIR_ERROR_OUT_OF_RANGE, "moir_tokenize: " + std::to_string(out.size()) +
                                             " tokens, room for " + std::to_string(capacity));
  std::copy(out.begin(), out.end(), ids);
  return moir::rt::ok();
}

extern "C" moir_status moir_detokenize(const moir_tokenizer *t, const int32_t *ids, size_t n,
                                       int skip_special, char *text, size_t capacity,
                                       size_t *bytes) {
  if (!t || (!ids && n) || !bytes || (!text && capacity))
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_detokenize: null argument");
  const ByteLevel &bl = byteLevel();
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || static_cast<size_t>(ids[i]) >= t->pieces.size())
      return fail(MOIR_ERROR_OUT_OF_RANGE, "moir_detokenize: token id " + std::to_string(ids[i]) +
                                               " outside the vocabulary");
    const std::string &piece = t->pieces[ids[i]];
    if (t->isAdded[ids[i]]) {
      bool special = false;
      for (const AddedToken &a : t->added)
        special = special || (a.id == ids[i] && a.special);
      if (!(special && skip_special))
        out += piece;
      continue;
    }
    // Byte-level characters back to bytes.
    for (size_t at = 0; at < piece.size();) {
      unsigned char c = piece[at];
      uint32_t cp = c;
      size_t len = 1;
      if (c >= 0xE0 && at + 2 < piece.size()) {
        cp = ((c & 0x0F) << 12) | ((piece[at + 1] & 0x3F) << 6) | (piece[at + 2] & 0x3F);
        len = 3;
      } else if (c >= 0xC0 && at + 1 < piece.size()) {
        cp = ((c & 0x1F) << 6) | (piece[at + 1] & 0x3F);
        len = 2;
      }
      auto it = bl.decode.find(cp);
      if (it != bl.decode.end())
        out += static_cast<char>(it->second);
      else
        out.append(piece, at, len);
      at += len;
    }
  }
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
  char buf[512];
  size_t n = 0;
  moir_status st = moir_detokenize(s->tokenizer, &id, 1, s->skipSpecial, buf, sizeof buf, &n);
  if (st == MOIR_ERROR_OUT_OF_RANGE && n > sizeof buf) {
    std::string big(n, '\0');
    st = moir_detokenize(s->tokenizer, &id, 1, s->skipSpecial, big.data(), big.size(), &n);
    s->held += big.substr(0, n);
  } else if (st == MOIR_OK) {
    s->held.append(buf, n);
  }
  if (st != MOIR_OK)
    return st;
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
