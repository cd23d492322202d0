#include "tests/tasks/jinja_subset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

namespace qbench::test::jinja {
namespace {

// ---- values ----

struct Value;
using List = std::vector<Value>;
using Dict = std::map<std::string, Value>;  // keys sorted: iteration order is not Python's

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;  // Dict and Namespace (a namespace is mutable through set ns.x)

  static Value none() { return make(Kind::None); }
  static Value boolean(bool v) {
    Value x = make(Kind::Bool);
    x.b = v;
    return x;
  }
  static Value integer(int64_t v) {
    Value x = make(Kind::Int);
    x.i = v;
    return x;
  }
  static Value real(double v) {
    Value x = make(Kind::Float);
    x.f = v;
    return x;
  }
  static Value string(std::string v) {
    Value x = make(Kind::String);
    x.s = std::move(v);
    return x;
  }
  static Value of_list(List v) {
    Value x = make(Kind::List);
    x.list = std::make_shared<List>(std::move(v));
    return x;
  }
  static Value of_dict(Dict v, Kind k = Kind::Dict) {
    Value x = make(k);
    x.dict = std::make_shared<Dict>(std::move(v));
    return x;
  }
  static Value make(Kind k) {
    Value x;
    x.kind = k;
    return x;
  }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float; }
  double number() const { return kind == Kind::Int ? double(i) : f; }
};

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::Undefined: return "undefined";
    case Value::Kind::None: return "none";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "string";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Namespace: return "namespace";
  }
  return "?";
}

Value from_json(const nlohmann::json& j) {
  if (j.is_null()) return Value::none();
  if (j.is_boolean()) return Value::boolean(j.get<bool>());
  if (j.is_number_integer()) return Value::integer(j.get<int64_t>());
  if (j.is_number()) return Value::real(j.get<double>());
  if (j.is_string()) return Value::string(j.get<std::string>());
  if (j.is_array()) {
    List l;
    for (const auto& e : j) l.push_back(from_json(e));
    return Value::of_list(std::move(l));
  }
  Dict d;
  for (const auto& [k, v] : j.items()) d[k] = from_json(v);
  return Value::of_dict(std::move(d));
}

nlohmann::json to_json(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return nullptr;
    case Value::Kind::Bool: return v.b;
    case Value::Kind::Int: return v.i;
    case Value::Kind::Float: return v.f;
    case Value::Kind::String: return v.s;
    case Value::Kind::List: {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& e : *v.list) a.push_back(to_json(e));
      return a;
    }
    default: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& [k, e] : *v.dict) o[k] = to_json(e);
      return o;
    }
  }
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return false;
    case Value::Kind::Bool: return v.b;
    case Value::Kind::Int: return v.i != 0;
    case Value::Kind::Float: return v.f != 0.0;
    case Value::Kind::String: return !v.s.empty();
    case Value::Kind::List: return !v.list->empty();
    default: return !v.dict->empty();
  }
}

// str() of a value, as Jinja prints it (undefined prints nothing).
std::string to_text(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined: return "";
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return v.b ? "True" : "False";
    case Value::Kind::Int: return std::to_string(v.i);
    case Value::Kind::Float: {
      if (v.f == std::floor(v.f) && std::abs(v.f) < 1e15) return std::to_string(int64_t(v.f)) + ".0";
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", v.f);
      return buf;
    }
    case Value::Kind::String: return v.s;
    default: return to_json(v).dump();
  }
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.number() == b.number();
  if (a.kind == Value::Kind::Bool && b.is_number()) return double(a.b) == b.number();
  if (b.kind == Value::Kind::Bool && a.is_number()) return double(b.b) == a.number();
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::Bool: return a.b == b.b;
    case Value::Kind::String: return a.s == b.s;
    case Value::Kind::List:
      return a.list->size() == b.list->size() &&
             std::equal(a.list->begin(), a.list->end(), b.list->begin(), [](const Value& x, const Value& y) { return equal(x, y); });
    default: {
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, v] : *a.dict) {
        auto it = b.dict->find(k);
        if (it == b.dict->end() || !equal(v, it->second)) return false;
      }
      return true;
    }
  }
}

// ---- lexer ----

struct Token {
  enum class Type { Name, String, Int, Float, Op, End };
  Type type = Type::End;
  std::string text;  // name, operator, or the string's decoded value
  int64_t ival = 0;
  double fval = 0.0;
};

struct Chunk {
  enum class Kind { Text, Var, Block, Comment };
  Kind kind = Kind::Text;
  std::string text;           // Text
  std::vector<Token> tokens;  // Var, Block (ending with an End token)
  bool strip_before = false, strip_after = false, keep_lstrip = false;
};

class Lexer {
 public:
  explicit Lexer(const std::string& src) : src_(src) {}

  std::vector<Chunk> chunks() {
    std::vector<Chunk> out;
    size_t pos = 0;
    while (pos < src_.size()) {
      size_t at = std::string::npos;
      for (const char* open : {"{{", "{%", "{#"}) at = std::min(at, src_.find(open, pos));
      if (at == std::string::npos) {
        out.push_back(text(src_.substr(pos)));
        break;
      }
      if (at > pos) out.push_back(text(src_.substr(pos, at - pos)));
      Chunk c;
      const char k = src_[at + 1];
      size_t p = at + 2;
      if (p < src_.size() && src_[p] == '-') {
        c.strip_before = true;
        ++p;
      } else if (p < src_.size() && src_[p] == '+') {
        c.keep_lstrip = true;
        ++p;
      }
      if (k == '#') {
        c.kind = Chunk::Kind::Comment;
        const size_t end = src_.find("#}", p);
        if (end == std::string::npos) throw Error("unclosed comment");
        c.strip_after = end > p && src_[end - 1] == '-';
        pos = end + 2;
      } else {
        c.kind = k == '{' ? Chunk::Kind::Var : Chunk::Kind::Block;
        pos = lex_tag(p, k == '{' ? '}' : '%', c);
      }
      out.push_back(std::move(c));
    }
    apply_whitespace_control(out);
    return out;
  }

