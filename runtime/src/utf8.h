// UTF-8 well-formedness (Unicode's table 3-7), shared by the tokenizer and
// the JSON writers.
#ifndef MOIR_RUNTIME_UTF8_H
#define MOIR_RUNTIME_UTF8_H

#include <cstddef>
#include <cstdint>
#include <string>

namespace moir::rt {

/// The length (1-4) of the well-formed UTF-8 sequence at s[i], or 0 when
/// there is none; then *subpart (when given) is the length of its maximal
/// subpart: the bytes a decoder replaces with one U+FFFD (at least 1).
inline size_t utf8Sequence(const std::string &s, size_t i, size_t *subpart = nullptr) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
           : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
  unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
  size_t ok = 1;
  while (n && ok < n && i + ok < s.size()) {
    unsigned char d = static_cast<unsigned char>(s[i + ok]);
    if (ok == 1 ? (d < lo || d > hi) : (d & 0xC0) != 0x80)
      break;
    ++ok;
  }
  if (n && ok == n)
    return n;
  if (subpart)
    *subpart = ok;
  return 0;
}

/// Appends code point `cp` as UTF-8.
inline void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// `s` with each ill-formed sequence's maximal subpart replaced by U+FFFD,
/// as decoders (and tokenizers' decode) do.
inline std::string replaceInvalidUtf8(const std::string &s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    size_t subpart = 1;
    if (size_t n = utf8Sequence(s, i, &subpart)) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += subpart;
    }
  }
  return out;
}

} // namespace moir::rt

#endif
