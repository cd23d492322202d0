// A small subset of Jinja2, enough to render the chat templates of Hugging Face
// tokenizer_config.json files: the test oracle of tasks/chat_template.cc. It knows nothing of
// the named templates; what it renders comes from the template text alone.
//
// Hugging Face renders chat templates with jinja2's sandboxed environment, trim_blocks=True and
// lstrip_blocks=True (the first newline after a block tag is dropped; spaces and tabs before a
// block tag on its own line are dropped); so does this.
//
// The subset: text, {{ }}, {% %} and {# #} with '-' white-space control; if/elif/else, for
// (one loop variable; loop.index, index0, first, last, length, revindex, revindex0; else),
// set (a name, or an attribute of a namespace()); literals (strings, integers, floats,
// true/false/none, lists, dicts); + - * / // % ~, comparisons, in / not in, and / or / not,
// x if c else y; attribute and item access, negative indices and slices ([1:], [::-1]);
// filters trim, length, count, upper, lower, string, first, last, default, join, tojson;
// tests defined, undefined, none, string, number, integer, boolean, true, false, mapping,
// sequence, iterable; string methods strip, lstrip, rstrip, startswith, endswith, split,
// upper, lower, title, capitalize, replace; dict methods get, keys, values; the globals
// raise_exception, namespace, range. Anything else (macros, call blocks, tuple unpacking,
// loop filters, ...) is an Error naming it, never a silent difference.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace qbench::test::jinja {

// A template outside the subset, a syntax error, or an error while rendering.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// raise_exception(message) called by the template (it refuses the conversation).
struct Raised : Error {
  using Error::Error;
};

// Renders `source` with the variables of `context` (a JSON object: messages, bos_token,
// eos_token, add_generation_prompt, ...). Variables not given are undefined.
std::string render(const std::string& source, const nlohmann::json& context);

}  // namespace qbench::test::jinja