 private:
  static Chunk text(std::string s) {
    Chunk c;
    c.text = std::move(s);
    return c;
  }

  // Tokens of one tag from `p` to its closing delimiter ("}}" or "%}", optionally "-" before);
  // returns the position after it.
  size_t lex_tag(size_t p, char close, Chunk& c) {
    int depth = 0;  // brackets: a "}}" inside a dict literal does not close the tag
    while (true) {
      while (p < src_.size() && std::isspace(static_cast<unsigned char>(src_[p]))) ++p;
      if (p >= src_.size()) throw Error("unclosed tag");
      if (depth == 0) {
        if (src_[p] == '-' && src_.compare(p + 1, 2, std::string(1, close) + "}") == 0) {
          c.strip_after = true;
          c.tokens.push_back({});
          return p + 3;
        }
        if (src_.compare(p, 2, std::string(1, close) + "}") == 0) {
          c.tokens.push_back({});
          return p + 2;
        }
      }
      const char ch = src_[p];
      Token t;
      if (std::isalpha(static_cast<unsigned char>(ch)) || ch == '_') {
        size_t e = p;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        t.type = Token::Type::Name;
        t.text = src_.substr(p, e - p);
        p = e;
      } else if (std::isdigit(static_cast<unsigned char>(ch))) {
        size_t e = p;
        while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
        if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
          ++e;
          while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
          t.type = Token::Type::Float;
          t.fval = std::stod(src_.substr(p, e - p));
        } else {
          t.type = Token::Type::Int;
          t.ival = std::stoll(src_.substr(p, e - p));
        }
        p = e;
      } else if (ch == '\'' || ch == '"') {
        t.type = Token::Type::String;
        size_t e = p + 1;
        for (; e < src_.size() && src_[e] != ch; ++e) {
          if (src_[e] != '\\') {
            t.text += src_[e];
            continue;
          }
          if (++e >= src_.size()) break;
          switch (src_[e]) {
            case 'n': t.text += '\n'; break;
            case 't': t.text += '\t'; break;
            case 'r': t.text += '\r'; break;
            case '\\': t.text += '\\'; break;
            case '\'': t.text += '\''; break;
            case '"': t.text += '"'; break;
            default: throw Error(std::string("string escape \\") + src_[e] + " is outside the subset");
          }
        }
        if (e >= src_.size()) throw Error("unclosed string");
        p = e + 1;
      } else {
        static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",",
                                           ":",  ".",  "|",  "+",  "-",  "*",  "/", "%", "~", "<", ">", "="};
        t.type = Token::Type::Op;
        for (const char* op : kOps) {
          if (src_.compare(p, std::strlen(op), op) == 0) {
            t.text = op;
            break;
          }
        }
        if (t.text.empty()) throw Error(std::string("unexpected character '") + ch + "' in a tag");
        p += t.text.size();
        if (t.text == "(" || t.text == "[" || t.text == "{") ++depth;
        if (t.text == ")" || t.text == "]" || t.text == "}") --depth;
      }
      c.tokens.push_back(std::move(t));
    }
  }

  // '-' strips all white space on its side; trim_blocks drops one newline after a block or
  // comment tag; lstrip_blocks drops spaces and tabs between a line start and a block tag.
  static void apply_whitespace_control(std::vector<Chunk>& cs) {
    std::vector<bool> line_start(cs.size(), false);  // text chunk begins a line of the source
    if (!cs.empty()) line_start[0] = true;
    for (size_t k = 0; k < cs.size(); ++k) {
      Chunk& c = cs[k];
      if (c.kind == Chunk::Kind::Text) continue;
      const bool block = c.kind != Chunk::Kind::Var;
      if (k + 1 < cs.size() && cs[k + 1].kind == Chunk::Kind::Text) {
        std::string& next = cs[k + 1].text;
        if (c.strip_after) {
          const size_t a = next.find_first_not_of(" \t\r\n\f\v");
          const std::string removed = next.substr(0, a == std::string::npos ? next.size() : a);
          line_start[k + 1] = !removed.empty() && removed.back() == '\n';
          next.erase(0, removed.size());
        } else if (block && next.rfind('\n', 0) == 0) {
          next.erase(0, 1);
          line_start[k + 1] = true;
        } else if (block && next.rfind("\r\n", 0) == 0) {
          next.erase(0, 2);
          line_start[k + 1] = true;
        }
      }
      if (k > 0 && cs[k - 1].kind == Chunk::Kind::Text) {
        std::string& prev = cs[k - 1].text;
        if (c.strip_before) {
          const size_t e = prev.find_last_not_of(" \t\r\n\f\v");
          prev.erase(e == std::string::npos ? 0 : e + 1);
        } else if (block && !c.keep_lstrip) {
          const size_t nl = prev.rfind('\n');
          const size_t from = nl == std::string::npos ? 0 : nl + 1;
          if ((nl != std::string::npos || line_start[k - 1]) && prev.find_first_not_of(" \t", from) == std::string::npos) {
            prev.erase(from);
          }
        }
      }
    }
  }

  const std::string& src_;
};

