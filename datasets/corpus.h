// Turning items into training text, and keeping evaluation items out of the training corpus.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "datasets/example.h"

namespace qbench {

// The text a model is trained on for one item: context + target; for multiple choice
// context + choices[gold]; for partial-scoring items (Winogrande) choices[gold] + target.
// A '\n' is appended when the text does not already end with one, so that items concatenate
// into a corpus one item per line (generated targets already end with '\n').
std::string training_text(const Example& e);

// Removes from `train_items` every item whose context equals the context of an evaluation item
// (empty contexts, as in story items, are not compared), or whose training_text equals an
// evaluation item's. Keeps the order of the rest; returns how many were removed.
size_t dedup_against(std::vector<Example>& train_items, const std::vector<Example>& eval_items);

}  // namespace qbench
