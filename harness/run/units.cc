#include "harness/run/units.h"

#include <tbb/parallel_for.h>

#include "engine/core/error.h"
#include "harness/cli.h"
#include "harness/sha256.h"
#include "tasks/evaluate.h"

namespace qbench::run {
using json = nlohmann::json;

SuiteData build_suite(const std::string& name, const std::vector<TaskDef>& all_tasks, uint64_t seed, int64_t limit) {
  SuiteData sd;
  sd.name = name;
  Sha256 h;
  for (const auto& tn : suite_tasks(name)) {
    TaskDef t = find_task(all_tasks, tn);
    if (!t.source.generator.empty()) t.source.seed = seed;
    sd.items.push_back(task_items(t, limit));
    for (const auto& e : sd.items.back()) {
      h.update(cli::json_text(json{{"id", e.id}, {"context", e.context}, {"target", e.target}, {"answer", e.answer},
                                   {"choices", e.choices}}));
    }
    sd.task_defs.push_back(t.to_json());
    sd.has_chat = sd.has_chat || t.chat;
    sd.tasks.push_back(std::move(t));
  }
  sd.items_sha = h.hex_digest();
  return sd;
}

namespace {

// Sums of `per_position` over consecutive chunks of `per_chunk` positions.
std::vector<json> chunk_records(const std::vector<float>& per_position, int64_t per_chunk, const char* key) {
  std::vector<json> out;
  for (int64_t ch = 0; per_chunk > 0 && (ch + 1) * per_chunk <= int64_t(per_position.size()); ++ch) {
    double s = 0;
    for (int64_t k = 0; k < per_chunk; ++k) s += per_position[size_t(ch * per_chunk + k)];
    out.push_back({{"chunk", ch}, {key, s}, {"count", per_chunk}});
  }
  return out;
}

}  // namespace

UnitOutput perplexity_unit(const Model& m, const std::vector<int32_t>& tokens, const PerplexityOptions& opt) {
  PerplexityOptions o = opt;
  o.keep_token_nll = true;
  const PerplexityResult r = llama_perplexity(m, tokens, o);
  return {{{"ppl", r.ppl}, {"ppl_stderr", r.ppl_stderr}, {"mean_nll", r.stats.mean()}, {"n_ctx", r.n_ctx},
           {"n_chunks", r.n_chunks}, {"n_scored", r.stats.count}, {"n_text_tokens", r.n_text_tokens},
           {"protocol", "llama.cpp llama-perplexity"}},
          chunk_records(r.token_nll, scored_per_chunk(r.n_ctx), "nll_sum")};
}

UnitOutput kl_unit(const Model& m, const ReferenceLogits& ref, const std::vector<int32_t>& tokens,
                   const PerplexityOptions& opt) {
  const KlResult k = kl_divergence(m, ref, tokens, opt);
  return {{{"kld_mean", k.kld_mean}, {"kld_stderr", k.kld_stderr}, {"kld_max", k.kld_max}, {"kld_p99", k.kld_p99},
           {"kld_median", k.kld_median}, {"same_top", k.same_top}, {"same_top_stderr", k.same_top_stderr},
           {"ppl_q", k.ppl_q}, {"ppl_ref", k.ppl_ref}, {"ln_ppl_ratio", k.ln_ppl_ratio},
           {"ln_ppl_ratio_stderr", k.ln_ppl_ratio_stderr}, {"delta_p_rms", k.delta_p_rms},
           {"n_positions", k.n_positions}, {"top_k", ref.top_k}},
          chunk_records(k.kld, scored_per_chunk(opt.n_ctx), "kld_sum")};
}

UnitOutput suite_unit(const Model& m, const SuiteData& sd, int64_t n_ctx, const ChatTemplate* chat) {
  QB_ASSERT(chat != nullptr || !sd.has_chat);
  const LanguageModel lm(m, n_ctx);
  std::vector<TaskResult> results(sd.tasks.size());
  tbb::parallel_for(size_t(0), sd.tasks.size(),
                    [&](size_t t) { results[t] = evaluate_task(lm, sd.tasks[t], sd.items[t], true, chat); });
  UnitOutput out;
  out.result = {{"tasks", json::array()}};
  for (const auto& r : results) {
    out.result["tasks"].push_back(r.to_json());
    for (const auto& it : r.items) {
      json rec = it;
      rec["task"] = r.task;
      out.records.push_back(std::move(rec));
    }
  }
  return out;
}

}  // namespace qbench::run