// ---- syntax tree ----

struct Ctx;

struct Expr {
  virtual ~Expr() = default;
  virtual Value eval(Ctx& c) const = 0;
};
using ExprPtr = std::unique_ptr<Expr>;

struct Stmt {
  virtual ~Stmt() = default;
  virtual void run(Ctx& c) const = 0;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Ctx {
  std::vector<Dict> frames;  // innermost last
  std::string out;

  Value lookup(const std::string& name) const {
    for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
      if (auto f = it->find(name); f != it->end()) return f->second;
    }
    return {};
  }
};

void run_body(const Body& b, Ctx& c) {
  for (const auto& s : b) s->run(c);
}

struct Literal : Expr {
  Value v;
  explicit Literal(Value x) : v(std::move(x)) {}
  Value eval(Ctx&) const override { return v; }
};

struct ListLit : Expr {
  std::vector<ExprPtr> items;
  Value eval(Ctx& c) const override {
    List l;
    for (const auto& e : items) l.push_back(e->eval(c));
    return Value::of_list(std::move(l));
  }
};

struct DictLit : Expr {
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
  Value eval(Ctx& c) const override {
    Dict d;
    for (const auto& [k, v] : items) {
      const Value key = k->eval(c);
      if (key.kind != Value::Kind::String) throw Error("dict keys other than strings are outside the subset");
      d[key.s] = v->eval(c);
    }
    return Value::of_dict(std::move(d));
  }
};

struct Name : Expr {
  std::string name;
  explicit Name(std::string n) : name(std::move(n)) {}
  Value eval(Ctx& c) const override { return c.lookup(name); }
};

Value get_item(const Value& obj, const Value& key, const std::string& what) {
  if (obj.kind == Value::Kind::Undefined) throw Error("'" + what + "' is undefined");
  if (obj.kind == Value::Kind::Dict || obj.kind == Value::Kind::Namespace) {
    if (key.kind != Value::Kind::String) return {};
    auto it = obj.dict->find(key.s);
    return it == obj.dict->end() ? Value{} : it->second;
  }
  if ((obj.kind == Value::Kind::List || obj.kind == Value::Kind::String) && key.kind == Value::Kind::Int) {
    const int64_t n = obj.kind == Value::Kind::List ? int64_t(obj.list->size()) : int64_t(obj.s.size());
    const int64_t i = key.i < 0 ? key.i + n : key.i;
    if (i < 0 || i >= n) return {};
    return obj.kind == Value::Kind::List ? (*obj.list)[size_t(i)] : Value::string(std::string(1, obj.s[size_t(i)]));
  }
  return {};
}

struct GetAttr : Expr {
  ExprPtr obj;
  std::string attr;
  Value eval(Ctx& c) const override { return get_item(obj->eval(c), Value::string(attr), attr); }
};

struct GetItem : Expr {
  ExprPtr obj, key;
  Value eval(Ctx& c) const override { return get_item(obj->eval(c), key->eval(c), "item"); }
};

struct Slice : Expr {
  ExprPtr obj, start, stop, step;
  Value eval(Ctx& c) const override {
    const Value o = obj->eval(c);
    if (o.kind != Value::Kind::List && o.kind != Value::Kind::String) throw Error("slicing a " + std::string(kind_name(o.kind)));
    const int64_t n = o.kind == Value::Kind::List ? int64_t(o.list->size()) : int64_t(o.s.size());
    auto num = [&](const ExprPtr& e, int64_t dflt) {
      if (!e) return dflt;
      const Value v = e->eval(c);
      if (v.kind != Value::Kind::Int) throw Error("slice bounds must be integers");
      return v.i;
    };
    const int64_t st = num(step, 1);
    if (st == 0) throw Error("slice step 0");
    // Python's slice.indices.
    auto clamp = [&](int64_t v) {
      if (v < 0) v += n;
      return st > 0 ? std::clamp<int64_t>(v, 0, n) : std::clamp<int64_t>(v, -1, n - 1);
    };
    int64_t a = start ? clamp(num(start, 0)) : (st > 0 ? 0 : n - 1);
    const int64_t b = stop ? clamp(num(stop, 0)) : (st > 0 ? n : -1);
    List l;
    std::string s;
    for (; st > 0 ? a < b : a > b; a += st) {
      if (o.kind == Value::Kind::List) {
        l.push_back((*o.list)[size_t(a)]);
      } else {
        s += o.s[size_t(a)];
      }
    }
    return o.kind == Value::Kind::List ? Value::of_list(std::move(l)) : Value::string(std::move(s));
  }
};

struct Args {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> named;
};

std::string strip_chars(const std::string& s, const std::string& chars, bool left, bool right) {
  size_t a = 0, b = s.size();
  while (left && a < b && chars.find(s[a]) != std::string::npos) ++a;
  while (right && b > a && chars.find(s[b - 1]) != std::string::npos) --b;
  return s.substr(a, b - a);
}
const std::string kWhite = " \t\n\r\f\v";

