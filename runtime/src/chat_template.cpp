// Chat templates: a Jinja2 interpreter for the templates Hugging Face
// tokenizers carry. The source is lexed with jinja2's whitespace rules
// (trim_blocks, lstrip_blocks, `-`/`+` markers), parsed to an AST and
// evaluated over values with Python's semantics (str(), repr(), ==, slices,
// the string and dict methods templates call), so that the text is byte for
// byte what transformers' apply_chat_template gives. Everything a template
// can make grow (output, loop iterations, list sizes, nesting, recursion) is
// bounded, and every failure is an error naming the template and the line.
#include "chat_template.h"

#include "model.h"
#include "status.h"
#include "utf8.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using moir::rt::fail;
using moir::rt::appendUtf8;

namespace moir::rt::chat::detail {

// ---- Errors ---------------------------------------------------------------

enum class ErrorKind { Syntax, Runtime, Raised, Limit };

struct Error {
  ErrorKind kind;
  std::string message;
  int line = 0;
};

[[noreturn]] void raise(std::string message, ErrorKind kind = ErrorKind::Runtime, int line = 0) {
  throw Error{kind, std::move(message), line};
}

// ---- Unicode --------------------------------------------------------------

/// The code point at s[i] of a well-formed UTF-8 string, and its length.
uint32_t decode(const std::string &s, size_t i, size_t *len) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80 || i + 1 >= s.size()) {
    *len = 1;
    return c;
  }
  auto cont = [&](size_t k) { return static_cast<uint32_t>(s[i + k]) & 0x3F; };
  if (c < 0xE0) {
    *len = 2;
    return ((c & 0x1F) << 6) | cont(1);
  }
  if (c < 0xF0 && i + 2 < s.size()) {
    *len = 3;
    return ((c & 0x0F) << 12) | (cont(1) << 6) | cont(2);
  }
  if (i + 3 < s.size()) {
    *len = 4;
    return ((c & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
  }
  *len = 1;
  return c;
}

/// Byte offsets of the code points of `s` (and s.size() last).
std::vector<size_t> charStarts(const std::string &s) {
  std::vector<size_t> at;
  at.reserve(s.size() + 1);
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    at.push_back(i);
    decode(s, i, &len);
  }
  at.push_back(s.size());
  return at;
}

size_t charCount(const std::string &s) {
  size_t n = 0;
  for (unsigned char c : s)
    n += (c & 0xC0) != 0x80;
  return n;
}

/// Python's str.isspace() for one code point.
bool isSpace(uint32_t cp) {
  return (cp >= 9 && cp <= 13) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/// Python's str.splitlines() line boundaries.
bool isLineBreak(uint32_t cp) {
  return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || (cp >= 0x1C && cp <= 0x1E) ||
         cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

/// Simple (one to one) case mappings of the scripts chat text mostly uses:
/// ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic, Armenian, fullwidth
/// Latin. Other code points have no case here (docs/chat.md).
uint32_t upperCase(uint32_t cp) {
  if (cp >= 'a' && cp <= 'z')
    return cp - 32;
  if (cp < 0x80)
    return cp;
  if (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7)
    return cp - 32;
  if (cp == 0xFF)
    return 0x178;
  if (cp == 0xB5)
    return 0x39C;
  if (cp >= 0x100 && cp <= 0x17F) {
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
      return cp % 2 == 0 ? cp - 1 : cp;
    if (cp == 0x131)
      return 'I';
    if (cp == 0x17F)
      return 'S';
    if (cp < 0x138 && cp != 0x130 && cp != 0x149)
      return cp % 2 == 1 ? cp - 1 : cp;
    if (cp >= 0x14A && cp <= 0x177)
      return cp % 2 == 1 ? cp - 1 : cp;
    return cp;
  }
  if (cp >= 0x3B1 && cp <= 0x3C9 && cp != 0x3C2)
    return cp - 32;
  if (cp == 0x3C2)
    return 0x3A3;
  if (cp == 0x3AC)
    return 0x386;
  if (cp >= 0x3AD && cp <= 0x3AF)
    return cp - 37;
  if (cp == 0x3CC)
    return 0x38C;
  if (cp == 0x3CD || cp == 0x3CE)
    return cp - 63;
  if (cp >= 0x430 && cp <= 0x44F)
    return cp - 32;
  if (cp >= 0x450 && cp <= 0x45F)
    return cp - 80;
  if ((cp >= 0x460 && cp <= 0x481) || (cp >= 0x48A && cp <= 0x4BF) || (cp >= 0x4D0 && cp <= 0x52F))
    return cp % 2 == 1 ? cp - 1 : cp;
  if (cp >= 0x561 && cp <= 0x586)
    return cp - 48;
  if (cp >= 0xFF41 && cp <= 0xFF5A)
    return cp - 32;
  return cp;
}

uint32_t lowerCase(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z')
    return cp + 32;
  if (cp < 0x80)
    return cp;
  if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)
    return cp + 32;
  if (cp == 0x178)
    return 0xFF;
  if (cp >= 0x100 && cp <= 0x17F) {
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
      return cp % 2 == 1 ? cp + 1 : cp;
    if (cp == 0x130)
      return 'i';
    if ((cp < 0x138 && cp != 0x131) || (cp >= 0x14A && cp <= 0x177))
      return cp % 2 == 0 ? cp + 1 : cp;
    return cp;
  }
  if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2)
    return cp + 32;
  if (cp == 0x386)
    return 0x3AC;
  if (cp >= 0x388 && cp <= 0x38A)
    return cp + 37;
  if (cp == 0x38C)
    return 0x3CC;
  if (cp == 0x38E || cp == 0x38F)
    return cp + 63;
  if (cp >= 0x410 && cp <= 0x42F)
    return cp + 32;
  if (cp >= 0x400 && cp <= 0x40F)
    return cp + 80;
  if ((cp >= 0x460 && cp <= 0x481) || (cp >= 0x48A && cp <= 0x4BF) || (cp >= 0x4D0 && cp <= 0x52F))
    return cp % 2 == 0 ? cp + 1 : cp;
  if (cp >= 0x531 && cp <= 0x556)
    return cp + 48;
  if (cp >= 0xFF21 && cp <= 0xFF3A)
    return cp + 32;
  return cp;
}

/// Letters with a case (Python's "cased" characters, for the scripts above).
bool isCased(uint32_t cp) { return upperCase(cp) != cp || lowerCase(cp) != cp || cp == 0xDF; }

std::string mapChars(const std::string &s, uint32_t (*f)(uint32_t)) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0, len = 0; i < s.size(); i += len)
    appendUtf8(out, f(decode(s, i, &len)));
  return out;
}

/// Code points of `s` stripped at the front and/or the back: whitespace, or
/// the code points of `chars`.
std::string stripChars(const std::string &s, const std::string *chars, bool front, bool back) {
  std::vector<uint32_t> set;
  if (chars)
    for (size_t i = 0, len = 0; i < chars->size(); i += len)
      set.push_back(decode(*chars, i, &len));
  auto strip = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : isSpace(cp);
  };
  std::vector<size_t> at = charStarts(s);
  size_t b = 0, e = at.size() - 1;
  size_t len = 0;
  while (front && b < e && strip(decode(s, at[b], &len)))
    ++b;
  while (back && e > b && strip(decode(s, at[e - 1], &len)))
    --e;
  return s.substr(at[b], at[e] - at[b]);
}

// ---- Values ---------------------------------------------------------------

enum class T : uint8_t { Undefined, None, Bool, Int, Float, Str, List, Dict, Object, Func };

struct Value;
struct Interp;

struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

using Native = std::function<Value(Interp &, Args &)>;

struct ListData;
struct DictData;
struct ObjectData;
struct FuncData;

struct Value {
  T t = T::Undefined;
  bool safe = false; // a Markup string (the `safe` filter)
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s; // Str; Undefined: the message that using it raises
  std::shared_ptr<ListData> list;
  std::shared_ptr<DictData> dict;
  std::shared_ptr<ObjectData> obj;
  std::shared_ptr<FuncData> fn;
};

struct ListData {
  std::vector<Value> items;
  bool tuple = false;
  int depth = 1;
};

struct DictData {
  std::vector<std::pair<Value, Value>> items;
  int depth = 1;
};

/// A namespace() (mutable attributes) or a loop's `loop` (read-only).
struct ObjectData {
  bool isNamespace = true;
  std::vector<std::pair<std::string, Value>> attrs;
  int depth = 1;
};

struct FuncData {
  std::string name;
  Native call;
};

constexpr int kMaxDepth = 128;

Value undefinedValue(std::string message) {
  Value v;
  v.s = std::move(message);
  return v;
}
Value noneValue() {
  Value v;
  v.t = T::None;
  return v;
}
Value boolValue(bool b) {
  Value v;
  v.t = T::Bool;
  v.b = b;
  return v;
}
Value intValue(int64_t i) {
  Value v;
  v.t = T::Int;
  v.i = i;
  return v;
}
Value floatValue(double f) {
  Value v;
  v.t = T::Float;
  v.f = f;
  return v;
}
Value strValue(std::string s, bool safe = false) {
  Value v;
  v.t = T::Str;
  v.s = std::move(s);
  v.safe = safe;
  return v;
}

int depthOf(const Value &v) {
  switch (v.t) {
  case T::List: return v.list->depth;
  case T::Dict: return v.dict->depth;
  case T::Object: return v.obj->depth;
  default: return 0;
  }
}

void checkDepth(int depth) {
  if (depth > kMaxDepth)
    raise("values nested deeper than " + std::to_string(kMaxDepth) + " levels", ErrorKind::Limit);
}

Value listValue(std::vector<Value> items, bool tuple = false) {
  Value v;
  v.t = T::List;
  v.list = std::make_shared<ListData>();
  int depth = 0;
  for (const Value &x : items)
    depth = std::max(depth, depthOf(x));
  checkDepth(depth + 1);
  v.list->items = std::move(items);
  v.list->tuple = tuple;
  v.list->depth = depth + 1;
  return v;
}

Value dictValue(std::vector<std::pair<Value, Value>> items) {
  Value v;
  v.t = T::Dict;
  v.dict = std::make_shared<DictData>();
  int depth = 0;
  for (const auto &[k, x] : items)
    depth = std::max({depth, depthOf(k), depthOf(x)});
  checkDepth(depth + 1);
  v.dict->items = std::move(items);
  v.dict->depth = depth + 1;
  return v;
}

Value funcValue(std::string name, Native call) {
  Value v;
  v.t = T::Func;
  v.fn = std::make_shared<FuncData>(FuncData{std::move(name), std::move(call)});
  return v;
}

bool isNumber(const Value &v) { return v.t == T::Bool || v.t == T::Int || v.t == T::Float; }
double asDouble(const Value &v) {
  return v.t == T::Float ? v.f : v.t == T::Int ? static_cast<double>(v.i) : v.b ? 1.0 : 0.0;
}
int64_t asInt(const Value &v) { return v.t == T::Int ? v.i : v.b ? 1 : 0; }
bool isIntLike(const Value &v) { return v.t == T::Int || v.t == T::Bool; }

/// Python's type name, for error messages.
std::string typeName(const Value &v) {
  switch (v.t) {
  case T::Undefined: return "Undefined";
  case T::None: return "NoneType";
  case T::Bool: return "bool";
  case T::Int: return "int";
  case T::Float: return "float";
  case T::Str: return "str";
  case T::List: return v.list->tuple ? "tuple" : "list";
  case T::Dict: return "dict";
  case T::Object: return v.obj->isNamespace ? "Namespace" : "LoopContext";
  case T::Func: return "function";
  }
  return "object";
}

/// jinja2's object_type_repr: how Undefined's messages name an object.
std::string objectTypeRepr(const Value &v) {
  if (v.t == T::None)
    return "None";
  if (v.t == T::Object)
    return v.obj->isNamespace ? "jinja2.utils.Namespace object" : "jinja2.runtime.LoopContext object";
  return typeName(v) + " object";
}

Value missingAttribute(const Value &obj, const std::string &name) {
  return undefinedValue("'" + objectTypeRepr(obj) + "' has no attribute '" + name + "'");
}

[[noreturn]] void undefinedError(const Value &v) { raise(v.s); }

// ---- Python's str() and repr() -------------------------------------------

/// repr() of a float: the shortest digits that read back the same, in
/// Python's layout (fixed from 1e-4 up to 1e16, scientific outside).
std::string floatRepr(double d) {
  if (std::isnan(d))
    return "nan";
  if (std::isinf(d))
    return d < 0 ? "-inf" : "inf";
  if (d == 0)
    return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*e", p - 1, d);
    if (std::strtod(buf, nullptr) == d)
      break;
  }
  std::string s = buf;
  bool negative = s[0] == '-';
  if (negative)
    s.erase(0, 1);
  size_t e = s.find('e');
  int exponent = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (size_t k = 0; k < e; ++k)
    if (s[k] != '.')
      digits += s[k];
  while (digits.size() > 1 && digits.back() == '0')
    digits.pop_back();
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent >= 0) {
      std::string whole = digits.substr(0, std::min<size_t>(digits.size(), exponent + 1));
      whole.append(exponent + 1 - whole.size(), '0');
      std::string frac = digits.size() > static_cast<size_t>(exponent + 1)
                             ? digits.substr(exponent + 1)
                             : "0";
      out += whole + "." + frac;
    } else {
      out += "0." + std::string(-exponent - 1, '0') + digits;
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1)
      out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  }
  return out;
}

/// Python's repr() of a string: quoted, non-printable characters escaped.
std::string strRepr(const std::string &s) {
  bool single = s.find('\'') != std::string::npos, dbl = s.find('"') != std::string::npos;
  char quote = single && !dbl ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    uint32_t cp = decode(s, i, &len);
    char buf[16];
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) {
      std::snprintf(buf, sizeof buf, "\\x%02x", cp);
      out += buf;
    } else if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
               (cp >= 0x205F && cp <= 0x2064) || cp == 0x3000 || cp == 0xFEFF ||
               (cp >= 0xE000 && cp <= 0xF8FF)) {
      std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      out += buf;
    } else {
      out.append(s, i, len);
    }
  }
  out += quote;
  return out;
}

std::string repr(const Value &v, int depth = 0);

/// Python's str().
std::string str(const Value &v, int depth = 0) {
  checkDepth(depth);
  switch (v.t) {
  case T::Undefined: return "";
  case T::None: return "None";
  case T::Bool: return v.b ? "True" : "False";
  case T::Int: return std::to_string(v.i);
  case T::Float: return floatRepr(v.f);
  case T::Str: return v.s;
  case T::List: {
    std::string out = v.list->tuple ? "(" : "[";
    for (size_t k = 0; k < v.list->items.size(); ++k)
      out += (k ? ", " : "") + repr(v.list->items[k], depth + 1);
    if (v.list->tuple && v.list->items.size() == 1)
      out += ",";
    return out + (v.list->tuple ? ")" : "]");
  }
  case T::Dict: {
    std::string out = "{";
    for (size_t k = 0; k < v.dict->items.size(); ++k)
      out += (k ? ", " : "") + repr(v.dict->items[k].first, depth + 1) + ": " +
             repr(v.dict->items[k].second, depth + 1);
    return out + "}";
  }
  case T::Object: {
    if (!v.obj->isNamespace)
      return "<LoopContext>";
    std::string out = "<Namespace {";
    for (size_t k = 0; k < v.obj->attrs.size(); ++k)
      out += (k ? ", " : "") + strRepr(v.obj->attrs[k].first) + ": " +
             repr(v.obj->attrs[k].second, depth + 1);
    return out + "}>";
  }
  case T::Func: return "<function " + v.fn->name + ">";
  }
  return "";
}

std::string repr(const Value &v, int depth) {
  if (v.t == T::Str)
    return v.safe ? "Markup(" + strRepr(v.s) + ")" : strRepr(v.s);
  if (v.t == T::Undefined)
    return "Undefined";
  return str(v, depth);
}

/// A stable sort (Python's sort is stable): std::sort over positions, ties
/// broken by position.
template <typename V, typename Less> void stableSort(std::vector<V> &items, Less less) {
  std::vector<size_t> order(items.size());
  for (size_t k = 0; k < order.size(); ++k)
    order[k] = k;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (less(items[a], items[b]))
      return true;
    if (less(items[b], items[a]))
      return false;
    return a < b;
  });
  std::vector<V> sorted;
  sorted.reserve(items.size());
  for (size_t k : order)
    sorted.push_back(std::move(items[k]));
  items.swap(sorted);
}

// ---- JSON (json.dumps) ----------------------------------------------------

struct JsonOptions {
  bool ensureAscii = false;
  bool indented = false;
  std::string indent;
  std::string itemSeparator = ", ", keySeparator = ": ";
  bool sortKeys = false;
};

void jsonString(std::string &out, const std::string &s, bool ensureAscii) {
  out += '"';
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    uint32_t cp = decode(s, i, &len);
    char buf[16];
    switch (cp) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    case '\b': out += "\\b"; break;
    case '\f': out += "\\f"; break;
    default:
      if (cp < 0x20 || (ensureAscii && cp > 0x7E)) {
        if (cp >= 0x10000) {
          uint32_t c = cp - 0x10000;
          std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
        } else {
          std::snprintf(buf, sizeof buf, "\\u%04x", cp);
        }
        out += buf;
      } else {
        out.append(s, i, len);
      }
    }
  }
  out += '"';
}

