#include "datasets/corpus.h"

#include <algorithm>
#include <unordered_set>

namespace qbench {

std::string training_text(const Example& e) {
  std::string text;
  if (e.is_multiple_choice() && e.gold >= 0 && static_cast<size_t>(e.gold) < e.choices.size()) {
    const std::string& right = e.choices[static_cast<size_t>(e.gold)];
    text = choices_are_contexts(e) ? right + e.target : e.context + right;
  } else {
    text = e.context + e.target;
  }
  if (text.empty() || text.back() != '\n') text += '\n';
  return text;
}

size_t dedup_against(std::vector<Example>& train_items, const std::vector<Example>& eval_items) {
  std::unordered_set<std::string> contexts, texts;
  for (const auto& e : eval_items) {
    if (!e.context.empty()) contexts.insert(e.context);
    texts.insert(training_text(e));
  }
  const size_t before = train_items.size();
  std::erase_if(train_items, [&](const Example& t) {
    return (!t.context.empty() && contexts.count(t.context) != 0) || texts.count(training_text(t)) != 0;
  });
  return before - train_items.size();
}

}  // namespace qbench