Value call_method(const Value& obj, const std::string& name, const std::vector<Value>& args) {
  auto arg_str = [&](size_t k) {
    if (k >= args.size() || args[k].kind != Value::Kind::String) throw Error(name + "(): expected a string argument");
    return args[k].s;
  };
  if (obj.kind == Value::Kind::String) {
    const std::string& s = obj.s;
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const std::string chars = args.empty() || args[0].kind == Value::Kind::None ? kWhite : arg_str(0);
      return Value::string(strip_chars(s, chars, name != "rstrip", name != "lstrip"));
    }
    if (name == "startswith") return Value::boolean(s.rfind(arg_str(0), 0) == 0);
    if (name == "endswith") {
      const std::string x = arg_str(0);
      return Value::boolean(s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0);
    }
    if (name == "split") {
      List parts;
      if (args.empty()) {
        size_t p = 0;
        while (true) {
          p = s.find_first_not_of(kWhite, p);
          if (p == std::string::npos) break;
          const size_t e = std::min(s.find_first_of(kWhite, p), s.size());
          parts.push_back(Value::string(s.substr(p, e - p)));
          p = e;
        }
      } else {
        const std::string sep = arg_str(0);
        if (sep.empty()) throw Error("split(): empty separator");
        size_t p = 0;
        while (true) {
          const size_t e = s.find(sep, p);
          parts.push_back(Value::string(s.substr(p, e == std::string::npos ? std::string::npos : e - p)));
          if (e == std::string::npos) break;
          p = e + sep.size();
        }
      }
      return Value::of_list(std::move(parts));
    }
    if (name == "upper" || name == "lower") {
      std::string r = s;
      for (char& ch : r) ch = char(name == "upper" ? std::toupper(static_cast<unsigned char>(ch)) : std::tolower(static_cast<unsigned char>(ch)));
      return Value::string(r);
    }
    if (name == "title" || name == "capitalize") {
      std::string r = s;
      bool start = true;
      for (size_t k = 0; k < r.size(); ++k) {
        const bool alpha = std::isalpha(static_cast<unsigned char>(r[k]));
        if (name == "capitalize") {
          r[k] = char(k == 0 ? std::toupper(static_cast<unsigned char>(r[k])) : std::tolower(static_cast<unsigned char>(r[k])));
        } else {
          r[k] = char(start ? std::toupper(static_cast<unsigned char>(r[k])) : std::tolower(static_cast<unsigned char>(r[k])));
          start = !alpha;
        }
      }
      return Value::string(r);
    }
    if (name == "replace") {
      const std::string from = arg_str(0), to = arg_str(1);
      if (from.empty()) throw Error("replace(): empty pattern");
      std::string r = s;
      for (size_t at = r.find(from); at != std::string::npos; at = r.find(from, at + to.size())) r.replace(at, from.size(), to);
      return Value::string(r);
    }
  }
  if (obj.kind == Value::Kind::Dict) {
    if (name == "get") {
      const Value v = get_item(obj, args.empty() ? Value{} : args[0], "get");
      return v.kind == Value::Kind::Undefined ? (args.size() > 1 ? args[1] : Value::none()) : v;
    }
    if (name == "keys" || name == "values") {
      List l;
      for (const auto& [k, v] : *obj.dict) l.push_back(name == "keys" ? Value::string(k) : v);
      return Value::of_list(std::move(l));
    }
  }
  throw Error("method " + std::string(kind_name(obj.kind)) + "." + name + "() is outside the subset");
}

struct Call : Expr {
  ExprPtr callee;
  Args args;
  Value eval(Ctx& c) const override {
    std::vector<Value> pos;
    for (const auto& a : args.positional) pos.push_back(a->eval(c));
    if (const auto* attr = dynamic_cast<const GetAttr*>(callee.get())) {
      if (!args.named.empty()) throw Error("keyword arguments to methods are outside the subset");
      return call_method(attr->obj->eval(c), attr->attr, pos);
    }
    const auto* fn = dynamic_cast<const Name*>(callee.get());
    if (fn == nullptr) throw Error("calling an expression is outside the subset");
    if (fn->name == "raise_exception") throw Raised(pos.empty() ? "raise_exception" : to_text(pos[0]));
    if (fn->name == "namespace") {
      if (!pos.empty()) throw Error("namespace() takes keyword arguments only in the subset");
      Dict d;
      for (const auto& [k, e] : args.named) d[k] = e->eval(c);
      return Value::of_dict(std::move(d), Value::Kind::Namespace);
    }
    if (fn->name == "range") {
      if (pos.empty() || pos.size() > 2) throw Error("range() takes one or two arguments in the subset");
      for (const auto& v : pos) {
        if (v.kind != Value::Kind::Int) throw Error("range() takes integers");
      }
      const int64_t a = pos.size() == 2 ? pos[0].i : 0, b = pos.back().i;
      List l;
      for (int64_t k = a; k < b; ++k) l.push_back(Value::integer(k));
      return Value::of_list(std::move(l));
    }
    throw Error("function " + fn->name + "() is outside the subset");
  }
};