std::string jsonFloat(double d) {
  if (std::isnan(d))
    return "NaN";
  if (std::isinf(d))
    return d < 0 ? "-Infinity" : "Infinity";
  return floatRepr(d);
}

void toJson(std::string &out, const Value &v, const JsonOptions &o, int level, size_t limit) {
  checkDepth(level);
  if (out.size() > limit)
    raise("tojson: the text grows past " + std::to_string(limit) + " bytes", ErrorKind::Limit);
  auto newline = [&](int l) {
    if (!o.indented)
      return;
    out += '\n';
    for (int k = 0; k < l; ++k)
      out += o.indent;
  };
  switch (v.t) {
  case T::None: out += "null"; return;
  case T::Bool: out += v.b ? "true" : "false"; return;
  case T::Int: out += std::to_string(v.i); return;
  case T::Float: out += jsonFloat(v.f); return;
  case T::Str: jsonString(out, v.s, o.ensureAscii); return;
  case T::List: {
    if (v.list->items.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (size_t k = 0; k < v.list->items.size(); ++k) {
      if (k)
        out += o.itemSeparator;
      newline(level + 1);
      toJson(out, v.list->items[k], o, level + 1, limit);
    }
    newline(level);
    out += ']';
    return;
  }
  case T::Dict: {
    if (v.dict->items.empty()) {
      out += "{}";
      return;
    }
    std::vector<std::pair<std::string, const Value *>> items;
    for (const auto &[key, x] : v.dict->items) {
      std::string k;
      switch (key.t) {
      case T::Str: k = key.s; break;
      case T::Int: k = std::to_string(key.i); break;
      case T::Float: k = jsonFloat(key.f); break;
      case T::Bool: k = key.b ? "true" : "false"; break;
      case T::None: k = "null"; break;
      default:
        raise("keys must be str, int, float, bool or None, not " + typeName(key));
      }
      items.emplace_back(std::move(k), &x);
    }
    if (o.sortKeys)
      stableSort(items, [](const auto &a, const auto &b) { return a.first < b.first; });
    out += '{';
    for (size_t k = 0; k < items.size(); ++k) {
      if (k)
        out += o.itemSeparator;
      newline(level + 1);
      jsonString(out, items[k].first, o.ensureAscii);
      out += o.keySeparator;
      toJson(out, *items[k].second, o, level + 1, limit);
    }
    newline(level);
    out += '}';
    return;
  }
  default:
    raise("Object of type " + typeName(v) + " is not JSON serializable");
  }
}

// ---- Equality, order, truth -----------------------------------------------

bool truthy(const Value &v) {
  switch (v.t) {
  case T::Undefined:
  case T::None: return false;
  case T::Bool: return v.b;
  case T::Int: return v.i != 0;
  case T::Float: return v.f != 0;
  case T::Str: return !v.s.empty();
  case T::List: return !v.list->items.empty();
  case T::Dict: return !v.dict->items.empty();
  default: return true;
  }
}

bool equals(const Value &a, const Value &b, int depth = 0) {
  checkDepth(depth);
  if (isNumber(a) && isNumber(b)) {
    if (a.t == T::Float || b.t == T::Float)
      return asDouble(a) == asDouble(b);
    return asInt(a) == asInt(b);
  }
  if (a.t != b.t)
    return false;
  switch (a.t) {
  case T::Undefined:
  case T::None: return true;
  case T::Str: return a.s == b.s;
  case T::List:
    if (a.list->tuple != b.list->tuple || a.list->items.size() != b.list->items.size())
      return false;
    for (size_t k = 0; k < a.list->items.size(); ++k)
      if (!equals(a.list->items[k], b.list->items[k], depth + 1))
        return false;
    return true;
  case T::Dict:
    if (a.dict->items.size() != b.dict->items.size())
      return false;
    for (const auto &[k, x] : a.dict->items) {
      bool found = false;
      for (const auto &[k2, y] : b.dict->items)
        if (equals(k, k2, depth + 1)) {
          found = equals(x, y, depth + 1);
          break;
        }
      if (!found)
        return false;
    }
    return true;
  case T::Object: return a.obj == b.obj;
  case T::Func: return a.fn == b.fn;
  default: return false;
  }
}

/// <0, 0, >0 as Python orders a and b; a TypeError where it does not.
int compare(const Value &a, const Value &b, const char *op, int depth = 0) {
  checkDepth(depth);
  if (a.t == T::Undefined)
    undefinedError(a);
  if (b.t == T::Undefined)
    undefinedError(b);
  if (isNumber(a) && isNumber(b)) {
    if (a.t == T::Float || b.t == T::Float) {
      double x = asDouble(a), y = asDouble(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    int64_t x = asInt(a), y = asInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.t == T::Str && b.t == T::Str)
    return a.s.compare(b.s) < 0 ? -1 : a.s == b.s ? 0 : 1;
  if (a.t == T::List && b.t == T::List && a.list->tuple == b.list->tuple) {
    const auto &x = a.list->items, &y = b.list->items;
    for (size_t k = 0; k < x.size() && k < y.size(); ++k)
      if (!equals(x[k], y[k], depth + 1))
        return compare(x[k], y[k], op, depth + 1);
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  raise(std::string("'") + op + "' not supported between instances of '" + typeName(a) +
        "' and '" + typeName(b) + "'");
}

const Value *dictFind(const DictData &d, const Value &key) {
  for (const auto &[k, v] : d.items)
    if (equals(k, key))
      return &v;
  return nullptr;
}

const Value *dictFind(const DictData &d, const std::string &key) {
  for (const auto &[k, v] : d.items)
    if (k.t == T::Str && k.s == key)
      return &v;
  return nullptr;
}

// ---- The AST --------------------------------------------------------------

struct Interp;
using FilterFn = Value (*)(Interp &, const Value &, Args &);
using TestFn = bool (*)(Interp &, const Value &, Args &);

struct Expr {
  enum Kind {
    Const, Name, Attr, Item, Slice, Call, Filter, Test, Neg, Pos, Not, Bin, Cmp, And, Or, Cond,
    ListLit, TupleLit, DictLit, Concat
  } kind;
  int line = 0;
  Value value;                               // Const
  std::string name;                          // Name, Attr, Filter, Test, Bin (the operator)
  std::vector<std::unique_ptr<Expr>> a;      // operands; null for an absent slice bound
  std::vector<std::string> ops;              // Cmp
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs; // Call, Filter, Test
  bool negate = false;                       // Test: `is not`
  FilterFn filter = nullptr;                 // Filter: null when unknown
  TestFn test = nullptr;                     // Test: null when unknown
  bool soft = false;                         // unknown filter/test: fails when evaluated
  Expr(Kind k, int line) : kind(k), line(line) {}
};
using ExprPtr = std::unique_ptr<Expr>;

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum Kind { Text, Emit, If, For, Set, SetBlock, Macro, FilterBlock, Break, Continue, Block } kind;
  int line = 0;
  std::string text;                                // Text; Macro: its name
  ExprPtr expr;                                    // Emit, Set, For (iterable), FilterBlock/SetBlock filters
  ExprPtr target;                                  // Set, SetBlock, For
  ExprPtr cond;                                    // For: the `if` filter
  std::vector<std::pair<ExprPtr, Body>> branches;  // If
  Body body, orelse;
  std::vector<std::string> params;                 // Macro
  std::vector<ExprPtr> defaults;                   // Macro: null where none
  Stmt(Kind k, int line) : kind(k), line(line) {}
};

} // namespace moir::rt::chat::detail

struct moir_chat_template {
  std::string name;
  moir::rt::chat::detail::Body body;
};

namespace moir::rt::chat::detail {

// ---- Lexer ----------------------------------------------------------------

enum class Tok { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, Str, Int, Float, Op, Eof };

struct Token {
  Tok kind;
  std::string text;
  int line;
  int64_t i = 0;
  double f = 0;
};

bool isAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/// Python's str.rstrip() (whitespace as str.isspace()).
std::string rstripSpace(const std::string &s) { return stripChars(s, nullptr, false, true); }

class Lexer {
public:
  Lexer(const std::string &src) : src(src) {}

  std::vector<Token> run() {
    while (pos < src.size()) {
      size_t tag = findTag(pos);
      std::string text = src.substr(pos, tag == std::string::npos ? std::string::npos : tag - pos);
      if (tag == std::string::npos) {
        emitText(text);
        pos = src.size();
        break;
      }
      char kind = src[tag + 1];
      char sign = tag + 2 < src.size() && (src[tag + 2] == '-' || src[tag + 2] == '+') ? src[tag + 2]
                                                                                      : 0;
      if (sign == '-') {
        text = rstripSpace(text);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: blanks between the line's start and a block or
        // comment tag go.
        size_t lpos = text.rfind('\n');
        lpos = lpos == std::string::npos ? 0 : lpos + 1;
        bool lineStart = lpos > 0 || pos == 0 || src[pos - 1] == '\n';
        if (lineStart && lpos < text.size()) {
          bool blank = true;
          for (size_t i = 0, len = 0; i < text.size() - lpos && blank; i += len)
            blank = isSpace(decode(text, lpos + i, &len));
          if (blank)
            text.resize(lpos);
        }
      }
      emitText(text);
      countLines(pos, tag);
      pos = tag + 2 + (sign ? 1 : 0);
      if (kind == '#')
        comment();
      else if (kind == '%' && raw())
        continue;
      else
        tagTokens(kind == '%');
    }
    tokens.push_back({Tok::Eof, "", line});
    return std::move(tokens);
  }

private:
  [[noreturn]] void error(const std::string &m) { raise(m, ErrorKind::Syntax, line); }

  size_t findTag(size_t from) const {
    for (size_t t = src.find('{', from); t != std::string::npos; t = src.find('{', t + 1))
      if (t + 1 < src.size() && (src[t + 1] == '{' || src[t + 1] == '%' || src[t + 1] == '#'))
        return t;
    return std::string::npos;
  }

  void countLines(size_t from, size_t to) {
    for (size_t k = from; k < to && k < src.size(); ++k)
      line += src[k] == '\n';
  }

  void emitText(const std::string &text) {
    if (!text.empty())
      tokens.push_back({Tok::Text, text, line});
  }

  /// After a block or comment end: `-` strips all whitespace, `+` keeps it,
  /// otherwise trim_blocks drops one newline.
  void afterEnd(char sign) {
    if (sign == '-') {
      while (pos < src.size()) {
        size_t len = 0;
        if (!isSpace(decode(src, pos, &len)))
          break;
        countLines(pos, pos + len);
        pos += len;
      }
    } else if (sign != '+' && pos < src.size() && src[pos] == '\n') {
      ++pos;
      ++line;
    }
  }

  void comment() {
    int start = line;
    size_t begin = pos;
    size_t end = src.find("#}", pos);
    if (end == std::string::npos) {
      line = start;
      error("missing end of comment tag");
    }
    char sign = end > begin && (src[end - 1] == '-' || src[end - 1] == '+') ? src[end - 1] : 0;
    countLines(pos, end + 2);
    pos = end + 2;
    afterEnd(sign);
  }

  /// {% raw %}...{% endraw %}: the text between, verbatim.
  bool raw() {
    size_t p = pos;
    while (p < src.size() && isAsciiSpace(src[p]))
      ++p;
    if (src.compare(p, 3, "raw") != 0 || (p + 3 < src.size() && (std::isalnum(static_cast<unsigned char>(src[p + 3])) || src[p + 3] == '_')))
      return false;
    p += 3;
    while (p < src.size() && isAsciiSpace(src[p]))
      ++p;
    char sign = 0;
    if (p < src.size() && (src[p] == '-' || src[p] == '+'))
      sign = src[p++];
    if (src.compare(p, 2, "%}") != 0)
      error("expected '%}' after raw");
    countLines(pos, p + 2);
    pos = p + 2;
    afterEnd(sign == '-' ? '-' : '+');
    // The end: {%[-+]? endraw [-+]?%}
    for (size_t t = src.find("{%", pos); t != std::string::npos; t = src.find("{%", t + 2)) {
      size_t q = t + 2;
      char open = 0;
      if (q < src.size() && (src[q] == '-' || src[q] == '+'))
        open = src[q++];
      while (q < src.size() && isAsciiSpace(src[q]))
        ++q;
      if (src.compare(q, 6, "endraw") != 0)
        continue;
      q += 6;
      while (q < src.size() && isAsciiSpace(src[q]))
        ++q;
      char close = 0;
      if (q < src.size() && (src[q] == '-' || src[q] == '+'))
        close = src[q++];
      if (src.compare(q, 2, "%}") != 0)
        continue;
      std::string text = src.substr(pos, t - pos);
      if (open == '-')
        text = rstripSpace(text);
      emitText(text);
      countLines(pos, q + 2);
      pos = q + 2;
      afterEnd(close);
      return true;
    }
    error("missing end of raw directive");
  }

  void tagTokens(bool block) {
    int opened = line;
    tokens.push_back({block ? Tok::BlockBegin : Tok::VarBegin, "", line});
    std::vector<char> balance;
    while (true) {
      while (pos < src.size() && isAsciiSpace(src[pos])) {
        line += src[pos] == '\n';
        ++pos;
      }
      if (pos >= src.size()) {
        line = opened;
        error(std::string("unexpected end of template: the ") + (block ? "block" : "variable") +
              " tag opened here is not closed");
      }
      if (balance.empty()) {
        const char *end = block ? "%}" : "}}";
        char sign = 0;
        size_t at = pos;
        if ((src[at] == '-' || (block && src[at] == '+')) && src.compare(at + 1, 2, end) == 0)
          sign = src[at++];
        if (src.compare(at, 2, end) == 0) {
          tokens.push_back({block ? Tok::BlockEnd : Tok::VarEnd, "", line});
          pos = at + 2;
          if (block)
            afterEnd(sign);
          else if (sign == '-')
            afterEnd('-');
          return;
        }
      }
      char c = src[pos];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t b = pos;
        while (pos < src.size() &&
               (std::isalnum(static_cast<unsigned char>(src[pos])) || src[pos] == '_'))
          ++pos;
        tokens.push_back({Tok::Name, src.substr(b, pos - b), line});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        number();
      } else if (c == '\'' || c == '"') {
        string();
      } else {
        static const char *const ops[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "*", "/",
                                          "%",  "~",  "[",  "]",  "(",  ")",  "{", "}", ">", "<",
                                          "=",  ".",  ":",  "|",  ",",  ";"};
        const char *op = nullptr;
        for (const char *o : ops)
          if (src.compare(pos, std::strlen(o), o) == 0) {
            op = o;
            break;
          }
        if (!op) {
          size_t len = 0;
          uint32_t cp = decode(src, pos, &len);
          std::string ch;
          appendUtf8(ch, cp);
          error("unexpected char '" + ch + "'");
        }
        if (*op == '(' || *op == '[' || *op == '{')
          balance.push_back(*op);
        if (*op == ')' || *op == ']' || *op == '}') {
          char want = *op == ')' ? '(' : *op == ']' ? '[' : '{';
          if (balance.empty() || balance.back() != want)
            error(std::string("unexpected '") + op + "'");
          balance.pop_back();
        }
        tokens.push_back({Tok::Op, op, line});
        pos += std::strlen(op);
      }
    }
  }

  void number() {
    size_t b = pos;
    auto digits = [&] {
      while (pos < src.size() && (std::isdigit(static_cast<unsigned char>(src[pos])) ||
                                  (src[pos] == '_' && pos + 1 < src.size() &&
                                   std::isdigit(static_cast<unsigned char>(src[pos + 1])))))
        ++pos;
    };
    digits();
    bool isFloat = false;
    if (pos + 1 < src.size() && src[pos] == '.' &&
        std::isdigit(static_cast<unsigned char>(src[pos + 1]))) {
      ++pos;
      digits();
      isFloat = true;
    }
    if (pos < src.size() && (src[pos] == 'e' || src[pos] == 'E')) {
      size_t e = pos + 1;
      if (e < src.size() && (src[e] == '+' || src[e] == '-'))
        ++e;
      if (e < src.size() && std::isdigit(static_cast<unsigned char>(src[e]))) {
        pos = e;
        digits();
        isFloat = true;
      }
    }
    std::string text;
    for (size_t k = b; k < pos; ++k)
      if (src[k] != '_')
        text += src[k];
    Token t{isFloat ? Tok::Float : Tok::Int, text, line};
    errno = 0;
    if (isFloat) {
      t.f = std::strtod(text.c_str(), nullptr);
    } else {
      t.i = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE)
        error("integer literal " + text + " does not fit 64 bits");
    }
    tokens.push_back(t);
  }

  /// A string literal with Python's unicode-escape sequences.
  void string() {
    char quote = src[pos++];
    int start = line;
    std::string out;
    while (true) {
      if (pos >= src.size()) {
        line = start;
        error("unterminated string");
      }
      char c = src[pos];
      if (c == quote) {
        ++pos;
        break;
      }
      if (c == '\n')
        ++line;
      if (c != '\\') {
        out += c;
        ++pos;
        continue;
      }
      if (pos + 1 >= src.size()) {
        ++pos;
        continue;
      }
      char e = src[pos + 1];
      pos += 2;
      auto hex = [&](int n) -> uint32_t {
        uint32_t v = 0;
        for (int k = 0; k < n; ++k, ++pos) {
          if (pos >= src.size() || !std::isxdigit(static_cast<unsigned char>(src[pos])))
            error("truncated \\" + std::string(1, e) + " escape in a string");
          char h = src[pos];
          v = v * 16 + (h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
        }
        return v;
      };
      switch (e) {
      case '\n': ++line; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': appendUtf8(out, hex(2)); break;
      case 'u':
      case 'U': {
        uint32_t cp = hex(e == 'u' ? 4 : 8);
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
          error("string escape \\" + std::string(1, e) + " names no Unicode scalar value");
        appendUtf8(out, cp);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = e - '0';
          for (int k = 0; k < 2 && pos < src.size() && src[pos] >= '0' && src[pos] <= '7'; ++k)
            v = v * 8 + (src[pos++] - '0');
          appendUtf8(out, v);
        } else {
          out += '\\';
          --pos; // the character after the backslash is read again as text
        }
      }
    }
    tokens.push_back({Tok::Str, out, start});
  }

  const std::string &src;
  size_t pos = 0;
  int line = 1;
  std::vector<Token> tokens;
};

// ---- Filters and tests (defined below) ------------------------------------

FilterFn findFilter(const std::string &name);
TestFn findTest(const std::string &name);

// ---- Parser ---------------------------------------------------------------

class Parser {
public:
  explicit Parser(std::vector<Token> tokens) : toks(std::move(tokens)) {}

  Body parseTemplate() {
    std::string ended;
    Body body = parseBody({}, &ended, "");
    return body;
  }

private:
  const Token &cur() const { return toks[at]; }
  const Token &peek(size_t k = 1) const { return toks[std::min(at + k, toks.size() - 1)]; }
  const Token &next() { return toks[at < toks.size() - 1 ? at++ : at]; }
  [[noreturn]] void error(const std::string &m) { raise(m, ErrorKind::Syntax, cur().line); }
  bool isOp(const char *op) const { return cur().kind == Tok::Op && cur().text == op; }
  bool isName(const char *name) const { return cur().kind == Tok::Name && cur().text == name; }
  void expectOp(const char *op) {
    if (!isOp(op))
      error(std::string("expected '") + op + "', got " + describe(cur()));
    next();
  }
  std::string expectName() {
    if (cur().kind != Tok::Name)
      error("expected a name, got " + describe(cur()));
    return next().text;
  }
  void expectBlockEnd() {
    if (cur().kind != Tok::BlockEnd)
      error("expected the end of the statement block ('%}'), got " + describe(cur()));
    next();
  }
  static std::string describe(const Token &t) {
    switch (t.kind) {
    case Tok::Name: return "'" + t.text + "'";
    case Tok::Str: return "a string";
    case Tok::Int:
    case Tok::Float: return "a number";
    case Tok::Op: return "'" + t.text + "'";
    case Tok::VarEnd: return "'}}'";
    case Tok::BlockEnd: return "'%}'";
    case Tok::Eof: return "the end of the template";
    default: return "text";
    }
  }

  struct Nest {
    Parser &p;
    explicit Nest(Parser &p) : p(p) {
      if (++p.depth > 200)
        p.error("template nested too deeply (more than 200 levels)");
    }
    ~Nest() { --p.depth; }
  };

  /// Statements up to one of the block tags `ends`; *ended is the one met
  /// (its name consumed, its block not).
  Body parseBody(std::initializer_list<const char *> ends, std::string *ended, const char *opener) {
    Nest nest(*this);
    Body body;
    while (true) {
      const Token &t = cur();
      if (t.kind == Tok::Eof) {
        if (ends.size() == 0)
          return body;
        std::string want;
        for (const char *e : ends)
          want += (want.empty() ? "'" : " or '") + std::string(e) + "'";
        error(std::string("unexpected end of template: looking for ") + want + " to close '" +
              opener + "'");
      }
      if (t.kind == Tok::Text) {
        auto s = std::make_unique<Stmt>(Stmt::Text, t.line);
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.kind == Tok::VarBegin) {
        next();
        auto s = std::make_unique<Stmt>(Stmt::Emit, t.line);
        s->expr = parseTuple(true);
        if (cur().kind != Tok::VarEnd)
          error("expected the end of the print statement ('}}'), got " + describe(cur()));
        next();
        body.push_back(std::move(s));
      } else if (t.kind == Tok::BlockBegin) {
        next();
        if (cur().kind != Tok::Name)
          error("expected a statement name after '{%', got " + describe(cur()));
        std::string name = cur().text;
        for (const char *e : ends)
          if (name == e) {
            next();
            *ended = name;
            return body;
          }
        body.push_back(parseStatement());
      } else {
        error("unexpected " + describe(t));
      }
    }
  }

  std::unique_ptr<Stmt> parseStatement() {
    int line = cur().line;
    std::string name = next().text;
    std::string ended;
    if (name == "if") {
      auto s = std::make_unique<Stmt>(Stmt::If, line);
      ExprPtr c = withSoft(true, [&] { return parseTuple(false); });
      expectBlockEnd();
      while (true) {
        Body b = withSoft(true, [&] { return parseBody({"elif", "else", "endif"}, &ended, "if"); });
        s->branches.emplace_back(std::move(c), std::move(b));
        if (ended == "elif") {
          c = withSoft(true, [&] { return parseTuple(false); });
          expectBlockEnd();
          continue;
        }
        if (ended == "else") {
          expectBlockEnd();
          s->orelse = withSoft(true, [&] { return parseBody({"endif"}, &ended, "if"); });
        }
        expectBlockEnd();
        return s;
      }
    }
    if (name == "for") {
      auto s = std::make_unique<Stmt>(Stmt::For, line);
      s->target = parseAssignTarget(false);
      if (!isName("in"))
        error("expected 'in' in the for statement, got " + describe(cur()));
      next();
      s->expr = parseTuple(false, "recursive");
      if (isName("if")) {
        next();
        s->cond = parseExpression(true);
      }
      if (isName("recursive"))
        error("recursive for loops are not supported");
      expectBlockEnd();
      ++loops;
      s->body = withSoft(false, [&] { return parseBody({"endfor", "else"}, &ended, "for"); });
      --loops;
      if (ended == "else") {
        expectBlockEnd();
        s->orelse = withSoft(false, [&] { return parseBody({"endfor"}, &ended, "for"); });
      }
      expectBlockEnd();
      return s;
    }
    if (name == "set") {
      ExprPtr target = parseAssignTarget(true);
      if (isOp("=")) {
        next();
        auto s = std::make_unique<Stmt>(Stmt::Set, line);
        s->target = std::move(target);
        s->expr = parseTuple(true);
        expectBlockEnd();
        return s;
      }
      auto s = std::make_unique<Stmt>(Stmt::SetBlock, line);
      s->target = std::move(target);
      if (isOp("|"))
        s->expr = parseFilters(nullptr);
      expectBlockEnd();
      int saved = loops;
      loops = 0;
      s->body = withSoft(false, [&] { return parseBody({"endset"}, &ended, "set"); });
      loops = saved;
      expectBlockEnd();
      return s;
    }
    if (name == "macro") {
      auto s = std::make_unique<Stmt>(Stmt::Macro, line);
      s->text = expectName();
      expectOp("(");
      while (!isOp(")")) {
        if (!s->params.empty())
          expectOp(",");
        if (isOp(")"))
          break;
        s->params.push_back(expectName());
        if (isOp("=")) {
          next();
          s->defaults.push_back(parseExpression(true));
        } else {
          s->defaults.push_back(nullptr);
        }
      }
      next();
      expectBlockEnd();
      int saved = loops;
      loops = 0;
      s->body = withSoft(false, [&] { return parseBody({"endmacro"}, &ended, "macro"); });
      loops = saved;
      if (cur().kind == Tok::Name && cur().text == s->text)
        next();
      expectBlockEnd();
      return s;
    }
    if (name == "filter") {
      auto s = std::make_unique<Stmt>(Stmt::FilterBlock, line);
      s->expr = parseFilters(nullptr, false);
      expectBlockEnd();
      s->body = withSoft(false, [&] { return parseBody({"endfilter"}, &ended, "filter"); });
      expectBlockEnd();
      return s;
    }
    if (name == "generation") {
      // transformers' assistant-mask marker: renders its body.
      auto s = std::make_unique<Stmt>(Stmt::Block, line);
      expectBlockEnd();
      s->body = parseBody({"endgeneration"}, &ended, "generation");
      expectBlockEnd();
      return s;
    }
    if (name == "break" || name == "continue") {
      if (!loops)
        raise("'" + name + "' outside of a loop", ErrorKind::Syntax, line);
      expectBlockEnd();
      return std::make_unique<Stmt>(name == "break" ? Stmt::Break : Stmt::Continue, line);
    }
    static const char *const known[] = {"call",    "include", "import", "from", "extends",
                                        "block",   "with",    "autoescape", "do"};
    for (const char *k : known)
      if (name == k)
        raise("the '" + name + "' tag is not supported by this runtime's chat templates",
              ErrorKind::Syntax, line);
    raise("Encountered unknown tag '" + name + "'.", ErrorKind::Syntax, line);
  }

  template <typename F> std::invoke_result_t<F> withSoft(bool s, F f) {
    bool saved = soft;
    soft = s;
    auto r = f();
    soft = saved;
    return r;
  }

  /// A name, `ns.attr` (set only) or a tuple of names.
  ExprPtr parseAssignTarget(bool allowAttr) {
    int line = cur().line;
    auto one = [&]() -> ExprPtr {
      if (isOp("(")) {
        next();
        ExprPtr t = parseAssignTarget(false);
        expectOp(")");
        return t;
      }
      auto e = std::make_unique<Expr>(Expr::Name, cur().line);
      e->name = expectName();
      if (allowAttr && isOp(".")) {
        next();
        auto a = std::make_unique<Expr>(Expr::Attr, line);
        a->name = expectName();
        a->a.push_back(std::move(e));
        return a;
      }
      return e;
    };
    ExprPtr first = one();
    if (!isOp(","))
      return first;
    auto tuple = std::make_unique<Expr>(Expr::TupleLit, line);
    tuple->a.push_back(std::move(first));
    while (isOp(",")) {
      next();
      if (cur().kind != Tok::Name && !isOp("("))
        break;
      tuple->a.push_back(one());
    }
    for (const auto &e : tuple->a)
      if (e->kind == Expr::Attr)
        error("cannot unpack into a namespace attribute");
    return tuple;
  }

  bool tupleEnd(const char *extra) const {
    if (cur().kind == Tok::VarEnd || cur().kind == Tok::BlockEnd || isOp(")") || isOp("]") ||
        cur().kind == Tok::Eof)
      return true;
    return extra && isName(extra);
  }

  /// An expression, or a tuple when commas follow (`a, b`).
  ExprPtr parseTuple(bool withCond, const char *extraEnd = nullptr) {
    int line = cur().line;
    ExprPtr first = parseExpression(withCond);
    if (!isOp(","))
      return first;
    auto t = std::make_unique<Expr>(Expr::TupleLit, line);
    t->a.push_back(std::move(first));
    while (isOp(",")) {
      next();
      if (tupleEnd(extraEnd))
        break;
      t->a.push_back(parseExpression(withCond));
    }
    return t;
  }

  ExprPtr parseExpression(bool withCond) {
    Nest nest(*this);
    return withCond ? parseCondExpr() : parseOr();
  }

  ExprPtr parseCondExpr() {
    ExprPtr e = parseOr();
    while (isName("if")) {
      int line = cur().line;
      next();
      auto c = std::make_unique<Expr>(Expr::Cond, line);
      ExprPtr test = parseOr();
      ExprPtr orelse;
      if (isName("else")) {
        next();
        orelse = parseCondExpr();
      }
      c->a.push_back(std::move(e));
      c->a.push_back(std::move(test));
      c->a.push_back(std::move(orelse));
      markSoft(*c);
      e = std::move(c);
    }
    return e;
  }

  /// jinja2 defers unknown filters and tests inside conditional
  /// expressions to run time.
  static void markSoft(Expr &e) {
    if ((e.kind == Expr::Filter && !e.filter) || (e.kind == Expr::Test && !e.test))
      e.soft = true;
    for (auto &k : e.a)
      if (k)
        markSoft(*k);
    for (auto &kv : e.kwargs)
      markSoft(*kv.second);
  }

  ExprPtr binary(Expr::Kind kind, const std::string &op, ExprPtr l, ExprPtr r, int line) {
    auto e = std::make_unique<Expr>(kind, line);
    e->name = op;
    e->a.push_back(std::move(l));
    e->a.push_back(std::move(r));
    return e;
  }

  ExprPtr parseOr() {
    ExprPtr e = parseAnd();
    while (isName("or")) {
      int line = next().line;
      e = binary(Expr::Or, "or", std::move(e), parseAnd(), line);
    }
    return e;
  }
  ExprPtr parseAnd() {
    ExprPtr e = parseNot();
    while (isName("and")) {
      int line = next().line;
      e = binary(Expr::And, "and", std::move(e), parseNot(), line);
    }
    return e;
  }
  ExprPtr parseNot() {
    if (isName("not")) {
      Nest nest(*this);
      int line = next().line;
      auto e = std::make_unique<Expr>(Expr::Not, line);
      e->a.push_back(parseNot());
      return e;
    }
    return parseCompare();
  }
  ExprPtr parseCompare() {
    int line = cur().line;
    ExprPtr first = parseMath1();
    std::unique_ptr<Expr> cmp;
    while (true) {
      std::string op;
      if (cur().kind == Tok::Op &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
           cur().text == ">" || cur().text == ">=")) {
        op = next().text;
      } else if (isName("in")) {
        next();
        op = "in";
      } else if (isName("not") && peek().kind == Tok::Name && peek().text == "in") {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = std::make_unique<Expr>(Expr::Cmp, line);
        cmp->a.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->a.push_back(parseMath1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprPtr parseMath1() {
    ExprPtr e = parseConcat();
    while (isOp("+") || isOp("-")) {
      const Token &t = next();
      e = binary(Expr::Bin, t.text, std::move(e), parseConcat(), t.line);
    }
    return e;
  }
  ExprPtr parseConcat() {
    ExprPtr e = parseMath2();
    while (isOp("~")) {
      int line = next().line;
      e = binary(Expr::Concat, "~", std::move(e), parseMath2(), line);
    }
    return e;
  }
  ExprPtr parseMath2() {
    ExprPtr e = parsePow();
    while (isOp("*") || isOp("/") || isOp("//") || isOp("%")) {
      const Token &t = next();
      e = binary(Expr::Bin, t.text, std::move(e), parsePow(), t.line);
    }
    return e;
  }
  ExprPtr parsePow() {
    ExprPtr e = parseUnary(true);
    while (isOp("**")) {
      int line = next().line;
      e = binary(Expr::Bin, "**", std::move(e), parseUnary(true), line);
    }
    return e;
  }
  ExprPtr parseUnary(bool withFilter) {
    Nest nest(*this);
    ExprPtr e;
    if (isOp("-") || isOp("+")) {
      const Token &t = next();
      e = std::make_unique<Expr>(t.text == "-" ? Expr::Neg : Expr::Pos, t.line);
      e->a.push_back(parseUnary(false));
    } else {
      e = parsePrimary();
    }
    e = parsePostfix(std::move(e));
    if (withFilter)
      e = parseFilterExpr(std::move(e));
    return e;
  }

  ExprPtr parsePrimary() {
    const Token &t = cur();
    int line = t.line;
    if (t.kind == Tok::Name) {
      next();
      auto e = std::make_unique<Expr>(Expr::Const, line);
      if (t.text == "true" || t.text == "True")
        e->value = boolValue(true);
      else if (t.text == "false" || t.text == "False")
        e->value = boolValue(false);
      else if (t.text == "none" || t.text == "None")
        e->value = noneValue();
      else {
        e->kind = Expr::Name;
        e->name = t.text;
      }
      return e;
    }
    if (t.kind == Tok::Str) {
      std::string s;
      while (cur().kind == Tok::Str)
        s += next().text;
      auto e = std::make_unique<Expr>(Expr::Const, line);
      e->value = strValue(s);
      return e;
    }
    if (t.kind == Tok::Int || t.kind == Tok::Float) {
      next();
      auto e = std::make_unique<Expr>(Expr::Const, line);
      e->value = t.kind == Tok::Int ? intValue(t.i) : floatValue(t.f);
      return e;
    }
    if (isOp("(")) {
      next();
      if (isOp(")")) {
        next();
        return std::make_unique<Expr>(Expr::TupleLit, line);
      }
      ExprPtr e = parseExpression(true);
      if (isOp(",")) {
        auto tuple = std::make_unique<Expr>(Expr::TupleLit, line);
        tuple->a.push_back(std::move(e));
        while (isOp(",")) {
          next();
          if (isOp(")"))
            break;
          tuple->a.push_back(parseExpression(true));
        }
        e = std::move(tuple);
      }
      expectOp(")");
      return e;
    }
    if (isOp("[")) {
      next();
      auto e = std::make_unique<Expr>(Expr::ListLit, line);
      while (!isOp("]")) {
        if (!e->a.empty())
          expectOp(",");
        if (isOp("]"))
          break;
        e->a.push_back(parseExpression(true));
      }
      next();
      return e;
    }
    if (isOp("{")) {
      next();
      auto e = std::make_unique<Expr>(Expr::DictLit, line);
      while (!isOp("}")) {
        if (!e->a.empty())
          expectOp(",");
        if (isOp("}"))
          break;
        e->a.push_back(parseExpression(true));
        expectOp(":");
        e->a.push_back(parseExpression(true));
      }
      next();
      return e;
    }
    error("unexpected " + describe(t));
  }

  ExprPtr parsePostfix(ExprPtr e) {
    while (true) {
      if (isOp(".")) {
        int line = next().line;
        if (cur().kind == Tok::Name) {
          auto a = std::make_unique<Expr>(Expr::Attr, line);
          a->name = next().text;
          a->a.push_back(std::move(e));
          e = std::move(a);
        } else if (cur().kind == Tok::Int) {
          auto a = std::make_unique<Expr>(Expr::Item, line);
          a->a.push_back(std::move(e));
          auto k = std::make_unique<Expr>(Expr::Const, line);
          k->value = intValue(next().i);
          a->a.push_back(std::move(k));
          e = std::move(a);
        } else {
          error("expected an attribute name after '.', got " + describe(cur()));
        }
      } else if (isOp("[")) {
        int line = next().line;
        e = parseSubscript(std::move(e), line);
      } else if (isOp("(")) {
        e = parseCall(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parseSubscript(ExprPtr obj, int line) {
    ExprPtr parts[3];
    bool slice = false;
    if (!isOp(":"))
      parts[0] = parseExpression(true);
    if (isOp(":")) {
      slice = true;
      next();
      if (!isOp("]") && !isOp(":"))
        parts[1] = parseExpression(true);
      if (isOp(":")) {
        next();
        if (!isOp("]"))
          parts[2] = parseExpression(true);
      }
    }
    if (isOp(","))
      error("tuple subscripts are not supported");
    expectOp("]");
    auto e = std::make_unique<Expr>(slice ? Expr::Slice : Expr::Item, line);
    e->a.push_back(std::move(obj));
    if (slice)
      for (auto &p : parts)
        e->a.push_back(std::move(p));
    else
      e->a.push_back(std::move(parts[0]));
    return e;
  }

  /// (args): positional then keyword arguments into e->a (after its first
  /// operands) and e->kwargs.
  void parseArgs(Expr &e) {
    expectOp("(");
    bool first = true;
    while (!isOp(")")) {
      if (!first)
        expectOp(",");
      first = false;
      if (isOp(")"))
        break;
      if (isOp("*") || isOp("**"))
        error("*args and **kwargs in calls are not supported");
      if (cur().kind == Tok::Name && peek().kind == Tok::Op && peek().text == "=") {
        std::string k = next().text;
        next();
        e.kwargs.emplace_back(k, parseExpression(true));
      } else {
        if (!e.kwargs.empty())
          error("positional argument after keyword arguments");
        e.a.push_back(parseExpression(true));
      }
    }
    next();
  }

  ExprPtr parseCall(ExprPtr callee) {
    auto e = std::make_unique<Expr>(Expr::Call, cur().line);
    e->a.push_back(std::move(callee));
    parseArgs(*e);
    return e;
  }

  ExprPtr parseFilterExpr(ExprPtr e) {
    while (true) {
      if (isOp("|")) {
        e = parseFilters(std::move(e), true);
      } else if (isName("is")) {
        e = parseTest(std::move(e));
      } else if (isOp("(")) {
        e = parseCall(std::move(e));
      } else {
        return e;
      }
    }
  }

  /// `| name(args)` (once, or repeated for filter blocks and set blocks,
  /// whose operand is null: the body's text).
  ExprPtr parseFilters(ExprPtr e, bool once = false) {
    do {
      // A filter block's first filter has no '|'.
      if (isOp("|"))
        next();
      int line = cur().line;
      std::string name = expectName();
      while (isOp(".")) {
        next();
        name += "." + expectName();
      }
      auto f = std::make_unique<Expr>(Expr::Filter, line);
      f->name = name;
      f->filter = findFilter(name);
      f->a.push_back(std::move(e));
      if (isOp("("))
        parseArgs(*f);
      checkKnown(*f);
      e = std::move(f);
    } while (!once && isOp("|"));
    return e;
  }

  ExprPtr parseTest(ExprPtr e) {
    int line = next().line; // 'is'
    auto t = std::make_unique<Expr>(Expr::Test, line);
    if (isName("not")) {
      next();
      t->negate = true;
    }
    t->name = expectName();
    // `x is not none`, `x is sameas false`: the keyword tests' names.
    t->test = findTest(t->name);
    t->a.push_back(std::move(e));
    if (isOp("(")) {
      parseArgs(*t);
    } else if ((cur().kind == Tok::Name || cur().kind == Tok::Str || cur().kind == Tok::Int ||
                cur().kind == Tok::Float || isOp("[") || isOp("{")) &&
               !(isName("else") || isName("or") || isName("and") || isName("if") ||
                 isName("in") || isName("not"))) {
      if (isName("is"))
        error("You cannot chain multiple tests with is");
      ExprPtr arg = parsePrimary();
      t->a.push_back(parsePostfix(std::move(arg)));
    }
    checkKnown(*t);
    return t;
  }

  /// An unknown filter or test fails the template now, or (in an if or a
  /// conditional expression, as jinja2 defers them) when evaluated.
  void checkKnown(Expr &e) {
    bool known = e.kind == Expr::Filter ? e.filter != nullptr : e.test != nullptr;
    if (known)
      return;
    if (soft)
      e.soft = true;
    else
      pendingUnknown.push_back(&e);
  }

public:
  /// Unknowns met outside an if and not inside a conditional expression.
  void checkUnknowns() {
    for (Expr *e : pendingUnknown)
      if (!e->soft)
        raise(std::string("No ") + (e->kind == Expr::Filter ? "filter" : "test") + " named '" +
                  e->name + "'.",
              ErrorKind::Syntax, e->line);
  }

private:
  std::vector<Token> toks;
  size_t at = 0;
  int depth = 0;
  int loops = 0;
  bool soft = false;
  std::vector<Expr *> pendingUnknown;
};

} // namespace moir::rt::chat::detail

namespace moir::rt::chat::detail {

// ---- The interpreter ------------------------------------------------------

struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  std::shared_ptr<Frame> parent;
  Value *find(const std::string &name) {
    for (Frame *f = this; f; f = f->parent.get())
      for (auto &kv : f->vars)
        if (kv.first == name)
          return &kv.second;
    return nullptr;
  }
  void set(const std::string &name, Value v) {
    for (auto &kv : vars)
      if (kv.first == name) {
        kv.second = std::move(v);
        return;
      }
    vars.emplace_back(name, std::move(v));
  }
};
using FramePtr = std::shared_ptr<Frame>;

FramePtr childFrame(const FramePtr &parent) {
  auto f = std::make_shared<Frame>();
  f->parent = parent;
  return f;
}

enum class Flow { Normal, Break, Continue };

/// Python's `in`.
bool contains(const Value &container, const Value &item) {
  switch (container.t) {
  case T::Str:
    if (item.t != T::Str)
      raise("'in <string>' requires string as left operand, not " + typeName(item));
    return container.s.find(item.s) != std::string::npos;
  case T::List:
    for (const Value &x : container.list->items)
      if (equals(x, item))
        return true;
    return false;
  case T::Dict: return dictFind(*container.dict, item) != nullptr;
  case T::Undefined: return false;
  default: raise("argument of type '" + typeName(container) + "' is not iterable");
  }
}

/// The items a for loop (or list()) gets from `v`.
std::vector<Value> iterate(const Value &v) {
  switch (v.t) {
  case T::Undefined: return {};
  case T::List: return v.list->items;
  case T::Dict: {
    std::vector<Value> keys;
    for (const auto &kv : v.dict->items)
      keys.push_back(kv.first);
    return keys;
  }
  case T::Str: {
    std::vector<Value> chars;
    for (size_t i = 0, len = 0; i < v.s.size(); i += len) {
      decode(v.s, i, &len);
      chars.push_back(strValue(v.s.substr(i, len)));
    }
    return chars;
  }
  default: raise("'" + typeName(v) + "' object is not iterable");
  }
}

/// Binds Python-style arguments to the named parameters (defaults given).
std::vector<Value> bindArgs(const char *fn, Args &args,
                            std::initializer_list<std::pair<const char *, Value>> params) {
  std::vector<Value> v;
  std::vector<const char *> names;
  for (const auto &p : params) {
    v.push_back(p.second);
    names.push_back(p.first);
  }
  if (args.pos.size() > v.size())
    raise(std::string(fn) + "() takes at most " + std::to_string(v.size()) + " argument(s) (" +
          std::to_string(args.pos.size()) + " given)");
  std::vector<bool> given(v.size(), false);
  for (size_t k = 0; k < args.pos.size(); ++k) {
    v[k] = args.pos[k];
    given[k] = true;
  }
  for (auto &[name, x] : args.kw) {
    size_t k = 0;
    while (k < names.size() && name != names[k])
      ++k;
    if (k == names.size())
      raise(std::string(fn) + "() got an unexpected keyword argument '" + name + "'");
    if (given[k])
      raise(std::string(fn) + "() got multiple values for argument '" + name + "'");
    v[k] = x;
    given[k] = true;
  }
  return v;
}

std::string requireStr(const Value &v, const char *what) {
  if (v.t == T::Undefined)
    undefinedError(v);
  if (v.t != T::Str)
    raise(std::string(what) + " must be str, not " + typeName(v));
  return v.s;
}

int64_t requireInt(const Value &v, const char *what) {
  if (v.t == T::Undefined)
    undefinedError(v);
  if (!isIntLike(v))
    raise(std::string(what) + ": '" + typeName(v) + "' object cannot be interpreted as an integer");
  return asInt(v);
}

std::string htmlEscape(const std::string &s) {
  std::string out;
  for (char c : s) {
    switch (c) {
    case '&': out += "&amp;"; break;
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '"': out += "&#34;"; break;
    case '\'': out += "&#39;"; break;
    default: out += c;
    }
  }
  return out;
}

struct Interp {
  Interp(const moir_chat_template &tpl, const RenderOptions &opts) : tpl(tpl), opts(opts) {}
  ~Interp() {
    // Namespaces are the only mutable values, so the only cycles: empty
    // them, and nothing refers back.
    for (auto &ns : namespaces)
      ns->attrs.clear();
  }

  const moir_chat_template &tpl;
  const RenderOptions &opts;
  std::string *out = nullptr;
  uint64_t steps = 0, written = 0;
  int callDepth = 0, nesting = 0, line = 0;
  FramePtr root;
  std::vector<std::shared_ptr<ObjectData>> namespaces;
  const Value *blockInput = nullptr;

  void step(uint64_t n = 1) {
    steps += n;
    if (steps > opts.limits.maxSteps)
      raise("the template ran more than " + std::to_string(opts.limits.maxSteps) +
                " steps (loop iterations, macro calls, list elements): is it looping without end?",
            ErrorKind::Limit);
  }
  void checkSize(size_t n) {
    if (n > opts.limits.maxOutput)
      raise("a string or list grows past " + std::to_string(opts.limits.maxOutput) +
                " bytes (the output limit)",
            ErrorKind::Limit);
  }
  void write(const std::string &s) {
    written += s.size();
    if (out->size() + s.size() > opts.limits.maxOutput || written > 4 * opts.limits.maxOutput)
      raise("the rendered text grows past " + std::to_string(opts.limits.maxOutput) + " bytes",
            ErrorKind::Limit);
    out->append(s);
  }

  struct Nested {
    Interp &in;
    explicit Nested(Interp &in) : in(in) {
      if (++in.nesting > 1000)
        raise("the template nests blocks, expressions and macro calls more than 1000 deep",
              ErrorKind::Limit);
    }
    ~Nested() { --in.nesting; }
  };

  /// Renders `body` into a string of its own (macros, set and filter blocks).
  std::string capture(const Body &body, const FramePtr &f) {
    std::string buffer;
    std::string *saved = out;
    out = &buffer;
    try {
      exec(body, f);
    } catch (...) {
      out = saved;
      throw;
    }
    out = saved;
    return buffer;
  }

  Value call(const Value &callee, Args &args) {
    if (callee.t == T::Func)
      return callee.fn->call(*this, args);
    if (callee.t == T::Undefined)
      undefinedError(callee);
    raise("'" + typeName(callee) + "' object is not callable");
  }

  Value callMacro(const Stmt &m, const std::weak_ptr<Frame> &def, Args &args) {
    step();
    if (callDepth >= opts.limits.maxCallDepth)
      raise("macro calls nested more than " + std::to_string(opts.limits.maxCallDepth) +
                " deep (runaway recursion?)",
            ErrorKind::Limit);
    FramePtr parent = def.lock();
    FramePtr frame = childFrame(parent ? parent : root);
    if (args.pos.size() > m.params.size())
      raise("macro '" + m.text + "' takes not more than " + std::to_string(m.params.size()) +
            " argument(s)");
    for (const auto &kw : args.kw)
      if (std::find(m.params.begin(), m.params.end(), kw.first) == m.params.end())
        raise("macro '" + m.text + "' takes no keyword argument '" + kw.first + "'");
    for (size_t k = 0; k < m.params.size(); ++k) {
      Value v;
      bool given = k < args.pos.size();
      if (given)
        v = args.pos[k];
      for (const auto &kw : args.kw)
        if (kw.first == m.params[k]) {
          if (given)
            raise("macro '" + m.text + "' got multiple values for argument '" + kw.first + "'");
          v = kw.second;
          given = true;
        }
      if (!given)
        v = m.defaults[k] ? eval(*m.defaults[k], frame)
                          : undefinedValue("parameter '" + m.params[k] + "' was not provided");
      frame->set(m.params[k], std::move(v));
    }
    int savedLine = line;
    ++callDepth;
    std::string text;
    try {
      text = capture(m.body, frame);
    } catch (...) {
      --callDepth;
      throw;
    }
    --callDepth;
    line = savedLine;
    return strValue(std::move(text));
  }

  Args evalArgs(const Expr &e, size_t from, const FramePtr &f) {
    Args args;
    for (size_t k = from; k < e.a.size(); ++k)
      args.pos.push_back(eval(*e.a[k], f));
    for (const auto &[name, x] : e.kwargs)
      args.kw.emplace_back(name, eval(*x, f));
    return args;
  }

  Value eval(const Expr &e, const FramePtr &f);
  Flow exec(const Body &body, const FramePtr &f);
  void assign(const Expr &target, const Value &v, const FramePtr &f);
  Flow execFor(const Stmt &s, const FramePtr &f);
};

Value getAttr(Interp &in, const Value &obj, const std::string &name);
Value getItem(Interp &in, const Value &obj, const Value &key);
Value arith(Interp &in, const std::string &op, const Value &a, const Value &b);
bool runTest(Interp &in, const std::string &name, const Value &v, Args &args);
Value runFilter(Interp &in, const std::string &name, const Value &v, Args &args);

Value sliceOf(const Value &obj, const Value *start, const Value *stop, const Value *stepv) {
  if (obj.t == T::Undefined)
    undefinedError(obj);
  if (obj.t != T::Str && obj.t != T::List)
    raise("'" + typeName(obj) + "' object is not subscriptable");
  auto bound = [](const Value *v, bool *given) -> int64_t {
    *given = v && v->t != T::None;
    if (!*given)
      return 0;
    if (v->t == T::Undefined)
      undefinedError(*v);
    if (!isIntLike(*v))
      raise("slice indices must be integers or None or have an __index__ method");
    return asInt(*v);
  };
  std::vector<size_t> at;
  int64_t n;
  if (obj.t == T::Str) {
    at = charStarts(obj.s);
    n = static_cast<int64_t>(at.size()) - 1;
  } else {
    n = static_cast<int64_t>(obj.list->items.size());
  }
  bool hasStart, hasStop, hasStep;
  int64_t b = bound(start, &hasStart), e = bound(stop, &hasStop), st = bound(stepv, &hasStep);
  if (!hasStep)
    st = 1;
  if (st == 0)
    raise("slice step cannot be zero");
  auto adjust = [&](int64_t x, bool given, int64_t dflt) {
    if (!given)
      return dflt;
    if (x < 0) {
      x += n;
      if (x < 0)
        x = st < 0 ? -1 : 0;
    } else if (x >= n) {
      x = st < 0 ? n - 1 : n;
    }
    return x;
  };
  b = adjust(b, hasStart, st > 0 ? 0 : n - 1);
  e = adjust(e, hasStop, st > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t k = b; st > 0 ? k < e : k > e; k += st)
    idx.push_back(k);
  if (obj.t == T::Str) {
    std::string s;
    for (int64_t k : idx)
      s.append(obj.s, at[k], at[k + 1] - at[k]);
    return strValue(std::move(s));
  }
  std::vector<Value> items;
  for (int64_t k : idx)
    items.push_back(obj.list->items[k]);
  return listValue(std::move(items), obj.list->tuple);
}

/// A loop's `loop`: one object per loop, updated per iteration (as
/// jinja2's LoopContext is).
enum LoopAttr { kIndex, kIndex0, kRevindex, kRevindex0, kFirst, kLast, kLength, kPrev, kNext };

Value makeLoop(size_t n) {
  Value v;
  v.t = T::Object;
  v.obj = std::make_shared<ObjectData>();
  v.obj->isNamespace = false;
  auto &a = v.obj->attrs;
  for (const char *name : {"index", "index0", "revindex", "revindex0", "first", "last", "length",
                           "previtem", "nextitem"})
    a.emplace_back(name, Value());
  a[kLength].second = intValue(static_cast<int64_t>(n));
  a.emplace_back("depth", intValue(1));
  a.emplace_back("depth0", intValue(0));
  std::weak_ptr<ObjectData> self = v.obj;
  a.emplace_back("cycle", funcValue("loop.cycle", [self](Interp &, Args &args) -> Value {
                   if (args.pos.empty())
                     raise("no items for cycling given");
                   auto loop = self.lock();
                   size_t k = loop ? static_cast<size_t>(loop->attrs[kIndex0].second.i) : 0;
                   return args.pos[k % args.pos.size()];
                 }));
  return v;
}

void updateLoop(ObjectData &loop, size_t k, const std::vector<Value> &items) {
  size_t n = items.size();
  auto &a = loop.attrs;
  a[kIndex].second = intValue(static_cast<int64_t>(k + 1));
  a[kIndex0].second = intValue(static_cast<int64_t>(k));
  a[kRevindex].second = intValue(static_cast<int64_t>(n - k));
  a[kRevindex0].second = intValue(static_cast<int64_t>(n - k - 1));
  a[kFirst].second = boolValue(k == 0);
  a[kLast].second = boolValue(k + 1 == n);
  static const Value noPrevious = undefinedValue("there is no previous item");
  static const Value noNext = undefinedValue("there is no next item");
  a[kPrev].second = k > 0 ? items[k - 1] : noPrevious;
  a[kNext].second = k + 1 < n ? items[k + 1] : noNext;
  loop.depth = 1 + std::max(depthOf(a[kPrev].second), depthOf(a[kNext].second));
}

Value Interp::eval(const Expr &e, const FramePtr &f) {
  Nested nested(*this);
  line = e.line;
  switch (e.kind) {
  case Expr::Const: return e.value;
  case Expr::Name:
    if (Value *v = f->find(e.name))
      return *v;
    return undefinedValue("'" + e.name + "' is undefined");
  case Expr::Attr: {
    Value obj = eval(*e.a[0], f);
    line = e.line;
    return getAttr(*this, obj, e.name);
  }
  case Expr::Item: {
    Value obj = eval(*e.a[0], f);
    Value key = eval(*e.a[1], f);
    line = e.line;
    return getItem(*this, obj, key);
  }
  case Expr::Slice: {
    Value obj = eval(*e.a[0], f);
    Value parts[3];
    for (int k = 0; k < 3; ++k)
      if (e.a[k + 1])
        parts[k] = eval(*e.a[k + 1], f);
    line = e.line;
    Value r = sliceOf(obj, e.a[1] ? &parts[0] : nullptr, e.a[2] ? &parts[1] : nullptr,
                      e.a[3] ? &parts[2] : nullptr);
    step(r.t == T::List ? r.list->items.size() : 0);
    return r;
  }
  case Expr::Call: {
    Value callee = eval(*e.a[0], f);
    Args args = evalArgs(e, 1, f);
    line = e.line;
    return call(callee, args);
  }
  case Expr::Filter: {
    Value input;
    if (e.a[0]) {
      input = eval(*e.a[0], f);
    } else if (blockInput) {
      input = *blockInput;
    }
    Args args = evalArgs(e, 1, f);
    line = e.line;
    if (!e.filter)
      raise("No filter named '" + e.name + "' found.");
    return e.filter(*this, input, args);
  }
  case Expr::Test: {
    Value v = eval(*e.a[0], f);
    Args args = evalArgs(e, 1, f);
    line = e.line;
    if (!e.test)
      raise("No test named '" + e.name + "' found.");
    return boolValue(e.test(*this, v, args) != e.negate);
  }
  case Expr::Neg:
  case Expr::Pos: {
    Value v = eval(*e.a[0], f);
    line = e.line;
    if (v.t == T::Undefined)
      undefinedError(v);
    if (!isNumber(v))
      raise(std::string("bad operand type for unary ") + (e.kind == Expr::Neg ? "-" : "+") + ": '" +
            typeName(v) + "'");
    if (e.kind == Expr::Pos)
      return v.t == T::Float ? v : intValue(asInt(v));
    if (v.t == T::Float)
      return floatValue(-v.f);
    if (asInt(v) == INT64_MIN)
      raise("integer overflow (this runtime's integers are 64-bit)");
    return intValue(-asInt(v));
  }
  case Expr::Not: return boolValue(!truthy(eval(*e.a[0], f)));
  case Expr::And: {
    Value l = eval(*e.a[0], f);
    return truthy(l) ? eval(*e.a[1], f) : l;
  }
  case Expr::Or: {
    Value l = eval(*e.a[0], f);
    return truthy(l) ? l : eval(*e.a[1], f);
  }
  case Expr::Bin: {
    Value l = eval(*e.a[0], f);
    Value r = eval(*e.a[1], f);
    line = e.line;
    return arith(*this, e.name, l, r);
  }
  case Expr::Concat: {
    Value l = eval(*e.a[0], f);
    Value r = eval(*e.a[1], f);
    std::string a = str(l), b = str(r);
    checkSize(a.size() + b.size());
    return strValue(a + b);
  }
  case Expr::Cmp: {
    Value left = eval(*e.a[0], f);
    for (size_t k = 0; k < e.ops.size(); ++k) {
      Value right = eval(*e.a[k + 1], f);
      line = e.line;
      const std::string &op = e.ops[k];
      bool r;
      if (op == "==")
        r = equals(left, right);
      else if (op == "!=")
        r = !equals(left, right);
      else if (op == "in")
        r = contains(right, left);
      else if (op == "notin")
        r = !contains(right, left);
      else {
        int c = compare(left, right, op.c_str());
        r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
      }
      if (!r)
        return boolValue(false);
      left = std::move(right);
    }
    return boolValue(true);
  }
  case Expr::Cond: {
    if (truthy(eval(*e.a[1], f)))
      return eval(*e.a[0], f);
    if (e.a[2])
      return eval(*e.a[2], f);
    return undefinedValue("the inline if-expression on line " + std::to_string(e.line) +
                          " evaluated to false and no else section was defined.");
  }
  case Expr::ListLit:
  case Expr::TupleLit: {
    std::vector<Value> items;
    for (const auto &x : e.a)
      items.push_back(eval(*x, f));
    step(items.size());
    return listValue(std::move(items), e.kind == Expr::TupleLit);
  }
  case Expr::DictLit: {
    std::vector<std::pair<Value, Value>> items;
    for (size_t k = 0; k + 1 < e.a.size(); k += 2) {
      Value key = eval(*e.a[k], f);
      Value v = eval(*e.a[k + 1], f);
      if (key.t == T::List && !key.list->tuple)
        raise("unhashable type: 'list'");
      if (key.t == T::Dict)
        raise("unhashable type: 'dict'");
      bool replaced = false;
      for (auto &kv : items)
        if (equals(kv.first, key)) {
          kv.second = v;
          replaced = true;
        }
      if (!replaced)
        items.emplace_back(std::move(key), std::move(v));
    }
    step(items.size());
    return dictValue(std::move(items));
  }
  }
  return Value();
}

void Interp::assign(const Expr &target, const Value &v, const FramePtr &f) {
  if (target.kind == Expr::Name) {
    f->set(target.name, v);
    return;
  }
  if (target.kind == Expr::Attr) {
    Value *ns = f->find(target.a[0]->name);
    if (!ns || ns->t != T::Object || !ns->obj->isNamespace)
      raise("cannot assign attribute on non-namespace object");
    int depth = depthOf(v) + 1;
    checkDepth(depth);
    ns->obj->depth = std::max(ns->obj->depth, depth);
    for (auto &kv : ns->obj->attrs)
      if (kv.first == target.name) {
        kv.second = v;
        return;
      }
    ns->obj->attrs.emplace_back(target.name, v);
    return;
  }
  // A tuple of names: unpack.
  std::vector<Value> items = iterate(v);
  size_t want = target.a.size();
  if (items.size() < want)
    raise("not enough values to unpack (expected " + std::to_string(want) + ", got " +
          std::to_string(items.size()) + ")");
  if (items.size() > want)
    raise("too many values to unpack (expected " + std::to_string(want) + ")");
  for (size_t k = 0; k < want; ++k)
    assign(*target.a[k], items[k], f);
}

Flow Interp::execFor(const Stmt &s, const FramePtr &f) {
  std::vector<Value> items = iterate(eval(*s.expr, f));
  if (s.cond) {
    std::vector<Value> kept;
    for (const Value &item : items) {
      step();
      FramePtr tf = childFrame(f);
      assign(*s.target, item, tf);
      if (truthy(eval(*s.cond, tf)))
        kept.push_back(item);
    }
    items.swap(kept);
  }
  if (items.empty())
    return exec(s.orelse, childFrame(f));
  Value loop = makeLoop(items.size());
  // One frame for the loop, emptied per iteration: what the body sets does
  // not outlive its iteration.
  FramePtr lf = childFrame(f);
  for (size_t k = 0; k < items.size(); ++k) {
    step();
    line = s.line;
    lf->vars.clear();
    assign(*s.target, items[k], lf);
    updateLoop(*loop.obj, k, items);
    lf->set("loop", loop);
    if (exec(s.body, lf) == Flow::Break)
      break;
  }
  return Flow::Normal;
}

Flow Interp::exec(const Body &body, const FramePtr &f) {
  Nested nested(*this);
  for (const auto &sp : body) {
    const Stmt &s = *sp;
    line = s.line;
    switch (s.kind) {
    case Stmt::Text: write(s.text); break;
    case Stmt::Emit: write(str(eval(*s.expr, f))); break;
    case Stmt::If: {
      const Body *chosen = &s.orelse;
      for (const auto &[c, b] : s.branches)
        if (truthy(eval(*c, f))) {
          chosen = &b;
          break;
        }
      Flow fl = exec(*chosen, f);
      if (fl != Flow::Normal)
        return fl;
      break;
    }
    case Stmt::For: {
      Flow fl = execFor(s, f);
      if (fl != Flow::Normal)
        return fl;
      break;
    }
    case Stmt::Set: assign(*s.target, eval(*s.expr, f), f); break;
    case Stmt::SetBlock:
    case Stmt::FilterBlock: {
      Value text = strValue(capture(s.body, childFrame(f)));
      if (s.expr) {
        const Value *saved = blockInput;
        blockInput = &text;
        try {
          text = eval(*s.expr, f);
        } catch (...) {
          blockInput = saved;
          throw;
        }
        blockInput = saved;
      }
      if (s.kind == Stmt::SetBlock)
        assign(*s.target, text, f);
      else
        write(str(text));
      break;
    }
    case Stmt::Macro: {
      std::weak_ptr<Frame> def = f;
      const Stmt *m = &s;
      f->set(s.text, funcValue(s.text, [m, def](Interp &in, Args &args) {
               return in.callMacro(*m, def, args);
             }));
      break;
    }
    case Stmt::Break: return Flow::Break;
    case Stmt::Continue: return Flow::Continue;
    case Stmt::Block: {
      Flow fl = exec(s.body, f);
      if (fl != Flow::Normal)
        return fl;
      break;
    }
    }
  }
  return Flow::Normal;
}

// ---- Attributes, items, methods -------------------------------------------

Value unsafeAttribute(const Value &obj, const std::string &name) {
  return undefinedValue("access to attribute '" + name + "' of '" + typeName(obj) +
                        "' object is unsafe.");
}

/// Python's str.split(sep, maxsplit) (sep null: runs of whitespace).
std::vector<std::string> pySplit(const std::string &s, const std::string *sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty())
      raise("empty separator");
    size_t from = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t at = s.find(*sep, from);
      if (at == std::string::npos)
        break;
      out.push_back(s.substr(from, at - from));
      from = at + sep->size();
    }
    out.push_back(s.substr(from));
    return out;
  }
  size_t i = 0, len = 0;
  auto skip = [&] {
    while (i < s.size() && isSpace(decode(s, i, &len)))
      i += len;
  };
  skip();
  while (i < s.size()) {
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
      std::string rest = stripChars(s.substr(i), nullptr, false, true);
      out.push_back(rest);
      return out;
    }
    size_t b = i;
    while (i < s.size() && !isSpace(decode(s, i, &len)))
      i += len;
    out.push_back(s.substr(b, i - b));
    skip();
  }
  return out;
}

std::vector<std::string> pyRsplit(const std::string &s, const std::string *sep, int64_t maxsplit) {
  if (maxsplit < 0)
    return pySplit(s, sep, -1);
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty())
      raise("empty separator");
    size_t end = s.size();
    while (static_cast<int64_t>(out.size()) < maxsplit) {
      if (end < sep->size())
        break;
      size_t at = s.rfind(*sep, end - sep->size());
      if (at == std::string::npos)
        break;
      out.push_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    out.push_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  std::vector<size_t> at = charStarts(s);
  size_t e = at.size() - 1, len = 0;
  auto space = [&](size_t k) { return isSpace(decode(s, at[k], &len)); };
  while (e > 0 && space(e - 1))
    --e;
  while (e > 0) {
    if (static_cast<int64_t>(out.size()) >= maxsplit) {
      out.push_back(stripChars(s.substr(0, at[e]), nullptr, true, false));
      break;
    }
    size_t b = e;
    while (b > 0 && !space(b - 1))
      --b;
    out.push_back(s.substr(at[b], at[e] - at[b]));
    e = b;
    while (e > 0 && space(e - 1))
      --e;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string pyReplace(Interp &in, const std::string &s, const std::string &old,
                      const std::string &with, int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    // Python inserts `with` before every character and at the end.
    std::vector<size_t> at = charStarts(s);
    for (size_t k = 0; k < at.size(); ++k) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      if (k + 1 < at.size())
        out.append(s, at[k], at[k + 1] - at[k]);
      in.checkSize(out.size());
    }
    return out;
  }
  size_t from = 0;
  while (count < 0 || done < count) {
    size_t at = s.find(old, from);
    if (at == std::string::npos)
      break;
    out.append(s, from, at - from);
    out += with;
    in.checkSize(out.size());
    from = at + old.size();
    ++done;
  }
  out.append(s, from, std::string::npos);
  return out;
}

std::vector<std::string> pySplitlines(const std::string &s, bool keepends) {
  std::vector<std::string> out;
  size_t b = 0, i = 0, len = 0;
  while (i < s.size()) {
    uint32_t cp = decode(s, i, &len);
    if (isLineBreak(cp)) {
      size_t end = i + len;
      if (cp == '\r' && end < s.size() && s[end] == '\n')
        ++end;
      out.push_back(s.substr(b, (keepends ? end : i) - b));
      b = i = end;
    } else {
      i += len;
    }
  }
  if (b < s.size())
    out.push_back(s.substr(b));
  return out;
}

/// Python's str.title(): a letter after a letter is lowered, others raised.
std::string pyTitle(const std::string &s) {
  std::string out;
  bool prevCased = false;
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    uint32_t cp = decode(s, i, &len);
    bool cased = isCased(cp);
    appendUtf8(out, cased ? (prevCased ? lowerCase(cp) : upperCase(cp)) : cp);
    prevCased = cased;
  }
  return out;
}

std::string pyCapitalize(const std::string &s) {
  std::string out;
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    uint32_t cp = decode(s, i, &len);
    appendUtf8(out, i == 0 ? upperCase(cp) : lowerCase(cp));
  }
  return out;
}

bool pyStartsEnds(const std::string &s, const Value &arg, bool ends) {
  auto one = [&](const Value &p) {
    std::string x = requireStr(p, ends ? "endswith arg" : "startswith arg");
    if (x.size() > s.size())
      return false;
    return ends ? s.compare(s.size() - x.size(), x.size(), x) == 0 : s.compare(0, x.size(), x) == 0;
  };
  if (arg.t == T::List && arg.list->tuple) {
    for (const Value &p : arg.list->items)
      if (one(p))
        return true;
    return false;
  }
  return one(arg);
}

Value listOfStrings(const std::vector<std::string> &parts) {
  std::vector<Value> items;
  for (const auto &p : parts)
    items.push_back(strValue(p));
  return listValue(std::move(items));
}

/// `"text".method`: bound methods of str.
bool strMethod(const Value &self, const std::string &name, Value *out) {
  const std::string s = self.s;
  auto method = [&](Native fn) {
    *out = funcValue("str." + name, std::move(fn));
    return true;
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool front = name != "rstrip", back = name != "lstrip";
    return method([s, front, back, name](Interp &, Args &args) {
      auto v = bindArgs(name.c_str(), args, {{"chars", noneValue()}});
      if (v[0].t == T::None)
        return strValue(stripChars(s, nullptr, front, back));
      std::string chars = requireStr(v[0], (name + " arg").c_str());
      return strValue(stripChars(s, &chars, front, back));
    });
  }
  if (name == "split" || name == "rsplit") {
    bool right = name == "rsplit";
    return method([s, right](Interp &in, Args &args) {
      auto v = bindArgs(right ? "rsplit" : "split", args,
                        {{"sep", noneValue()}, {"maxsplit", intValue(-1)}});
      int64_t max = requireInt(v[1], "maxsplit");
      std::string sep;
      if (v[0].t != T::None)
        sep = requireStr(v[0], "sep");
      auto parts = right ? pyRsplit(s, v[0].t == T::None ? nullptr : &sep, max)
                         : pySplit(s, v[0].t == T::None ? nullptr : &sep, max);
      in.step(parts.size());
      return listOfStrings(parts);
    });
  }
  if (name == "splitlines")
    return method([s](Interp &in, Args &args) {
      auto v = bindArgs("splitlines", args, {{"keepends", boolValue(false)}});
      auto parts = pySplitlines(s, truthy(v[0]));
      in.step(parts.size());
      return listOfStrings(parts);
    });
  if (name == "startswith" || name == "endswith") {
    bool ends = name == "endswith";
    return method([s, ends](Interp &, Args &args) {
      if (args.pos.size() != 1 || !args.kw.empty())
        raise(std::string(ends ? "endswith" : "startswith") + "() takes exactly one argument here");
      return boolValue(pyStartsEnds(s, args.pos[0], ends));
    });
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" ||
      name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
      name == "isupper" || name == "islower")
    return method([s, name](Interp &, Args &args) -> Value {
      bindArgs(name.c_str(), args, {});
      if (name == "upper")
        return strValue(mapChars(s, upperCase));
      if (name == "lower")
        return strValue(mapChars(s, lowerCase));
      if (name == "title")
        return strValue(pyTitle(s));
      if (name == "capitalize")
        return strValue(pyCapitalize(s));
      if (name == "isspace") {
        bool all = !s.empty();
        for (size_t i = 0, len = 0; i < s.size() && all; i += len)
          all = isSpace(decode(s, i, &len));
        return boolValue(all);
      }
      bool all = !s.empty(), cased = false;
      for (unsigned char c : s) {
        if (name == "isdigit")
          all = all && std::isdigit(c);
        else if (name == "isalpha")
          all = all && std::isalpha(c);
        else if (name == "isalnum")
          all = all && std::isalnum(c);
        else if (name == "isupper") {
          all = all && !std::islower(c);
          cased = cased || std::isupper(c);
        } else {
          all = all && !std::isupper(c);
          cased = cased || std::islower(c);
        }
      }
      return boolValue(name == "isupper" || name == "islower" ? all && cased : all);
    });
  if (name == "replace")
    return method([s](Interp &in, Args &args) {
      auto v = bindArgs("replace", args, {{"old", Value()}, {"new", Value()}, {"count", intValue(-1)}});
      return strValue(pyReplace(in, s, requireStr(v[0], "replace() argument 1"),
                                requireStr(v[1], "replace() argument 2"),
                                requireInt(v[2], "count")));
    });
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count")
    return method([s, name](Interp &, Args &args) -> Value {
      auto v = bindArgs(name.c_str(), args, {{"sub", Value()}});
      std::string sub = requireStr(v[0], (name + "() argument").c_str());
      if (name == "count") {
        if (sub.empty())
          return intValue(static_cast<int64_t>(charCount(s) + 1));
        int64_t n = 0;
        for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size()))
          ++n;
        return intValue(n);
      }
      size_t at = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
      if (at == std::string::npos) {
        if (name == "index" || name == "rindex")
          raise("substring not found");
        return intValue(-1);
      }
      return intValue(static_cast<int64_t>(charCount(s.substr(0, at))));
    });
  if (name == "join")
    return method([s](Interp &in, Args &args) {
      auto v = bindArgs("join", args, {{"iterable", Value()}});
      std::string out;
      std::vector<Value> items = iterate(v[0]);
      for (size_t k = 0; k < items.size(); ++k) {
        if (items[k].t != T::Str)
          raise("sequence item " + std::to_string(k) + ": expected str instance, " +
                typeName(items[k]) + " found");
        out += (k ? s : "") + items[k].s;
        in.checkSize(out.size());
      }
      return strValue(out);
    });
  if (name == "removeprefix" || name == "removesuffix")
    return method([s, name](Interp &, Args &args) {
      auto v = bindArgs(name.c_str(), args, {{"affix", Value()}});
      std::string x = requireStr(v[0], (name + "() argument").c_str());
      bool suffix = name == "removesuffix";
      if (x.empty() || !pyStartsEnds(s, v[0], suffix))
        return strValue(s);
      return strValue(suffix ? s.substr(0, s.size() - x.size()) : s.substr(x.size()));
    });
  return false;
}

