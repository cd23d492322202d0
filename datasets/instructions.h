// Checkers for verifiable instructions, with the semantics of IFEval's `instructions.py`
// (google-research/instruction_following_eval) for the ids listed below, re-implemented here.
//
// Supported ids (IFEval vocabulary) and their kwargs:
//   change_case:english_capital                   {}  response has a cased letter and none lower-case
//   change_case:english_lowercase                 {}  response has a cased letter and none upper-case
//   length_constraints:number_words               {"relation": "less than"|"at least"|"exactly",
//                                                   "num_words": int}   ("exactly" is a qbench
//                                                   extension; IFEval itself has only the first two)
//   startend:end_checker                          {"end_phrase": str}
//   detectable_format:json_format                 {}  whole response (optionally in ``` fences) is JSON
//   punctuation:no_comma                          {}
//   length_constraints:nth_paragraph_first_word   {"num_paragraphs": int, "nth_paragraph": int,
//                                                   "first_word": str}  paragraphs split on "\n\n"
//   startend:quotation                            {}  response wrapped in double quotes
//
// Departures from IFEval, all forced by having no Python/NLTK/langdetect here:
//  - english_capital / english_lowercase do not run language identification (IFEval also requires
//    langdetect to say "en"); case is judged on ASCII letters, and non-ASCII letters are ignored.
//  - Words are counted as runs of word characters, like NLTK's RegexpTokenizer(r"\w+"): ASCII
//    letters, digits and '_' plus every non-ASCII code point outside the common Unicode
//    punctuation/space blocks (an approximation of Python's Unicode \w).
//  - JSON is parsed by nlohmann::json, which, unlike Python's json.loads, rejects NaN/Infinity.
// kwargs keys with a null value are ignored (the Hugging Face copy of IFEval stores every key);
// a missing required key, a wrong type or an unknown non-null key is an error.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

// True when `response` follows instruction `instruction_id` with parameters `kwargs`.
// Throws qbench::Error for an unsupported id or kwargs that do not fit it.
bool check_instruction(const std::string& instruction_id, const nlohmann::json& kwargs,
                       const std::string& response);

// Throws qbench::Error (naming the id, the key and the value) unless `kwargs` fits `instruction_id`.
void validate_instruction_kwargs(const std::string& instruction_id, const nlohmann::json& kwargs);

bool is_supported_instruction(const std::string& instruction_id);
std::vector<std::string> supported_instructions();  // sorted

// Number of words as IFEval's count_words counts them (runs of \w characters).
int64_t count_words_ifeval(std::string_view text);

}  // namespace qbench