struct Filter : Expr {
  ExprPtr obj;
  std::string name;
  Args args;
  Value eval(Ctx& c) const override {
    const Value v = obj->eval(c);
    std::vector<Value> a;
    for (const auto& e : args.positional) a.push_back(e->eval(c));
    if (name == "default") {
      return v.kind == Value::Kind::Undefined ? (a.empty() ? Value::string("") : a[0]) : v;
    }
    if (v.kind == Value::Kind::Undefined) throw Error("filter " + name + " on an undefined value");
    if (name == "trim") {
      if (v.kind != Value::Kind::String) throw Error("trim of a " + std::string(kind_name(v.kind)));
      return Value::string(strip_chars(v.s, kWhite, true, true));
    }
    if (name == "length" || name == "count") {
      if (v.kind == Value::Kind::String) return Value::integer(int64_t(v.s.size()));
      if (v.kind == Value::Kind::List) return Value::integer(int64_t(v.list->size()));
      if (v.kind == Value::Kind::Dict) return Value::integer(int64_t(v.dict->size()));
      throw Error("length of a " + std::string(kind_name(v.kind)));
    }
    if (name == "upper" || name == "lower") return call_method(Value::string(to_text(v)), name, {});
    if (name == "string") return Value::string(to_text(v));
    if (name == "first" || name == "last") {
      if (v.kind != Value::Kind::List) throw Error(name + " of a " + std::string(kind_name(v.kind)));
      if (v.list->empty()) return {};
      return name == "first" ? v.list->front() : v.list->back();
    }
    if (name == "join") {
      if (v.kind != Value::Kind::List) throw Error("join of a " + std::string(kind_name(v.kind)));
      std::string sep = a.empty() ? "" : to_text(a[0]), r;
      for (size_t k = 0; k < v.list->size(); ++k) r += (k ? sep : "") + to_text((*v.list)[k]);
      return Value::string(r);
    }
    if (name == "tojson") {
      if (!a.empty() || !args.named.empty()) throw Error("tojson arguments are outside the subset");
      return Value::string(to_json(v).dump());
    }
    throw Error("filter '" + name + "' is outside the subset");
  }
};

struct Test : Expr {
  ExprPtr obj;
  std::string name;
  bool negated = false;
  Value eval(Ctx& c) const override {
    const Value v = obj->eval(c);
    bool r;
    if (name == "defined") {
      r = v.kind != Value::Kind::Undefined;
    } else if (name == "undefined") {
      r = v.kind == Value::Kind::Undefined;
    } else if (name == "none") {
      r = v.kind == Value::Kind::None;
    } else if (name == "string") {
      r = v.kind == Value::Kind::String;
    } else if (name == "number") {
      r = v.is_number();
    } else if (name == "integer") {
      r = v.kind == Value::Kind::Int;
    } else if (name == "boolean") {
      r = v.kind == Value::Kind::Bool;
    } else if (name == "true" || name == "false") {
      r = v.kind == Value::Kind::Bool && v.b == (name == "true");
    } else if (name == "mapping") {
      r = v.kind == Value::Kind::Dict;
    } else if (name == "sequence" || name == "iterable") {
      r = v.kind == Value::Kind::List || v.kind == Value::Kind::String || v.kind == Value::Kind::Dict;
    } else {
      throw Error("test 'is " + name + "' is outside the subset");
    }
    return Value::boolean(r != negated);
  }
};

struct Not : Expr {
  ExprPtr x;
  Value eval(Ctx& c) const override { return Value::boolean(!truthy(x->eval(c))); }
};

struct Logical : Expr {
  bool is_and = false;
  ExprPtr l, r;
  Value eval(Ctx& c) const override {  // Python: the deciding operand, not a bool
    Value a = l->eval(c);
    if (truthy(a) != is_and) return a;
    return r->eval(c);
  }
};

struct Conditional : Expr {
  ExprPtr test, yes, no;
  Value eval(Ctx& c) const override {
    if (truthy(test->eval(c))) return yes->eval(c);
    return no ? no->eval(c) : Value{};
  }
};

bool contains(const Value& hay, const Value& needle) {
  if (hay.kind == Value::Kind::String) {
    if (needle.kind != Value::Kind::String) throw Error("'in <string>' needs a string on the left");
    return hay.s.find(needle.s) != std::string::npos;
  }
  if (hay.kind == Value::Kind::List) {
    return std::any_of(hay.list->begin(), hay.list->end(), [&](const Value& x) { return equal(x, needle); });
  }
  if (hay.kind == Value::Kind::Dict) return needle.kind == Value::Kind::String && hay.dict->count(needle.s) > 0;
  throw Error("'in' on a " + std::string(kind_name(hay.kind)));
}

struct Binary : Expr {
  std::string op;
  ExprPtr l, r;
  Value eval(Ctx& c) const override {
    const Value a = l->eval(c), b = r->eval(c);
    if (op == "==") return Value::boolean(equal(a, b));
    if (op == "!=") return Value::boolean(!equal(a, b));
    if (op == "in") return Value::boolean(contains(b, a));
    if (op == "not in") return Value::boolean(!contains(b, a));
    if (op == "~") return Value::string(to_text(a) + to_text(b));
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int cmp;
      if (a.is_number() && b.is_number()) {
        cmp = a.number() < b.number() ? -1 : a.number() > b.number() ? 1 : 0;
      } else if (a.kind == Value::Kind::String && b.kind == Value::Kind::String) {
        cmp = a.s.compare(b.s);
      } else {
        throw Error("comparing " + std::string(kind_name(a.kind)) + " " + op + " " + kind_name(b.kind));
      }
      return Value::boolean(op == "<" ? cmp < 0 : op == ">" ? cmp > 0 : op == "<=" ? cmp <= 0 : cmp >= 0);
    }
    if (op == "+" && a.kind == Value::Kind::String && b.kind == Value::Kind::String) return Value::string(a.s + b.s);
    if (op == "+" && a.kind == Value::Kind::List && b.kind == Value::Kind::List) {
      List l2 = *a.list;
      l2.insert(l2.end(), b.list->begin(), b.list->end());
      return Value::of_list(std::move(l2));
    }
    if (!a.is_number() || !b.is_number()) {
      throw Error("operator " + op + " on " + kind_name(a.kind) + " and " + kind_name(b.kind));
    }
    const bool ints = a.kind == Value::Kind::Int && b.kind == Value::Kind::Int;
    if (op == "/") {
      if (b.number() == 0) throw Error("division by zero");
      return Value::real(a.number() / b.number());
    }
    if (ints) {
      const int64_t x = a.i, y = b.i;
      if (op == "+") return Value::integer(x + y);
      if (op == "-") return Value::integer(x - y);
      if (op == "*") return Value::integer(x * y);
      if (op == "//" || op == "%") {
        if (y == 0) throw Error("division by zero");
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors
          --q;
          m += y;
        }
        return Value::integer(op == "//" ? q : m);
      }
      if (op == "**") return Value::integer(int64_t(std::pow(double(x), double(y))));
    }
    const double x = a.number(), y = b.number();
    if (op == "+") return Value::real(x + y);
    if (op == "-") return Value::real(x - y);
    if (op == "*") return Value::real(x * y);
    if (op == "//") return Value::real(std::floor(x / y));
    if (op == "%") return Value::real(x - y * std::floor(x / y));
    if (op == "**") return Value::real(std::pow(x, y));
    throw Error("operator " + op + " is outside the subset");
  }
};