Value getAttr(Interp &in, const Value &obj, const std::string &name) {
  (void)in;
  switch (obj.t) {
  case T::Undefined: undefinedError(obj);
  case T::Dict: {
    if (name == "get")
      return funcValue("dict.get", [obj](Interp &, Args &args) {
        auto v = bindArgs("get", args, {{"key", Value()}, {"default", noneValue()}});
        const Value *x = dictFind(*obj.dict, v[0]);
        return x ? *x : v[1];
      });
    if (name == "items" || name == "keys" || name == "values")
      return funcValue("dict." + name, [obj, name](Interp &in, Args &args) {
        bindArgs(name.c_str(), args, {});
        std::vector<Value> items;
        for (const auto &[k, x] : obj.dict->items)
          items.push_back(name == "keys" ? k : name == "values" ? x : listValue({k, x}, true));
        in.step(items.size());
        return listValue(std::move(items));
      });
    if (name == "pop" || name == "popitem" || name == "setdefault" || name == "update" ||
        name == "clear")
      return unsafeAttribute(obj, name);
    if (const Value *v = dictFind(*obj.dict, name))
      return *v;
    return missingAttribute(obj, name);
  }
  case T::Str: {
    Value m;
    if (strMethod(obj, name, &m))
      return m;
    return missingAttribute(obj, name);
  }
  case T::List: {
    if (!obj.list->tuple &&
        (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
         name == "remove" || name == "reverse" || name == "sort" || name == "clear"))
      return unsafeAttribute(obj, name);
    if (name == "index" || name == "count")
      return funcValue("list." + name, [obj, name](Interp &, Args &args) {
        auto v = bindArgs(name.c_str(), args, {{"value", Value()}});
        int64_t n = 0;
        for (size_t k = 0; k < obj.list->items.size(); ++k)
          if (equals(obj.list->items[k], v[0])) {
            if (name == "index")
              return intValue(static_cast<int64_t>(k));
            ++n;
          }
        if (name == "index")
          raise(repr(v[0]) + " is not in list");
        return intValue(n);
      });
    return missingAttribute(obj, name);
  }
  case T::Object:
    for (const auto &kv : obj.obj->attrs)
      if (kv.first == name)
        return kv.second;
    return missingAttribute(obj, name);
  default: return missingAttribute(obj, name);
  }
}

