#include "tasks/perplexity.h"

#include <tbb/parallel_for.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>

#include "engine/core/error.h"
#include "engine/model/forward.h"

namespace qbench {

double NllStats::ppl() const { return std::exp(mean()); }

double NllStats::ppl_stderr() const {
  if (count < 2) return 0.0;
  const double m = mean();
  const double var = sum2 / double(count) - m * m;
  return var > 0.0 ? ppl() * std::sqrt(var / double(count - 1)) : 0.0;
}

namespace {

// A small pool of inference states, so that a thread that steals another chunk while waiting
// inside a nested parallel matmul never shares a KV cache with the chunk it interrupted.
class ForwardPool {
 public:
  ForwardPool(const Model& m, int64_t n_ctx) : model_(m), n_ctx_(n_ctx) {}
  std::unique_ptr<Forward> acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        auto f = std::move(free_.back());
        free_.pop_back();
        f->reset();
        return f;
      }
    }
    return std::make_unique<Forward>(model_, n_ctx_);
  }
  void release(std::unique_ptr<Forward> f) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(f));
  }

 private:
  const Model& model_;
  int64_t n_ctx_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Forward>> free_;
};

// -log softmax(logits)[target], as llama.cpp's log_softmax: float max, double sum of expf.
double token_nll(const float* logits, int64_t n_vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(logits[i] - mx);
  return -(double(logits[target] - mx) - std::log(sum));
}

}  // namespace

int64_t for_each_scored_chunk(const Model& model, const std::vector<int32_t>& tokens,
                              const PerplexityOptions& opt, const ChunkFn& fn, const ProgressFn& progress) {
  const Tokenizer& tok = model.require_tokenizer();
  const int64_t n_ctx = opt.n_ctx;
  if (n_ctx < 4) throw Error("--ctx must be at least 4, got " + std::to_string(n_ctx));
  if (opt.max_chunks == 0 || opt.max_chunks < -1) {
    throw Error("--chunks must be -1 (all) or at least 1, got " + std::to_string(opt.max_chunks));
  }
  const int64_t n_tokens = int64_t(tokens.size());
  if (n_tokens / 2 < n_ctx) {  // n_tokens < 2 * n_ctx without overflowing for a huge --ctx
    throw Error("the text has " + std::to_string(n_tokens) + " tokens; perplexity with a context of " +
                std::to_string(n_ctx) + " needs at least twice as many");
  }
  int64_t n_chunks = n_tokens / n_ctx;
  if (opt.max_chunks >= 0) n_chunks = std::min(n_chunks, opt.max_chunks);
  const bool add_bos = tok.add_bos();
  ForwardPool pool(model, n_ctx);
  std::atomic<int64_t> done{0};
  std::mutex progress_mu;
  tbb::parallel_for(int64_t(0), n_chunks, [&](int64_t c) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (add_bos) chunk[0] = tok.bos();
    auto fwd = pool.acquire();
    std::vector<float> logits;
    // Positions first .. n_ctx-2 are scored; the last token's logits are never needed.
    try {
      fwd->eval(std::span<const int32_t>(chunk.data(), size_t(n_ctx - 1)), logits, first_logit_position(opt));
    } catch (const Error& e) {
      throw Error("chunk " + std::to_string(c) + " (text tokens " + std::to_string(c * n_ctx) + ".." +
                  std::to_string((c + 1) * n_ctx - 1) + "): " + e.what());
    }
    pool.release(std::move(fwd));
    fn(c, logits.data(), chunk);
    const int64_t d = ++done;
    if (progress) {
      std::lock_guard<std::mutex> lock(progress_mu);
      progress(d, n_chunks);
    }
  });
  return n_chunks;
}

PerplexityResult llama_perplexity(const Model& model, const std::vector<int32_t>& tokens,
                                  const PerplexityOptions& opt, const ProgressFn& progress) {
  const int64_t n_ctx = opt.n_ctx, first = n_ctx / 2, per_chunk = scored_per_chunk(n_ctx);
  const int64_t V = model.config.n_vocab;
  const int64_t max_chunks = std::max<int64_t>(0, int64_t(tokens.size()) / std::max<int64_t>(n_ctx, 1));
  std::vector<NllStats> chunk_stats(static_cast<size_t>(max_chunks)), chunk_rolling(static_cast<size_t>(max_chunks));
  std::vector<int64_t> chunk_bytes(static_cast<size_t>(max_chunks)), chunk_words(static_cast<size_t>(max_chunks));
  const int64_t row0 = first_logit_position(opt);
  const Tokenizer& tok = model.require_tokenizer();
  std::vector<float> token_nll_all(opt.keep_token_nll ? size_t(max_chunks * per_chunk) : 0);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n_chunks = for_each_scored_chunk(
      model, tokens, opt,
      [&](int64_t c, const float* logits, const std::vector<int32_t>& chunk) {
        NllStats s;
        if (opt.rolling) {
          NllStats all;
          std::string text;
          for (int64_t p = 0; p + 1 < n_ctx; ++p) {
            all.add(token_nll(logits + p * V, V, chunk[size_t(p + 1)]));
            text += tok.decode_token(chunk[size_t(p + 1)]);
          }
          int64_t words = 0;
          bool in_word = false;
          for (char ch : text) {
            const bool space = ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r';
            if (!space && !in_word) ++words;
            in_word = !space;
          }
          chunk_rolling[size_t(c)] = all;
          chunk_bytes[size_t(c)] = int64_t(text.size());
          chunk_words[size_t(c)] = words;
        }
        for (int64_t i = 0; i < per_chunk; ++i) {
          const double nll = token_nll(logits + (first - row0 + i) * V, V, chunk[size_t(first + i + 1)]);
          s.add(nll);
          if (opt.keep_token_nll) token_nll_all[size_t(c * per_chunk + i)] = float(nll);
        }
        chunk_stats[size_t(c)] = s;
      },
      progress);

  PerplexityResult r;
  r.n_ctx = n_ctx;
  r.n_text_tokens = int64_t(tokens.size());
  r.n_chunks = n_chunks;
  for (int64_t c = 0; c < n_chunks; ++c) {
    r.stats.merge(chunk_stats[size_t(c)]);
    r.rolling.merge(chunk_rolling[size_t(c)]);
    r.rolling_bytes += chunk_bytes[size_t(c)];
    r.rolling_words += chunk_words[size_t(c)];
  }
  if (opt.rolling && r.rolling_bytes > 0 && r.rolling_words > 0) {
    r.word_perplexity = std::exp(r.rolling.sum / double(r.rolling_words));
    r.byte_perplexity = std::exp(r.rolling.sum / double(r.rolling_bytes));
    r.bits_per_byte = r.rolling.sum / (double(r.rolling_bytes) * std::log(2.0));
  }
  // Never "PPL = 1.0000" from nothing (exp of an empty mean), nor nan/inf.
  if (r.stats.count == 0) throw Error("perplexity scored no tokens (" + std::to_string(n_chunks) + " chunks)");
  if (!std::isfinite(r.stats.sum)) throw Error("perplexity: the sum of negative log-likelihoods is not finite");
  r.ppl = r.stats.ppl();
  r.ppl_stderr = r.stats.ppl_stderr();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = r.seconds > 0 ? double(n_chunks * n_ctx) / r.seconds : 0.0;
  token_nll_all.resize(size_t(n_chunks * per_chunk));
  r.token_nll = std::move(token_nll_all);
  return r;
}

}  // namespace qbench