struct Negate : Expr {
  ExprPtr x;
  Value eval(Ctx& c) const override {
    const Value v = x->eval(c);
    if (v.kind == Value::Kind::Int) return Value::integer(-v.i);
    if (v.kind == Value::Kind::Float) return Value::real(-v.f);
    throw Error("unary minus on a " + std::string(kind_name(v.kind)));
  }
};

struct TextStmt : Stmt {
  std::string text;
  void run(Ctx& c) const override { c.out += text; }
};

struct Output : Stmt {
  ExprPtr e;
  void run(Ctx& c) const override { c.out += to_text(e->eval(c)); }
};

struct If : Stmt {
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body otherwise;
  void run(Ctx& c) const override {
    for (const auto& [cond, body] : branches) {
      if (truthy(cond->eval(c))) {
        run_body(body, c);
        return;
      }
    }
    run_body(otherwise, c);
  }
};

struct For : Stmt {
  std::string var;
  ExprPtr iterable;
  Body body, otherwise;
  void run(Ctx& c) const override {
    const Value it = iterable->eval(c);
    List items;
    if (it.kind == Value::Kind::List) {
      items = *it.list;
    } else if (it.kind == Value::Kind::Dict) {
      for (const auto& [k, v] : *it.dict) items.push_back(Value::string(k));
    } else if (it.kind == Value::Kind::String) {
      for (char ch : it.s) items.push_back(Value::string(std::string(1, ch)));
    } else if (it.kind != Value::Kind::Undefined && it.kind != Value::Kind::None) {
      throw Error("for over a " + std::string(kind_name(it.kind)));
    } else if (it.kind == Value::Kind::Undefined) {
      throw Error("for over an undefined value");
    }
    if (items.empty()) {
      run_body(otherwise, c);
      return;
    }
    const int64_t n = int64_t(items.size());
    for (int64_t k = 0; k < n; ++k) {
      Dict loop = {{"index", Value::integer(k + 1)},   {"index0", Value::integer(k)},
                   {"first", Value::boolean(k == 0)},  {"last", Value::boolean(k == n - 1)},
                   {"length", Value::integer(n)},      {"revindex", Value::integer(n - k)},
                   {"revindex0", Value::integer(n - k - 1)}};
      c.frames.push_back({{var, items[size_t(k)]}, {"loop", Value::of_dict(std::move(loop))}});
      run_body(body, c);
      c.frames.pop_back();
    }
  }
};

struct Set : Stmt {
  std::string name, attr;  // attr: set name.attr (a namespace)
  ExprPtr e;
  void run(Ctx& c) const override {
    Value v = e->eval(c);
    if (attr.empty()) {
      c.frames.back()[name] = std::move(v);
      return;
    }
    const Value ns = c.lookup(name);
    if (ns.kind != Value::Kind::Namespace) throw Error("set " + name + "." + attr + ": " + name + " is not a namespace");
    (*ns.dict)[attr] = std::move(v);
  }
};

// ---- parser ----

class Parser {
 public:
  explicit Parser(std::vector<Chunk> chunks) : chunks_(std::move(chunks)) {}

  Body parse_template() {
    std::string end;
    Body b = parse_body({}, end);
    return b;
  }

 private:
  // Statements until a block tag whose keyword is in `ends` (returned in `end`).
  Body parse_body(const std::set<std::string>& ends, std::string& end) {
    Body body;
    while (ci_ < chunks_.size()) {
      Chunk& ch = chunks_[ci_++];
      switch (ch.kind) {
        case Chunk::Kind::Text: {
          auto t = std::make_unique<TextStmt>();
          t->text = ch.text;
          body.push_back(std::move(t));
          break;
        }
        case Chunk::Kind::Comment: break;
        case Chunk::Kind::Var: {
          begin(ch);
          auto o = std::make_unique<Output>();
          o->e = expression();
          finish();
          body.push_back(std::move(o));
          break;
        }
        case Chunk::Kind::Block: {
          begin(ch);
          const Token kw = next();
          if (kw.type != Token::Type::Name) throw Error("a block tag must start with a keyword");
          if (ends.count(kw.text)) {
            end = kw.text;
            return body;
          }
          if (kw.text == "if") {
            body.push_back(parse_if());
          } else if (kw.text == "for") {
            body.push_back(parse_for());
          } else if (kw.text == "set") {
            body.push_back(parse_set());
          } else {
            throw Error("tag '" + kw.text + "' is outside the subset or misplaced");
          }
          break;
        }
      }
    }
    if (!ends.empty()) throw Error("missing end tag (one of: " + *ends.begin() + " ...)");
    return body;
  }