Value getItem(Interp &in, const Value &obj, const Value &key) {
  if (obj.t == T::Undefined)
    undefinedError(obj);
  if (key.t == T::Undefined && obj.t != T::Dict)
    undefinedError(key);
  switch (obj.t) {
  case T::List:
    if (isIntLike(key)) {
      int64_t n = static_cast<int64_t>(obj.list->items.size()), k = asInt(key);
      if (k < 0)
        k += n;
      if (k >= 0 && k < n)
        return obj.list->items[k];
    }
    break;
  case T::Str:
    if (isIntLike(key)) {
      std::vector<size_t> at = charStarts(obj.s);
      int64_t n = static_cast<int64_t>(at.size()) - 1, k = asInt(key);
      if (k < 0)
        k += n;
      if (k >= 0 && k < n)
        return strValue(obj.s.substr(at[k], at[k + 1] - at[k]));
    }
    break;
  case T::Dict:
    if (const Value *v = dictFind(*obj.dict, key))
      return *v;
    break;
  default: break;
  }
  if (key.t == T::Str)
    return getAttr(in, obj, key.s);
  return undefinedValue(objectTypeRepr(obj) + " has no element " + repr(key));
}

// ---- Operators ------------------------------------------------------------

int64_t checkedInt(bool overflow, int64_t v) {
  if (overflow)
    raise("integer overflow (this runtime's integers are 64-bit)");
  return v;
}

