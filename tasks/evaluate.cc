#include "tasks/evaluate.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "engine/core/rng.h"
#include "datasets/instructions.h"
#include "engine/core/error.h"

namespace qbench {
namespace {

struct ItemScore {
  // exact-match / instruction / multiple choice: correct (0/1); acc_norm in correct_norm
  double correct = 0.0, correct_norm = 0.0;
  // instruction: followed instructions / total instructions of the item
  double followed = 0.0, instructions = 0.0;
  // log-likelihood kinds
  double logprob = 0.0;
  double bytes = 0.0, words = 0.0;
  // Tokens cut from the left to fit the window (all requests of the item), and continuation
  // tokens among them that were not scored.
  int64_t truncated = 0, unscored = 0;
  nlohmann::json record;
};

int64_t count_words(const std::string& s) {
  int64_t n = 0;
  bool in = false;
  for (char c : s) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!space && !in) ++n;
    in = !space;
  }
  return n;
}

// `chat`: the template of a chat task, nullptr for other tasks.
ItemScore score_item(const LanguageModel& lm, const TaskDef& t, const Example& e, const ChatTemplate* chat) {
  ItemScore s;
  s.record = {{"id", e.id}};
  const std::string context = chat ? render_user_turn(*chat, chat_user_turn(e)) : e.context;
  const SpecialText special = chat ? SpecialText::Parse : SpecialText::Plain;
  switch (t.kind) {
    case TaskKind::MultipleChoice: {
      if (e.choices.empty() || e.gold < 0 || e.gold >= int(e.choices.size())) {
        throw Error("task " + t.name + ": item " + e.id + " is not a multiple-choice item");
      }
      std::vector<Loglikelihood> ll;
      if (choices_are_contexts(e)) {  // Winogrande partial scoring: same ending, different contexts
        for (const auto& c : e.choices) ll.push_back(lm.loglikelihood(c, e.target, special));
      } else {
        ll = lm.loglikelihoods(context, e.choices, special);
      }
      // acc: highest summed log-likelihood; acc_norm: highest log-likelihood per byte of the
      // continuation (lm-eval). Ties go to the lower index.
      std::vector<double> lps, norms;
      for (size_t i = 0; i < ll.size(); ++i) {
        const size_t len = choices_are_contexts(e) ? e.target.size() : e.choices[i].size();
        lps.push_back(ll[i].logprob);
        norms.push_back(ll[i].logprob / double(std::max<size_t>(len, 1)));
      }
      for (const auto& l : ll) {
        s.truncated += l.truncated;
        s.unscored += l.unscored;
      }
      const int best = int(std::max_element(lps.begin(), lps.end()) - lps.begin());
      const int best_norm = int(std::max_element(norms.begin(), norms.end()) - norms.begin());
      s.correct = best == e.gold;
      s.correct_norm = best_norm == e.gold;
      s.record["prediction"] = best;
      s.record["prediction_norm"] = best_norm;
      s.record["gold"] = e.gold;
      s.record["logprobs"] = lps;
      s.record["correct"] = s.correct > 0;
      break;
    }
    case TaskKind::ExactMatch: {
      const Generation g = lm.generate_until(context, t.stop, t.max_tokens, special);
      s.truncated = g.truncated;
      const std::string got = extract_answer(t.extract, g.text);
      const std::string& want = e.answer;
      s.correct = !got.empty() && got == want;
      s.record["output"] = g.text;
      s.record["prediction"] = got;
      s.record["answer"] = want;
      s.record["correct"] = s.correct > 0;
      break;
    }
    case TaskKind::Instruction: {
      const Generation g = lm.generate_until(context, t.stop, t.max_tokens, special);
      s.truncated = g.truncated;
      std::vector<std::pair<std::string, nlohmann::json>> checks;
      if (e.meta.contains("instruction_id")) {
        checks.emplace_back(e.meta.at("instruction_id").get<std::string>(), e.meta.value("kwargs", nlohmann::json::object()));
      } else if (e.meta.contains("instruction_id_list")) {
        const auto& ids = e.meta.at("instruction_id_list");
        const auto& kw = e.meta.at("kwargs");
        for (size_t i = 0; i < ids.size(); ++i) checks.emplace_back(ids[i].get<std::string>(), kw.at(i));
      } else {
        throw Error("task " + t.name + ": item " + e.id + " names no instruction");
      }
      std::string response = g.text;
      const size_t a = response.find_first_not_of(' ');
      response = a == std::string::npos ? std::string() : response.substr(a);
      nlohmann::json per = nlohmann::json::array();
      for (const auto& [id, kw] : checks) {
        const bool ok = check_instruction(id, kw, response);
        s.followed += ok;
        per.push_back({{"instruction_id", id}, {"followed", ok}});
      }
      s.instructions = double(checks.size());
      s.correct = s.followed == s.instructions;
      s.record["output"] = g.text;
      s.record["instructions"] = per;
      s.record["correct"] = s.correct > 0;
      break;
    }
    case TaskKind::TargetLoglik: {
      const std::string& target = e.target;
      if (target.empty()) throw Error("task " + t.name + ": item " + e.id + " has no target");
      const Loglikelihood ll = lm.loglikelihood(context, target, special);
      s.truncated = ll.truncated;
      s.unscored = ll.unscored;
      s.logprob = ll.logprob;
      s.bytes = double(target.size());
      s.correct = ll.greedy;
      s.record["logprob"] = ll.logprob;
      s.record["tokens"] = ll.n_tokens;
      s.record["greedy"] = ll.greedy;
      break;
    }
    case TaskKind::RollingLoglik: {
      const std::string text = e.context + e.target;
      const RollingLoglikelihood r = lm.loglikelihood_rolling(text);
      s.logprob = r.logprob;
      s.bytes = double(text.size());
      s.words = double(count_words(text));
      s.record["logprob"] = r.logprob;
      s.record["tokens"] = r.n_tokens;
      break;
    }
  }
  if (s.truncated > 0) {
    s.record["truncated_tokens"] = s.truncated;
    if (s.unscored > 0) s.record["unscored_tokens"] = s.unscored;
  }
  return s;
}

}  // namespace