  StmtPtr parse_if() {
    auto s = std::make_unique<If>();
    ExprPtr cond = expression();
    finish();
    bool in_else = false;
    while (true) {
      std::string end;
      Body b = parse_body(in_else ? std::set<std::string>{"endif"} : std::set<std::string>{"elif", "else", "endif"}, end);
      if (in_else) {
        s->otherwise = std::move(b);
      } else {
        s->branches.emplace_back(std::move(cond), std::move(b));
      }
      if (end == "endif") {
        finish();
        return s;
      }
      if (end == "elif") {
        cond = expression();
      } else {
        in_else = true;
      }
      finish();
    }
  }

  StmtPtr parse_for() {
    auto s = std::make_unique<For>();
    const Token var = next();
    if (var.type != Token::Type::Name) throw Error("for: expected a loop variable");
    if (peek_op(",")) throw Error("for with several loop variables (tuple unpacking) is outside the subset");
    s->var = var.text;
    expect_name("in");
    s->iterable = or_expr();
    if (peek_name("if") || peek_name("recursive")) throw Error("for ... if / recursive is outside the subset");
    finish();
    std::string end;
    s->body = parse_body({"else", "endfor"}, end);
    finish();
    if (end == "else") {
      s->otherwise = parse_body({"endfor"}, end);
      finish();
    }
    return s;
  }

  StmtPtr parse_set() {
    auto s = std::make_unique<Set>();
    const Token n = next();
    if (n.type != Token::Type::Name) throw Error("set: expected a name");
    s->name = n.text;
    if (peek_op(".")) {
      next();
      const Token a = next();
      if (a.type != Token::Type::Name) throw Error("set: expected an attribute name");
      s->attr = a.text;
    }
    if (!peek_op("=")) throw Error("block set ({% set x %}...{% endset %}) or tuple set is outside the subset");
    next();
    s->e = expression();
    finish();
    return s;
  }