/// printf-style `text % args` (and the `format` filter): %s %r %d %i %f %%.
std::string percentFormat(const std::string &fmt, const Value &args) {
  std::vector<Value> items;
  if (args.t == T::List && args.list->tuple)
    items = args.list->items;
  else
    items.push_back(args);
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size())
      raise("incomplete format");
    char c = fmt[i];
    if (c == '%') {
      out += '%';
      continue;
    }
    if (next >= items.size())
      raise("not enough arguments for format string");
    const Value &v = items[next++];
    if (c == 's')
      out += str(v);
    else if (c == 'r')
      out += repr(v);
    else if (c == 'd' || c == 'i') {
      if (!isNumber(v))
        raise("%" + std::string(1, c) + " format: a real number is required, not " + typeName(v));
      out += std::to_string(v.t == T::Float ? static_cast<int64_t>(v.f) : asInt(v));
    } else if (c == 'f') {
      if (!isNumber(v))
        raise("must be real number, not " + typeName(v));
      char buf[64];
      std::snprintf(buf, sizeof buf, "%f", asDouble(v));
      out += buf;
    } else {
      raise(std::string("unsupported format character '") + c + "'");
    }
  }
  if (next < items.size())
    raise("not all arguments converted during string formatting");
  return out;
}

Value arith(Interp &in, const std::string &op, const Value &a, const Value &b) {
  if (a.t == T::Undefined)
    undefinedError(a);
  if (b.t == T::Undefined)
    undefinedError(b);
  if (isNumber(a) && isNumber(b)) {
    bool fl = a.t == T::Float || b.t == T::Float;
    double x = asDouble(a), y = asDouble(b);
    int64_t i = asInt(a), j = asInt(b), r = 0;
    // The overflow test runs before r is read (the order of a call's
    // arguments is unspecified: GCC reads r first).
    if (op == "+") {
      if (fl)
        return floatValue(x + y);
      bool overflow = __builtin_add_overflow(i, j, &r);
      return intValue(checkedInt(overflow, r));
    }
    if (op == "-") {
      if (fl)
        return floatValue(x - y);
      bool overflow = __builtin_sub_overflow(i, j, &r);
      return intValue(checkedInt(overflow, r));
    }
    if (op == "*") {
      if (fl)
        return floatValue(x * y);
      bool overflow = __builtin_mul_overflow(i, j, &r);
      return intValue(checkedInt(overflow, r));
    }
    if (op == "/") {
      if (y == 0)
        raise("division by zero");
      return floatValue(x / y);
    }
    if (op == "//" || op == "%") {
      if (fl) {
        if (y == 0)
          raise(op == "//" ? "float floor division by zero" : "float modulo");
        double m = std::fmod(x, y);
        if (m != 0 && ((m < 0) != (y < 0)))
          m += y;
        return floatValue(op == "%" ? m : std::round((x - m) / y));
      }
      if (j == 0)
        raise("integer division or modulo by zero");
      if (i == INT64_MIN && j == -1)
        raise("integer overflow (this runtime's integers are 64-bit)");
      int64_t q = i / j, m = i % j;
      if (m != 0 && ((m < 0) != (j < 0))) {
        --q;
        m += j;
      }
      return intValue(op == "//" ? q : m);
    }
    if (op == "**") {
      if (fl || j < 0)
        return floatValue(std::pow(x, y));
      int64_t result = 1;
      for (int64_t k = 0; k < j; ++k) {
        bool overflow = __builtin_mul_overflow(result, i, &result);
        result = checkedInt(overflow, result);
        if (result == 0 || result == 1)
          break;
        if (result == -1 && ((j - k - 1) % 2 == 0))
          break;
      }
      return intValue(result);
    }
  }
  if (op == "+") {
    if (a.t == T::Str && b.t == T::Str) {
      in.checkSize(a.s.size() + b.s.size());
      if (a.safe || b.safe)
        return strValue((a.safe ? a.s : htmlEscape(a.s)) + (b.safe ? b.s : htmlEscape(b.s)), true);
      return strValue(a.s + b.s);
    }
    if (a.t == T::List && b.t == T::List && a.list->tuple == b.list->tuple) {
      std::vector<Value> items = a.list->items;
      in.step(items.size() + b.list->items.size());
      items.insert(items.end(), b.list->items.begin(), b.list->items.end());
      return listValue(std::move(items), a.list->tuple);
    }
    if (a.t == T::Str || a.t == T::List)
      raise("can only concatenate " + typeName(a) + " (not \"" + typeName(b) + "\") to " +
            typeName(a));
  }
  if (op == "*") {
    const Value *seq = a.t == T::Str || a.t == T::List ? &a : &b;
    const Value *count = seq == &a ? &b : &a;
    if ((seq->t == T::Str || seq->t == T::List) && isIntLike(*count)) {
      int64_t n = std::max<int64_t>(0, asInt(*count));
      size_t unit = seq->t == T::Str ? seq->s.size() : seq->list->items.size();
      if (unit && static_cast<uint64_t>(n) > in.opts.limits.maxOutput / unit)
        in.checkSize(SIZE_MAX);
      if (seq->t == T::Str) {
        std::string out;
        for (int64_t k = 0; k < n; ++k)
          out += seq->s;
        return strValue(out);
      }
      in.step(unit * n);
      std::vector<Value> items;
      for (int64_t k = 0; k < n; ++k)
        items.insert(items.end(), seq->list->items.begin(), seq->list->items.end());
      return listValue(std::move(items), seq->list->tuple);
    }
  }
  if (op == "%" && a.t == T::Str)
    return strValue(percentFormat(a.s, b));
  raise("unsupported operand type(s) for " + op + ": '" + typeName(a) + "' and '" + typeName(b) +
        "'");
}

} // namespace moir::rt::chat::detail

