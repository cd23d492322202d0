#include "engine/tokenizer/regex_split.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/core/error.h"

namespace qbench {

std::string widen_regex_whitespace(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      ++i;
      if (n == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (n == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

struct RegexSplitter::Pattern {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Pattern() { pcre2_code_free(code); }
};

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// Per-thread match data and JIT stack, so that one compiled splitter serves every thread.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

}  // namespace

RegexSplitter::RegexSplitter(const std::vector<std::string>& patterns) {
  for (const std::string& src : patterns) {
    const std::string widened = widen_regex_whitespace(src);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    auto pat = std::make_shared<Pattern>();
    pat->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(widened.data()), widened.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_off, nullptr);
    if (pat->code == nullptr) {
      throw Error("pre-tokenizer regex '" + src + "' does not compile: " + pcre2_message(err) +
                  " (at offset " + std::to_string(err_off) + ")");
    }
    pat->jit = pcre2_jit_compile(pat->code, PCRE2_JIT_COMPLETE) == 0;
    patterns_.push_back(std::move(pat));
    sources_.push_back(src);
  }
}

void RegexSplitter::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  pieces.clear();
  if (text.empty()) return;
  pieces.push_back(text);
  if (patterns_.empty()) return;
  thread_local MatchScratch scratch;
  std::vector<std::string_view> next;
  for (const auto& pat : patterns_) {
    next.clear();
    for (const std::string_view piece : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t pos = 0, gap_start = 0;
      while (pos < piece.size()) {
        const int rc = pat->jit
            ? pcre2_jit_match(pat->code, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, scratch.data, scratch.context)
            : pcre2_match(pat->code, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) throw Error("pre-tokenizer regex failed on a text piece: " + pcre2_message(rc));
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data);
        const size_t b = ov[0], e = ov[1];
        if (e == b) {  // an empty match splits nothing; step over one character
          size_t step = 1;
          while (b + step < piece.size() && (uint8_t(piece[b + step]) & 0xC0) == 0x80) ++step;
          pos = b + step;
          continue;
        }
        if (b > gap_start) next.push_back(piece.substr(gap_start, b - gap_start));
        next.push_back(piece.substr(b, e - b));
        pos = gap_start = e;
      }
      if (gap_start < piece.size()) next.push_back(piece.substr(gap_start));
    }
    pieces.swap(next);
  }
}

}  // namespace qbench