const MetricValue& TaskResult::metric(const std::string& name) const {
  for (const auto& m : metrics) {
    if (m.name == name) return m;
  }
  QB_ASSERT(false && "no such metric");
  return metrics.front();
}

nlohmann::json TaskResult::to_json() const {
  nlohmann::json ms = nlohmann::json::object();
  for (const auto& m : metrics) {
    ms[m.name] = {{"value", m.value}, {"stderr", m.stderr}, {"higher_is_better", m.higher_is_better},
                  {"stderr_method", m.stderr_method}};
  }
  nlohmann::json j = {{"task", task}, {"version", version}, {"kind", task_kind_name(kind)}, {"n_items", n_items},
                      {"truncated_items", n_truncated}, {"unscored_items", n_unscored}, {"metrics", ms}, {"seconds", seconds}};
  if (!chat_template.empty()) j["chat_template"] = chat_template;
  return j;
}

const std::string& chat_user_turn(const Example& e) {
  if (e.meta.is_object()) {
    const auto it = e.meta.find("user");
    if (it != e.meta.end() && it->is_string()) return it->get_ref<const std::string&>();
  }
  return e.context;
}

MetricValue mean_metric(const std::string& name, const std::vector<double>& x, bool higher_is_better) {
  MetricValue m{name, 0.0, 0.0, higher_is_better, "analytic"};
  const double n = double(x.size());
  if (x.empty()) return m;
  double sum = 0.0;
  for (double v : x) sum += v;
  m.value = sum / n;
  if (x.size() > 1) {
    double ss = 0.0;
    for (double v : x) ss += (v - m.value) * (v - m.value);
    m.stderr = std::sqrt(ss / (n - 1) / n);  // sample std / sqrt(n)
  }
  return m;
}

double bootstrap_stderr(size_t n, const std::function<double(const std::vector<size_t>&)>& statistic,
                        int resamples, uint64_t seed) {
  if (n < 2) return 0.0;
  Rng rng(seed);
  std::vector<size_t> idx(n);
  double sum = 0.0, sum2 = 0.0;
  for (int r = 0; r < resamples; ++r) {
    for (auto& i : idx) i = size_t(rng.uniform(0, int64_t(n) - 1));
    const double v = statistic(idx);
    sum += v;
    sum2 += v * v;
  }
  const double mean = sum / resamples;
  return std::sqrt(std::max(0.0, sum2 / resamples - mean * mean) * resamples / (resamples - 1));
}