namespace moir::rt::chat::detail {

// ---- Filters --------------------------------------------------------------

/// jinja2's attribute getter of filters (map, selectattr, sort, ...): items
/// first, dotted paths, integer parts as indices.
Value attrPath(Interp &in, const Value &item, const Value &attribute) {
  if (attribute.t != T::Str)
    return getItem(in, item, attribute);
  Value v = item;
  size_t from = 0;
  while (true) {
    size_t dot = attribute.s.find('.', from);
    std::string part = attribute.s.substr(from, dot == std::string::npos ? std::string::npos : dot - from);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) {
      return std::isdigit(static_cast<unsigned char>(c));
    });
    v = getItem(in, v, digits ? intValue(std::strtoll(part.c_str(), nullptr, 10)) : strValue(part));
    if (dot == std::string::npos)
      return v;
    from = dot + 1;
  }
}

Value fLength(Interp &, const Value &v, Args &args) {
  bindArgs("length", args, {});
  switch (v.t) {
  case T::Undefined: return intValue(0);
  case T::Str: return intValue(static_cast<int64_t>(charCount(v.s)));
  case T::List: return intValue(static_cast<int64_t>(v.list->items.size()));
  case T::Dict: return intValue(static_cast<int64_t>(v.dict->items.size()));
  default: raise("object of type '" + typeName(v) + "' has no len()");
  }
}

Value fTrim(Interp &, const Value &v, Args &args) {
  auto a = bindArgs("trim", args, {{"chars", noneValue()}});
  std::string s = str(v);
  if (a[0].t == T::None)
    return strValue(stripChars(s, nullptr, true, true), v.safe);
  std::string chars = requireStr(a[0], "trim chars");
  return strValue(stripChars(s, &chars, true, true), v.safe);
}

Value fUpper(Interp &, const Value &v, Args &args) {
  bindArgs("upper", args, {});
  return strValue(mapChars(str(v), upperCase));
}
Value fLower(Interp &, const Value &v, Args &args) {
  bindArgs("lower", args, {});
  return strValue(mapChars(str(v), lowerCase));
}
Value fCapitalize(Interp &, const Value &v, Args &args) {
  bindArgs("capitalize", args, {});
  return strValue(pyCapitalize(str(v)));
}
/// jinja2's title: words begin after '-', whitespace, '(', '{', '[', '<'.
Value fTitle(Interp &, const Value &v, Args &args) {
  bindArgs("title", args, {});
  std::string s = str(v), out;
  bool begin = true;
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    uint32_t cp = decode(s, i, &len);
    bool sep = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || isSpace(cp);
    if (sep) {
      begin = true;
      out.append(s, i, len);
      continue;
    }
    appendUtf8(out, begin ? upperCase(cp) : lowerCase(cp));
    begin = false;
  }
  return strValue(out);
}

Value fString(Interp &, const Value &v, Args &args) {
  bindArgs("string", args, {});
  return v.t == T::Str ? v : strValue(str(v));
}

Value fSafe(Interp &, const Value &v, Args &args) {
  bindArgs("safe", args, {});
  return strValue(str(v), true);
}

Value fEscape(Interp &, const Value &v, Args &args) {
  bindArgs("escape", args, {});
  if (v.t == T::Str && v.safe)
    return v;
  return strValue(htmlEscape(str(v)), true);
}

Value fDefault(Interp &, const Value &v, Args &args) {
  auto a = bindArgs("default", args, {{"default_value", strValue("")}, {"boolean", boolValue(false)}});
  if (v.t == T::Undefined || (truthy(a[1]) && !truthy(v)))
    return a[0];
  return v;
}