  // ---- expressions ----
  ExprPtr expression() {
    ExprPtr e = or_expr();
    if (peek_name("if")) {
      next();
      auto c = std::make_unique<Conditional>();
      c->yes = std::move(e);
      c->test = or_expr();
      if (peek_name("else")) {
        next();
        c->no = expression();
      }
      return c;
    }
    return e;
  }
  ExprPtr or_expr() {
    ExprPtr l = and_expr();
    while (peek_name("or")) {
      next();
      auto n = std::make_unique<Logical>();
      n->l = std::move(l);
      n->r = and_expr();
      l = std::move(n);
    }
    return l;
  }
  ExprPtr and_expr() {
    ExprPtr l = not_expr();
    while (peek_name("and")) {
      next();
      auto n = std::make_unique<Logical>();
      n->is_and = true;
      n->l = std::move(l);
      n->r = not_expr();
      l = std::move(n);
    }
    return l;
  }
  ExprPtr not_expr() {
    if (peek_name("not")) {
      next();
      auto n = std::make_unique<Not>();
      n->x = not_expr();
      return n;
    }
    return compare();
  }
  ExprPtr compare() {
    ExprPtr l = math1();
    while (true) {
      std::string op;
      if (peek_op("==") || peek_op("!=") || peek_op("<") || peek_op(">") || peek_op("<=") || peek_op(">=")) {
        op = next().text;
      } else if (peek_name("in")) {
        next();
        op = "in";
      } else if (peek_name("not") && pos_ + 1 < toks_->size() && (*toks_)[pos_ + 1].type == Token::Type::Name &&
                 (*toks_)[pos_ + 1].text == "in") {
        next();
        next();
        op = "not in";
      } else {
        return l;
      }
      l = binary(op, std::move(l), math1());
    }
  }
  ExprPtr math1() {
    ExprPtr l = concat();
    while (peek_op("+") || peek_op("-")) {
      const std::string op = next().text;
      l = binary(op, std::move(l), concat());
    }
    return l;
  }
  ExprPtr concat() {
    ExprPtr l = math2();
    while (peek_op("~")) {
      next();
      l = binary("~", std::move(l), math2());
    }
    return l;
  }
  ExprPtr math2() {
    ExprPtr l = power();
    while (peek_op("*") || peek_op("/") || peek_op("//") || peek_op("%")) {
      const std::string op = next().text;
      l = binary(op, std::move(l), power());
    }
    return l;
  }
  ExprPtr power() {
    ExprPtr l = unary(true);
    while (peek_op("**")) {
      next();
      l = binary("**", std::move(l), unary(true));
    }
    return l;
  }
  ExprPtr unary(bool with_filter) {
    ExprPtr e;
    if (peek_op("-")) {
      next();
      auto n = std::make_unique<Negate>();
      n->x = unary(false);
      e = std::move(n);
    } else if (peek_op("+")) {
      next();
      e = unary(false);
    } else {
      e = postfix(primary());
    }
    if (with_filter) e = filters(std::move(e));
    return e;
  }
  ExprPtr primary() {
    const Token t = next();
    switch (t.type) {
      case Token::Type::Name:
        if (t.text == "true" || t.text == "True") return lit(Value::boolean(true));
        if (t.text == "false" || t.text == "False") return lit(Value::boolean(false));
        if (t.text == "none" || t.text == "None") return lit(Value::none());
        return std::make_unique<Name>(t.text);
      case Token::Type::String: {
        std::string s = t.text;
        while (peek().type == Token::Type::String) s += next().text;  // adjacent literals join
        return lit(Value::string(s));
      }
      case Token::Type::Int: return lit(Value::integer(t.ival));
      case Token::Type::Float: return lit(Value::real(t.fval));
      case Token::Type::Op:
        if (t.text == "(") {
          ExprPtr e = expression();
          if (peek_op(",")) throw Error("tuples are outside the subset");
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          auto l = std::make_unique<ListLit>();
          while (!peek_op("]")) {
            l->items.push_back(expression());
            if (!peek_op(",")) break;
            next();
          }
          expect_op("]");
          return l;
        }
        if (t.text == "{") {
          auto d = std::make_unique<DictLit>();
          while (!peek_op("}")) {
            ExprPtr k = expression();
            expect_op(":");
            d->items.emplace_back(std::move(k), expression());
            if (!peek_op(",")) break;
            next();
          }
          expect_op("}");
          return d;
        }
        break;
      case Token::Type::End: break;
    }
    throw Error("unexpected '" + t.text + "' in an expression");
  }
  ExprPtr postfix(ExprPtr e) {
    while (true) {
      if (peek_op(".")) {
        next();
        const Token a = next();
        if (a.type != Token::Type::Name) throw Error("expected an attribute name after '.'");
        auto g = std::make_unique<GetAttr>();
        g->obj = std::move(e);
        g->attr = a.text;
        e = std::move(g);
      } else if (peek_op("[")) {
        next();
        ExprPtr start;
        if (!peek_op(":")) start = expression();
        if (peek_op(":")) {
          next();
          auto s = std::make_unique<Slice>();
          s->obj = std::move(e);
          s->start = std::move(start);
          if (!peek_op(":") && !peek_op("]")) s->stop = expression();
          if (peek_op(":")) {
            next();
            if (!peek_op("]")) s->step = expression();
          }
          e = std::move(s);
        } else {
          auto g = std::make_unique<GetItem>();
          g->obj = std::move(e);
          g->key = std::move(start);
          e = std::move(g);
        }
        expect_op("]");
      } else if (peek_op("(")) {
        next();
        auto c = std::make_unique<Call>();
        c->callee = std::move(e);
        c->args = arguments();
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  ExprPtr filters(ExprPtr e) {
    while (true) {
      if (peek_op("|")) {
        next();
        const Token n = next();
        if (n.type != Token::Type::Name) throw Error("expected a filter name after '|'");
        auto f = std::make_unique<Filter>();
        f->obj = std::move(e);
        f->name = n.text;
        if (peek_op("(")) {
          next();
          f->args = arguments();
        }
        e = std::move(f);
      } else if (peek_name("is")) {
        next();
        auto t = std::make_unique<Test>();
        t->obj = std::move(e);
        if (peek_name("not")) {
          next();
          t->negated = true;
        }
        const Token n = next();
        if (n.type != Token::Type::Name) throw Error("expected a test name after 'is'");
        t->name = n.text;
        if (peek_op("(") || peek().type == Token::Type::String || peek().type == Token::Type::Int) {
          throw Error("tests with arguments ('is " + n.text + " ...') are outside the subset");
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
  Args arguments() {  // after "(", through ")"
    Args a;
    while (!peek_op(")")) {
      if (peek().type == Token::Type::Name && pos_ + 1 < toks_->size() && (*toks_)[pos_ + 1].type == Token::Type::Op &&
          (*toks_)[pos_ + 1].text == "=") {
        const std::string k = next().text;
        next();
        a.named.emplace_back(k, expression());
      } else {
        if (!a.named.empty()) throw Error("positional argument after a keyword argument");
        a.positional.push_back(expression());
      }
      if (!peek_op(",")) break;
      next();
    }
    expect_op(")");
    return a;
  }

  // ---- token stream of the current tag ----
  void begin(Chunk& ch) {
    toks_ = &ch.tokens;
    pos_ = 0;
  }
  const Token& peek() const { return (*toks_)[pos_]; }
  Token next() {
    const Token& t = (*toks_)[pos_];
    if (t.type != Token::Type::End) ++pos_;
    return t;
  }
  bool peek_op(const char* op) const { return peek().type == Token::Type::Op && peek().text == op; }
  bool peek_name(const char* n) const { return peek().type == Token::Type::Name && peek().text == n; }
  void expect_op(const char* op) {
    if (!peek_op(op)) throw Error(std::string("expected '") + op + "', got '" + peek().text + "'");
    next();
  }
  void expect_name(const char* n) {
    if (!peek_name(n)) throw Error(std::string("expected '") + n + "', got '" + peek().text + "'");
    next();
  }
  void finish() {
    if (peek().type != Token::Type::End) throw Error("unexpected '" + peek().text + "' at the end of a tag");
  }
  static ExprPtr lit(Value v) { return std::make_unique<Literal>(std::move(v)); }
  static ExprPtr binary(const std::string& op, ExprPtr l, ExprPtr r) {
    auto b = std::make_unique<Binary>();
    b->op = op;
    b->l = std::move(l);
    b->r = std::move(r);
    return b;
  }

  std::vector<Chunk> chunks_;
  size_t ci_ = 0;
  std::vector<Token>* toks_ = nullptr;
  size_t pos_ = 0;
};

}  // namespace

std::string render(const std::string& source, const nlohmann::json& context) {
  Body program = Parser(Lexer(source).chunks()).parse_template();
  Ctx c;
  Dict globals;
  for (const auto& [k, v] : context.items()) globals[k] = from_json(v);
  c.frames.push_back(std::move(globals));
  run_body(program, c);
  return c.out;
}

}  // namespace qbench::test::jinja