TaskResult evaluate_task(const LanguageModel& lm, const TaskDef& t, const std::vector<Example>& items, bool parallel,
                         const ChatTemplate* chat) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!t.chat) {
    chat = nullptr;
  } else if (chat == nullptr) {
    chat = choose_chat_template(lm.model(), "").tmpl;
  }
  std::vector<ItemScore> scores(items.size());
  auto one = [&](size_t i) { scores[i] = score_item(lm, t, items[i], chat); };
  if (parallel) {
    tbb::parallel_for(size_t(0), items.size(), one);
  } else {
    for (size_t i = 0; i < items.size(); ++i) one(i);
  }
  TaskResult r;
  r.task = t.name;
  r.version = t.version;
  if (chat) r.chat_template = chat->name;
  r.kind = t.kind;
  r.n_items = int64_t(items.size());
  auto column = [&](double ItemScore::*f) {
    std::vector<double> v;
    v.reserve(scores.size());
    for (const auto& s : scores) v.push_back(s.*f);
    return v;
  };
  switch (t.kind) {
    case TaskKind::MultipleChoice:
      r.metrics.push_back(mean_metric("acc", column(&ItemScore::correct)));
      r.metrics.push_back(mean_metric("acc_norm", column(&ItemScore::correct_norm)));
      break;
    case TaskKind::ExactMatch:
      r.metrics.push_back(mean_metric("exact_match", column(&ItemScore::correct)));
      break;
    case TaskKind::Instruction: {
      r.metrics.push_back(mean_metric("prompt_level_acc", column(&ItemScore::correct)));
      // instruction level: followed / total over all instructions, bootstrap over items
      auto share = [&](const std::vector<size_t>& idx) {
        double f = 0, n = 0;
        for (size_t i : idx) {
          f += scores[i].followed;
          n += scores[i].instructions;
        }
        return n > 0 ? f / n : 0.0;
      };
      std::vector<size_t> all(scores.size());
      std::iota(all.begin(), all.end(), 0);
      r.metrics.push_back({"inst_level_acc", share(all), bootstrap_stderr(scores.size(), share), true, "bootstrap"});
      break;
    }
    case TaskKind::TargetLoglik: {
      r.metrics.push_back(mean_metric("logprob", column(&ItemScore::logprob)));
      auto bpb = [&](const std::vector<size_t>& idx) {
        double lp = 0, b = 0;
        for (size_t i : idx) {
          lp += scores[i].logprob;
          b += scores[i].bytes;
        }
        return b > 0 ? -lp / (b * std::log(2.0)) : 0.0;
      };
      std::vector<size_t> all(scores.size());
      std::iota(all.begin(), all.end(), 0);
      r.metrics.push_back({"bits_per_byte", bpb(all), bootstrap_stderr(scores.size(), bpb), false, "bootstrap"});
      r.metrics.push_back(mean_metric("greedy_match", column(&ItemScore::correct)));
      break;
    }
    case TaskKind::RollingLoglik: {
      std::vector<size_t> all(scores.size());
      std::iota(all.begin(), all.end(), 0);
      auto ratio = [&](double ItemScore::*denom, bool bits) {
        return [&scores, denom, bits](const std::vector<size_t>& idx) {
          double lp = 0, d = 0;
          for (size_t i : idx) {
            lp += scores[i].logprob;
            d += scores[i].*denom;
          }
          if (d <= 0) return 0.0;
          return bits ? -lp / (d * std::log(2.0)) : std::exp(-lp / d);
        };
      };
      const auto word_ppl = ratio(&ItemScore::words, false), byte_ppl = ratio(&ItemScore::bytes, false),
                 bpb = ratio(&ItemScore::bytes, true);
      r.metrics.push_back({"word_perplexity", word_ppl(all), bootstrap_stderr(scores.size(), word_ppl), false, "bootstrap"});
      r.metrics.push_back({"byte_perplexity", byte_ppl(all), bootstrap_stderr(scores.size(), byte_ppl), false, "bootstrap"});
      r.metrics.push_back({"bits_per_byte", bpb(all), bootstrap_stderr(scores.size(), bpb), false, "bootstrap"});
      break;
    }
  }
  for (const auto& s : scores) {
    r.n_truncated += s.truncated > 0;
    r.n_unscored += s.unscored > 0;
  }
  r.items.reserve(scores.size());
  for (auto& s : scores) r.items.push_back(std::move(s.record));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace qbench