Value fTojson(Interp &in, const Value &v, Args &args) {
  auto a = bindArgs("tojson", args,
                    {{"ensure_ascii", boolValue(false)},
                     {"indent", noneValue()},
                     {"separators", noneValue()},
                     {"sort_keys", boolValue(false)}});
  JsonOptions o;
  o.ensureAscii = truthy(a[0]);
  if (a[1].t != T::None) {
    o.indented = true;
    if (a[1].t == T::Str)
      o.indent = a[1].s;
    else
      o.indent.assign(static_cast<size_t>(std::max<int64_t>(0, requireInt(a[1], "indent"))), ' ');
    o.itemSeparator = ",";
  }
  if (a[2].t != T::None) {
    std::vector<Value> seps = iterate(a[2]);
    if (seps.size() != 2)
      raise("tojson separators: expected (item_separator, key_separator)");
    o.itemSeparator = requireStr(seps[0], "item separator");
    o.keySeparator = requireStr(seps[1], "key separator");
  }
  o.sortKeys = truthy(a[3]);
  std::string out;
  toJson(out, v, o, 0, in.opts.limits.maxOutput);
  return strValue(out);
}

Value fJoin(Interp &in, const Value &v, Args &args) {
  auto a = bindArgs("join", args, {{"d", strValue("")}, {"attribute", noneValue()}});
  std::string sep = str(a[0]), out;
  std::vector<Value> items = iterate(v);
  in.step(items.size());
  for (size_t k = 0; k < items.size(); ++k) {
    Value item = a[1].t == T::None ? items[k] : attrPath(in, items[k], a[1]);
    out += (k ? sep : "") + str(item);
    in.checkSize(out.size());
  }
  return strValue(out);
}

Value fFirst(Interp &, const Value &v, Args &args) {
  bindArgs("first", args, {});
  std::vector<Value> items = iterate(v);
  return items.empty() ? undefinedValue("No first item, sequence was empty.") : items.front();
}

Value fLast(Interp &, const Value &v, Args &args) {
  bindArgs("last", args, {});
  std::vector<Value> items = iterate(v);
  return items.empty() ? undefinedValue("No last item, sequence was empty.") : items.back();
}

Value fReplace(Interp &in, const Value &v, Args &args) {
  auto a = bindArgs("replace", args, {{"old", Value()}, {"new", Value()}, {"count", noneValue()}});
  int64_t count = a[2].t == T::None ? -1 : requireInt(a[2], "count");
  return strValue(pyReplace(in, str(v), str(a[0]), str(a[1]), count));
}

/// Python's int(text) for a string (whitespace, sign, underscores).
bool parseIntText(const std::string &text, int base, int64_t *out) {
  std::string s = stripChars(text, nullptr, true, true), digits;
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-'))
    negative = s[i++] == '-';
  if (base == 16 && s.compare(i, 2, "0x") == 0)
    i += 2;
  for (; i < s.size(); ++i) {
    if (s[i] == '_' && !digits.empty() && i + 1 < s.size() && s[i + 1] != '_')
      continue;
    digits += s[i];
  }
  if (digits.empty() || base < 2 || base > 36)
    return false;
  errno = 0;
  char *end = nullptr;
  long long v = std::strtoll(digits.c_str(), &end, base);
  if (*end || errno == ERANGE || digits[0] == '+' || digits[0] == '-' || std::isspace(static_cast<unsigned char>(digits[0])))
    return false;
  *out = negative ? -v : v;
  return true;
}

bool parseFloatText(const std::string &text, double *out) {
  std::string s = stripChars(text, nullptr, true, true), clean;
  for (char c : s)
    if (c != '_')
      clean += c;
  if (clean.empty())
    return false;
  char *end = nullptr;
  double d = std::strtod(clean.c_str(), &end);
  if (*end || std::isspace(static_cast<unsigned char>(clean[0])))
    return false;
  *out = d;
  return true;
}

Value fInt(Interp &, const Value &v, Args &args) {
  auto a = bindArgs("int", args, {{"default", intValue(0)}, {"base", intValue(10)}});
  switch (v.t) {
  case T::Int: return v;
  case T::Bool: return intValue(v.b);
  case T::Float:
    if (!std::isfinite(v.f) || std::fabs(v.f) >= 9.2e18)
      return a[0];
    return intValue(static_cast<int64_t>(v.f));
  case T::Str: {
    int64_t i = 0;
    if (parseIntText(v.s, static_cast<int>(requireInt(a[1], "base")), &i))
      return intValue(i);
    double d = 0;
    if (parseFloatText(v.s, &d) && std::isfinite(d) && std::fabs(d) < 9.2e18)
      return intValue(static_cast<int64_t>(d));
    return a[0];
  }
  default: return a[0];
  }
}

Value fFloat(Interp &, const Value &v, Args &args) {
  auto a = bindArgs("float", args, {{"default", floatValue(0.0)}});
  if (isNumber(v))
    return floatValue(asDouble(v));
  double d = 0;
  if (v.t == T::Str && parseFloatText(v.s, &d))
    return floatValue(d);
  return a[0];
}

Value fList(Interp &in, const Value &v, Args &args) {
  bindArgs("list", args, {});
  std::vector<Value> items = iterate(v);
  in.step(items.size());
  return listValue(std::move(items));
}

Value fItems(Interp &in, const Value &v, Args &args) {
  bindArgs("items", args, {});
  if (v.t == T::Undefined)
    return listValue({});
  if (v.t != T::Dict)
    raise("Can only get item pairs from a mapping.");
  std::vector<Value> items;
  for (const auto &[k, x] : v.dict->items)
    items.push_back(listValue({k, x}, true));
  in.step(items.size());
  return listValue(std::move(items));
}

Value fAbs(Interp &, const Value &v, Args &args) {
  bindArgs("abs", args, {});
  if (v.t == T::Float)
    return floatValue(std::fabs(v.f));
  if (isIntLike(v)) {
    if (asInt(v) == INT64_MIN)
      raise("integer overflow (this runtime's integers are 64-bit)");
    return intValue(std::llabs(asInt(v)));
  }
  if (v.t == T::Undefined)
    undefinedError(v);
  raise("bad operand type for abs(): '" + typeName(v) + "'");
}

Value fRound(Interp &, const Value &v, Args &args) {
  auto a = bindArgs("round", args, {{"precision", intValue(0)}, {"method", strValue("common")}});
  int64_t p = requireInt(a[0], "precision");
  std::string method = requireStr(a[1], "method");
  if (method != "common" && method != "ceil" && method != "floor")
    raise("method must be common, ceil or floor");
  if (v.t == T::Undefined)
    undefinedError(v);
  if (!isNumber(v))
    raise("type " + typeName(v) + " doesn't define __round__ method");
  if (method == "common" && isIntLike(v))
    return intValue(asInt(v));
  double x = asDouble(v), scale = std::pow(10.0, static_cast<double>(p));
  if (method == "ceil")
    return floatValue(std::ceil(x * scale) / scale);
  if (method == "floor")
    return floatValue(std::floor(x * scale) / scale);
  // Python's round(): halves to even, on the decimal value.
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::clamp<int64_t>(p, 0, 30)), x);
  double r = p >= 0 ? std::strtod(buf, nullptr) : std::nearbyint(x * scale) / scale;
  return floatValue(r);
}

/// Sort key comparison for sort/dictsort/unique: strings case-folded
/// (ASCII) unless case_sensitive.
Value sortKey(const Value &v, bool caseSensitive) {
  if (!caseSensitive && v.t == T::Str)
    return strValue(mapChars(v.s, lowerCase));
  return v;
}

Value fDictsort(Interp &in, const Value &v, Args &args) {
  auto a = bindArgs("dictsort", args,
                    {{"case_sensitive", boolValue(false)}, {"by", strValue("key")},
                     {"reverse", boolValue(false)}});
  if (v.t != T::Dict)
    raise("dictsort: expected a mapping, got " + typeName(v));
  std::string by = requireStr(a[1], "by");
  if (by != "key" && by != "value")
    raise("You can only sort by either 'key' or 'value'");
  bool cs = truthy(a[0]), rev = truthy(a[2]);
  std::vector<std::pair<Value, Value>> items = v.dict->items;
  in.step(items.size());
  stableSort(items, [&](const auto &x, const auto &y) {
    const Value &p = by == "key" ? x.first : x.second, &q = by == "key" ? y.first : y.second;
    int c = compare(sortKey(p, cs), sortKey(q, cs), "<");
    return rev ? c > 0 : c < 0;
  });
  std::vector<Value> out;
  for (auto &[k, x] : items)
    out.push_back(listValue({k, x}, true));
  return listValue(std::move(out));
}

Value fSort(Interp &in, const Value &v, Args &args) {
  auto a = bindArgs("sort", args,
                    {{"reverse", boolValue(false)}, {"case_sensitive", boolValue(false)},
                     {"attribute", noneValue()}});
  std::vector<Value> items = iterate(v);
  in.step(items.size());
  bool rev = truthy(a[0]), cs = truthy(a[1]);
  auto key = [&](const Value &x) {
    return sortKey(a[2].t == T::None ? x : attrPath(in, x, a[2]), cs);
  };
  stableSort(items, [&](const Value &x, const Value &y) {
    int c = compare(key(x), key(y), "<");
    return rev ? c > 0 : c < 0;
  });
  return listValue(std::move(items));
}

Value fUnique(Interp &in, const Value &v, Args &args) {
  auto a = bindArgs("unique", args, {{"case_sensitive", boolValue(false)}, {"attribute", noneValue()}});
  std::vector<Value> items = iterate(v), out, seen;
  in.step(items.size() * std::max<size_t>(1, items.size() / 64));
  for (const Value &x : items) {
    Value k = sortKey(a[1].t == T::None ? x : attrPath(in, x, a[1]), truthy(a[0]));
    bool dup = false;
    for (const Value &s : seen)
      dup = dup || equals(s, k);
    if (!dup) {
      seen.push_back(k);
      out.push_back(x);
    }
  }
  return listValue(std::move(out));
}

Value fReverse(Interp &in, const Value &v, Args &args) {
  bindArgs("reverse", args, {});
  if (v.t == T::Str) {
    std::vector<size_t> at = charStarts(v.s);
    std::string out;
    for (size_t k = at.size() - 1; k > 0; --k)
      out.append(v.s, at[k - 1], at[k] - at[k - 1]);
    return strValue(out);
  }
  std::vector<Value> items = iterate(v);
  in.step(items.size());
  std::reverse(items.begin(), items.end());
  return listValue(std::move(items));
}

Value fIndent(Interp &in, const Value &v, Args &args) {
  auto a = bindArgs("indent", args,
                    {{"width", intValue(4)}, {"first", boolValue(false)}, {"blank", boolValue(false)}});
  std::string indent = a[0].t == T::Str
                           ? a[0].s
                           : std::string(static_cast<size_t>(std::max<int64_t>(0, requireInt(a[0], "width"))), ' ');
  std::vector<std::string> lines = pySplitlines(str(v) + "\n", false);
  std::string out;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k == 0) {
      out = lines[0];
      continue;
    }
    out += "\n";
    if (truthy(a[2]) || !lines[k].empty())
      out += indent;
    out += lines[k];
    in.checkSize(out.size());
  }
  if (truthy(a[1]))
    out = indent + out;
  return strValue(out);
}

Value fCenter(Interp &, const Value &v, Args &args) {
  auto a = bindArgs("center", args, {{"width", intValue(80)}});
  std::string s = str(v);
  int64_t width = std::min<int64_t>(requireInt(a[0], "width"), 1 << 20), n = static_cast<int64_t>(charCount(s));
  if (width <= n)
    return strValue(s);
  int64_t pad = width - n, left = pad / 2 + (pad & width & 1);
  return strValue(std::string(left, ' ') + s + std::string(pad - left, ' '));
}

Value fFormat(Interp &, const Value &v, Args &args) {
  if (!args.kw.empty())
    raise("format: keyword arguments are not supported");
  return strValue(percentFormat(str(v), listValue(args.pos, true)));
}

Value fSum(Interp &in, const Value &v, Args &args) {
  auto a = bindArgs("sum", args, {{"attribute", noneValue()}, {"start", intValue(0)}});
  Value total = a[1];
  for (const Value &x : iterate(v)) {
    in.step();
    total = arith(in, "+", total, a[0].t == T::None ? x : attrPath(in, x, a[0]));
  }
  return total;
}

Value minMax(Interp &in, const Value &v, Args &args, bool max) {
  auto a = bindArgs(max ? "max" : "min", args, {{"case_sensitive", boolValue(false)}, {"attribute", noneValue()}});
  std::vector<Value> items = iterate(v);
  in.step(items.size());
  if (items.empty())
    return undefinedValue(std::string("No aggregated item, sequence was empty."));
  size_t best = 0;
  auto key = [&](const Value &x) {
    return sortKey(a[1].t == T::None ? x : attrPath(in, x, a[1]), truthy(a[0]));
  };
  for (size_t k = 1; k < items.size(); ++k) {
    int c = compare(key(items[k]), key(items[best]), "<");
    if (max ? c > 0 : c < 0)
      best = k;
  }
  return items[best];
}
Value fMax(Interp &in, const Value &v, Args &args) { return minMax(in, v, args, true); }
Value fMin(Interp &in, const Value &v, Args &args) { return minMax(in, v, args, false); }

/// select/reject(seq, test, args...) and selectattr/rejectattr(seq, attr,
/// test, args...): without a test, the value's truth.
Value selectImpl(Interp &in, const Value &v, Args &args, bool attr, bool keep) {
  if (!args.kw.empty())
    raise("select filters take no keyword arguments");
  std::vector<Value> rest = args.pos;
  Value attribute;
  if (attr) {
    if (rest.empty())
      raise("Missing parameter for attribute name");
    attribute = rest.front();
    rest.erase(rest.begin());
  }
  std::string test;
  if (!rest.empty()) {
    test = requireStr(rest.front(), "test name");
    rest.erase(rest.begin());
  }
  std::vector<Value> out;
  std::vector<Value> items = iterate(v);
  in.step(items.size());
  for (const Value &item : items) {
    Value x = attr ? attrPath(in, item, attribute) : item;
    bool ok;
    if (test.empty()) {
      ok = truthy(x);
    } else {
      Args targs;
      targs.pos = rest;
      ok = runTest(in, test, x, targs);
    }
    if (ok == keep)
      out.push_back(item);
  }
  return listValue(std::move(out));
}
Value fSelect(Interp &in, const Value &v, Args &a) { return selectImpl(in, v, a, false, true); }
Value fReject(Interp &in, const Value &v, Args &a) { return selectImpl(in, v, a, false, false); }
Value fSelectattr(Interp &in, const Value &v, Args &a) { return selectImpl(in, v, a, true, true); }
Value fRejectattr(Interp &in, const Value &v, Args &a) { return selectImpl(in, v, a, true, false); }

/// map(attribute=..., default=...) or map(filter, args...).
Value fMap(Interp &in, const Value &v, Args &args) {
  std::vector<Value> items = iterate(v), out;
  in.step(items.size());
  bool byAttribute = false;
  Value attribute, dflt;
  bool hasDefault = false;
  for (auto &[k, x] : args.kw) {
    if (k == "attribute") {
      byAttribute = true;
      attribute = x;
    } else if (k == "default") {
      hasDefault = true;
      dflt = x;
    }
  }
  if (byAttribute) {
    for (const Value &item : items) {
      Value x = attrPath(in, item, attribute);
      out.push_back(x.t == T::Undefined && hasDefault ? dflt : x);
    }
    return listValue(std::move(out));
  }
  if (args.pos.empty())
    raise("map requires a filter argument");
  std::string name = requireStr(args.pos[0], "map filter name");
  Args fargs;
  fargs.pos.assign(args.pos.begin() + 1, args.pos.end());
  fargs.kw = args.kw;
  for (const Value &item : items) {
    Args copy = fargs;
    out.push_back(runFilter(in, name, item, copy));
  }
  return listValue(std::move(out));
}

Value fAttr(Interp &in, const Value &v, Args &args) {
  auto a = bindArgs("attr", args, {{"name", Value()}});
  return getAttr(in, v, requireStr(a[0], "attribute name"));
}

/// Python's \w, approximately beyond ASCII: letters and digits of every
/// script, not the common punctuation, symbol and emoji blocks.
bool isWordChar(uint32_t cp) {
  if (cp < 0x80)
    return std::isalnum(static_cast<int>(cp)) || cp == '_';
  if (isSpace(cp) || (cp >= 0xA1 && cp <= 0xBF && cp != 0xAA && cp != 0xB2 && cp != 0xB3 &&
                      cp != 0xB5 && cp != 0xB9 && cp != 0xBA && cp < 0xBC) ||
      cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x2BFF) || (cp >= 0x3000 && cp <= 0x303F) ||
      (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF01 && cp <= 0xFF0F) ||
      (cp >= 0x1F000 && cp <= 0x1FAFF))
    return false;
  return true;
}

/// jinja2's wordcount: the runs of \w.
Value fWordcount(Interp &, const Value &v, Args &args) {
  bindArgs("wordcount", args, {});
  std::string s = str(v);
  int64_t n = 0;
  bool inWord = false;
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    bool w = isWordChar(decode(s, i, &len));
    n += w && !inWord;
    inWord = w;
  }
  return intValue(n);
}

const std::map<std::string, FilterFn> &filters() {
  static const std::map<std::string, FilterFn> table = {
      {"abs", fAbs},           {"attr", fAttr},         {"capitalize", fCapitalize},
      {"center", fCenter},     {"count", fLength},      {"d", fDefault},
      {"default", fDefault},   {"dictsort", fDictsort}, {"e", fEscape},
      {"escape", fEscape},     {"first", fFirst},       {"float", fFloat},
      {"format", fFormat},     {"indent", fIndent},     {"int", fInt},
      {"items", fItems},       {"join", fJoin},         {"last", fLast},
      {"length", fLength},     {"list", fList},         {"lower", fLower},
      {"map", fMap},           {"max", fMax},           {"min", fMin},
      {"reject", fReject},     {"rejectattr", fRejectattr}, {"replace", fReplace},
      {"reverse", fReverse},   {"round", fRound},       {"safe", fSafe},
      {"select", fSelect},     {"selectattr", fSelectattr}, {"sort", fSort},
      {"string", fString},     {"sum", fSum},           {"title", fTitle},
      {"tojson", fTojson},     {"trim", fTrim},         {"unique", fUnique},
      {"upper", fUpper},       {"wordcount", fWordcount},
  };
  return table;
}

FilterFn findFilter(const std::string &name) {
  auto it = filters().find(name);
  return it == filters().end() ? nullptr : it->second;
}

Value runFilter(Interp &in, const std::string &name, const Value &v, Args &args) {
  FilterFn f = findFilter(name);
  if (!f)
    raise("No filter named '" + name + "' found.");
  return f(in, v, args);
}

// ---- Tests ----------------------------------------------------------------

Value oneArg(const char *test, Args &args) {
  auto a = bindArgs(test, args, {{"other", Value()}});
  return a[0];
}

#define MOIR_TEST(name, expr)                                                                    \
  bool t_##name(Interp &in, const Value &v, Args &args) {                                        \
    (void)in;                                                                                    \
    (void)args;                                                                                  \
    return expr;                                                                                 \
  }

MOIR_TEST(defined, (bindArgs("defined", args, {}), v.t != T::Undefined))
MOIR_TEST(undefined, (bindArgs("undefined", args, {}), v.t == T::Undefined))
MOIR_TEST(none, (bindArgs("none", args, {}), v.t == T::None))
MOIR_TEST(boolean, (bindArgs("boolean", args, {}), v.t == T::Bool))
MOIR_TEST(true_, (bindArgs("true", args, {}), v.t == T::Bool && v.b))
MOIR_TEST(false_, (bindArgs("false", args, {}), v.t == T::Bool && !v.b))
MOIR_TEST(string, (bindArgs("string", args, {}), v.t == T::Str))
MOIR_TEST(number, (bindArgs("number", args, {}), isNumber(v)))
MOIR_TEST(integer, (bindArgs("integer", args, {}), v.t == T::Int))
MOIR_TEST(float_, (bindArgs("float", args, {}), v.t == T::Float))
MOIR_TEST(mapping, (bindArgs("mapping", args, {}), v.t == T::Dict))
// Python: anything with len() and [] (str, list, tuple, dict, and jinja2's
// Undefined).
MOIR_TEST(sequence, (bindArgs("sequence", args, {}),
                     v.t == T::Str || v.t == T::List || v.t == T::Dict || v.t == T::Undefined))
MOIR_TEST(iterable, (bindArgs("iterable", args, {}),
                     v.t == T::Str || v.t == T::List || v.t == T::Dict || v.t == T::Undefined))
MOIR_TEST(callable, (bindArgs("callable", args, {}), v.t == T::Func))
MOIR_TEST(escaped, (bindArgs("escaped", args, {}), v.t == T::Str && v.safe))
MOIR_TEST(eq, equals(v, oneArg("eq", args)))
MOIR_TEST(ne, !equals(v, oneArg("ne", args)))
MOIR_TEST(lt, compare(v, oneArg("lt", args), "<") < 0)
MOIR_TEST(le, compare(v, oneArg("le", args), "<=") <= 0)
MOIR_TEST(gt, compare(v, oneArg("gt", args), ">") > 0)
MOIR_TEST(ge, compare(v, oneArg("ge", args), ">=") >= 0)
MOIR_TEST(in, contains(oneArg("in", args), v))
MOIR_TEST(lower, (bindArgs("lower", args, {}), v.t == T::Str && mapChars(v.s, lowerCase) == v.s))
MOIR_TEST(upper, (bindArgs("upper", args, {}), v.t == T::Str && mapChars(v.s, upperCase) == v.s))
MOIR_TEST(filter, (bindArgs("filter", args, {}), v.t == T::Str && findFilter(v.s) != nullptr))

bool t_sameas(Interp &, const Value &v, Args &args) {
  Value o = oneArg("sameas", args);
  if (v.t != o.t)
    return false;
  switch (v.t) {
  case T::None:
  case T::Undefined: return v.t == T::None || v.s == o.s;
  case T::Bool: return v.b == o.b;
  case T::List: return v.list == o.list;
  case T::Dict: return v.dict == o.dict;
  case T::Object: return v.obj == o.obj;
  case T::Func: return v.fn == o.fn;
  default: return equals(v, o);
  }
}

int64_t intForTest(const Value &v, const char *test) {
  if (v.t == T::Undefined)
    undefinedError(v);
  if (!isIntLike(v))
    raise(std::string(test) + ": expected an integer, got " + typeName(v));
  return asInt(v);
}
MOIR_TEST(odd, (bindArgs("odd", args, {}), intForTest(v, "odd") % 2 != 0))
MOIR_TEST(even, (bindArgs("even", args, {}), intForTest(v, "even") % 2 == 0))

bool t_divisibleby(Interp &, const Value &v, Args &args) {
  int64_t n = intForTest(oneArg("divisibleby", args), "divisibleby");
  if (n == 0)
    raise("integer division or modulo by zero");
  return intForTest(v, "divisibleby") % n == 0;
}

bool t_test(Interp &, const Value &v, Args &args);

const std::map<std::string, TestFn> &tests() {
  static const std::map<std::string, TestFn> table = {
      {"boolean", t_boolean},   {"callable", t_callable}, {"defined", t_defined},
      {"divisibleby", t_divisibleby}, {"eq", t_eq},       {"equalto", t_eq},
      {"==", t_eq},             {"escaped", t_escaped},   {"even", t_even},
      {"false", t_false_},      {"filter", t_filter},     {"float", t_float_},
      {"ge", t_ge},             {">=", t_ge},             {"gt", t_gt},
      {"greaterthan", t_gt},    {">", t_gt},              {"in", t_in},
      {"integer", t_integer},   {"iterable", t_iterable}, {"le", t_le},
      {"<=", t_le},             {"lower", t_lower},       {"lt", t_lt},
      {"lessthan", t_lt},       {"<", t_lt},              {"mapping", t_mapping},
      {"ne", t_ne},             {"!=", t_ne},             {"none", t_none},
      {"number", t_number},     {"odd", t_odd},           {"sameas", t_sameas},
      {"sequence", t_sequence}, {"string", t_string},     {"test", t_test},
      {"true", t_true_},        {"undefined", t_undefined}, {"upper", t_upper},
  };
  return table;
}

bool t_test(Interp &, const Value &v, Args &args) {
  bindArgs("test", args, {});
  return v.t == T::Str && tests().count(v.s) != 0;
}

TestFn findTest(const std::string &name) {
  auto it = tests().find(name);
  return it == tests().end() ? nullptr : it->second;
}

bool runTest(Interp &in, const std::string &name, const Value &v, Args &args) {
  TestFn t = findTest(name);
  if (!t)
    raise("No test named '" + name + "' found.");
  return t(in, v, args);
}

// ---- Globals --------------------------------------------------------------

void addGlobals(Interp &in, Frame &root) {
  root.set("raise_exception", funcValue("raise_exception", [](Interp &, Args &args) -> Value {
             auto a = bindArgs("raise_exception", args, {{"message", strValue("")}});
             raise(str(a[0]), ErrorKind::Raised);
           }));
  root.set("strftime_now", funcValue("strftime_now", [](Interp &in, Args &args) {
             auto a = bindArgs("strftime_now", args, {{"format", Value()}});
             std::string format = requireStr(a[0], "strftime_now() argument");
             std::tm now{};
             if (in.opts.now) {
               now = *in.opts.now;
             } else {
               std::time_t t = std::time(nullptr);
               localtime_r(&t, &now);
             }
             if (format.empty())
               return strValue("");
             for (size_t size = 256; size <= 65536; size *= 4) {
               std::string buf(size, '\0');
               size_t n = std::strftime(buf.data(), size, format.c_str(), &now);
               if (n > 0) {
                 buf.resize(n);
                 return strValue(buf);
               }
             }
             return strValue("");
           }));
  root.set("namespace", funcValue("namespace", [](Interp &in, Args &args) {
             auto ns = std::make_shared<ObjectData>();
             auto put = [&](const std::string &k, const Value &x) {
               for (auto &kv : ns->attrs)
                 if (kv.first == k) {
                   kv.second = x;
                   return;
                 }
               ns->attrs.emplace_back(k, x);
             };
             for (const Value &p : args.pos) {
               if (p.t != T::Dict)
                 raise("namespace() takes keyword arguments or a mapping");
               for (const auto &[k, x] : p.dict->items)
                 put(str(k), x);
             }
             for (const auto &[k, x] : args.kw)
               put(k, x);
             int depth = 0;
             for (const auto &kv : ns->attrs)
               depth = std::max(depth, depthOf(kv.second));
             checkDepth(depth + 1);
             ns->depth = depth + 1;
             in.step();
             in.namespaces.push_back(ns);
             Value v;
             v.t = T::Object;
             v.obj = ns;
             return v;
           }));
  root.set("range", funcValue("range", [](Interp &in, Args &args) {
             if (!args.kw.empty() || args.pos.empty() || args.pos.size() > 3)
               raise("range expected 1 to 3 integer arguments");
             int64_t start = 0, stop, step = 1;
             if (args.pos.size() == 1) {
               stop = requireInt(args.pos[0], "range");
             } else {
               start = requireInt(args.pos[0], "range");
               stop = requireInt(args.pos[1], "range");
               if (args.pos.size() == 3)
                 step = requireInt(args.pos[2], "range");
             }
             if (step == 0)
               raise("range() arg 3 must not be zero");
             double count = std::ceil((static_cast<double>(stop) - static_cast<double>(start)) /
                                      static_cast<double>(step));
             if (count > 100000)
               raise("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
             std::vector<Value> items;
             for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step)
               items.push_back(intValue(k));
             in.step(items.size());
             return listValue(std::move(items));
           }));
  root.set("dict", funcValue("dict", [](Interp &in, Args &args) {
             std::vector<std::pair<Value, Value>> items;
             if (args.pos.size() > 1)
               raise("dict expected at most 1 argument");
             if (!args.pos.empty()) {
               if (args.pos[0].t != T::Dict)
                 raise("dict() takes a mapping or keyword arguments here");
               items = args.pos[0].dict->items;
             }
             for (const auto &[k, x] : args.kw) {
               bool replaced = false;
               for (auto &kv : items)
                 if (kv.first.t == T::Str && kv.first.s == k) {
                   kv.second = x;
                   replaced = true;
                 }
               if (!replaced)
                 items.emplace_back(strValue(k), x);
             }
             in.step(items.size());
             return dictValue(std::move(items));
           }));
  (void)in;
}

std::string located(const std::string &name, int line, const std::string &message) {
  return name + ":" + std::to_string(line) + ": " + message;
}

} // namespace moir::rt::chat::detail

// ---- C API ------------------------------------------------------------------

namespace moir::rt::chat {

using namespace detail;

moir_status render(const moir_chat_template *t, const moir_chat_message *messages, size_t n,
                   int addGenerationPrompt, const char *bosToken, const char *eosToken,
                   const RenderOptions &options, std::string *out) {
  if (!t || (!messages && n) || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_chat_template_render: null argument");
  out->clear();
  auto checkText = [&](const char *text, const std::string &what) -> bool {
    std::string s(text);
    for (size_t i = 0; i < s.size();) {
      size_t len = utf8Sequence(s, i);
      if (!len) {
        fail(MOIR_ERROR_INVALID_ARGUMENT, t->name + ": " + what + " is not UTF-8 (byte " +
                                              std::to_string(i) + ")");
        return false;
      }
      i += len;
    }
    return true;
  };
  Interp in(*t, options);
  try {
    std::vector<Value> list;
    for (size_t k = 0; k < n; ++k) {
      if (!messages[k].role)
        return fail(MOIR_ERROR_INVALID_ARGUMENT,
                    t->name + ": message " + std::to_string(k) + " has no role");
      if (!checkText(messages[k].role, "the role of message " + std::to_string(k)) ||
          (messages[k].content &&
           !checkText(messages[k].content, "the content of message " + std::to_string(k))))
        return MOIR_ERROR_INVALID_ARGUMENT;
      list.push_back(dictValue(
          {{strValue("role"), strValue(messages[k].role)},
           {strValue("content"), messages[k].content ? strValue(messages[k].content) : noneValue()}}));
    }
    in.root = std::make_shared<Frame>();
    addGlobals(in, *in.root);
    in.root->set("messages", listValue(std::move(list)));
    in.root->set("add_generation_prompt", boolValue(addGenerationPrompt != 0));
    // transformers passes these as None when a call gives none.
    in.root->set("tools", noneValue());
    in.root->set("documents", noneValue());
    if (bosToken) {
      if (!checkText(bosToken, "bos_token"))
        return MOIR_ERROR_INVALID_ARGUMENT;
      in.root->set("bos_token", strValue(bosToken));
    }
    if (eosToken) {
      if (!checkText(eosToken, "eos_token"))
        return MOIR_ERROR_INVALID_ARGUMENT;
      in.root->set("eos_token", strValue(eosToken));
    }
    in.out = out;
    in.exec(t->body, in.root);
  } catch (const Error &e) {
    out->clear();
    moir_status status = e.kind == ErrorKind::Raised ? MOIR_ERROR_INVALID_ARGUMENT : MOIR_ERROR_FORMAT;
    return fail(status, located(t->name, e.line ? e.line : in.line, e.message));
  } catch (const std::bad_alloc &) {
    out->clear();
    return fail(MOIR_ERROR_FORMAT, located(t->name, in.line, "out of memory while rendering"));
  }
  return moir::rt::ok();
}

} // namespace moir::rt::chat

extern "C" moir_status moir_chat_template_open(const char *name, const char *source, size_t bytes,
                                               moir_chat_template **out) {
  using namespace moir::rt::chat::detail;
  if (!out || (!source && bytes))
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_chat_template_open: null argument");
  *out = nullptr;
  std::string label = name && *name ? name : "chat template";
  std::string src(source ? source : "", bytes);
  for (size_t i = 0; i < src.size();) {
    size_t len = moir::rt::utf8Sequence(src, i);
    if (!len)
      return fail(MOIR_ERROR_FORMAT,
                  label + ": the template is not UTF-8 (byte " + std::to_string(i) + ")");
    i += len;
  }
  // jinja2 reads \r\n and \r as \n and drops one newline at the end.
  std::string normalized;
  normalized.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      normalized += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n')
        ++i;
    } else {
      normalized += src[i];
    }
  }
  if (!normalized.empty() && normalized.back() == '\n')
    normalized.pop_back();
  auto t = std::make_unique<moir_chat_template>();
  t->name = label;
  try {
    Lexer lexer(normalized);
    Parser parser(lexer.run());
    t->body = parser.parseTemplate();
    parser.checkUnknowns();
  } catch (const Error &e) {
    return fail(MOIR_ERROR_FORMAT, located(label, e.line, e.message));
  } catch (const std::bad_alloc &) {
    return fail(MOIR_ERROR_FORMAT, label + ": out of memory while parsing the template");
  }
  *out = t.release();
  return moir::rt::ok();
}

extern "C" moir_status moir_model_chat_template(const moir_model *m, moir_chat_template **out) {
  if (!m || !out)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_model_chat_template: null argument");
  *out = nullptr;
  const char *text = nullptr;
  size_t bytes = 0;
  if (moir::rt::findResource(m, "chat_template.jinja", &text, &bytes))
    return moir_chat_template_open((m->path + ":chat_template.jinja").c_str(), text, bytes, out);
  return fail(MOIR_ERROR_UNSUPPORTED,
              m->path + ": the artifact holds no chat template (resource chat_template.jinja)");
}

extern "C" void moir_chat_template_close(moir_chat_template *t) { delete t; }

extern "C" moir_status moir_chat_template_render(const moir_chat_template *t,
                                                 const moir_chat_message *messages, size_t n,
                                                 int add_generation_prompt, const char *bos_token,
                                                 const char *eos_token, char *out, size_t capacity,
                                                 size_t *bytes) {
  if (!bytes || (!out && capacity))
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_chat_template_render: null argument");
  *bytes = 0;
  std::string text;
  moir::rt::chat::RenderOptions options;
  if (moir_status s = moir::rt::chat::render(t, messages, n, add_generation_prompt, bos_token,
                                             eos_token, options, &text);
      s != MOIR_OK)
    return s;
  *bytes = text.size();
  if (text.size() > capacity)
    return fail(MOIR_ERROR_OUT_OF_RANGE, "moir_chat_template_render: " +
                                             std::to_string(text.size()) + " bytes, room for " +
                                             std::to_string(capacity));
  if (!text.empty())
    std::memcpy(out, text.data(), text.size());
  return moir::rt::ok();
}
