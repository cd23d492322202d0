#include "quantizers/quantize_model.h"

#include <tbb/parallel_for.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <regex>

#include "engine/core/error.h"
#include "quantizers/qat_spec.h"
#include "quantizers/registry.h"

namespace qbench::quant {
namespace {

bool is_ggml(const SchemeSpec& s) { return registry().method(s).ggml_type.has_value(); }

// F32 copy of a matrix (or a view of it when it is F32 already).
struct F32Matrix {
  std::vector<float> owned;
  const float* data = nullptr;
};
F32Matrix to_f32(const Matrix& w) {
  F32Matrix out;
  if (w.type == TensorType::F32) {
    out.data = reinterpret_cast<const float*>(w.data);
    return out;
  }
  out.owned.resize(size_t(w.rows * w.cols));
  const auto deq = w.traits().dequantize_row;
  tbb::parallel_for(int64_t(0), w.rows, [&](int64_t r) { deq(w.row(r), out.owned.data() + r * w.cols, w.cols); });
  out.data = out.owned.data();
  return out;
}

}  // namespace

SchemeSpec spec_for_type(TensorType t) {
  for (const Method& m : registry().methods()) {
    if (m.ggml_type == t) return parse_scheme(m.name);
  }
  QB_ASSERT(false && "no scheme writes this type");
  return {};
}

Recipe make_recipe(std::string_view text) {
  if (const size_t plus = text.rfind("+kv="); plus != std::string_view::npos) {
    if (plus == 0) throw Error("scheme '" + std::string(text) + "': weights' scheme missing before +kv= (e.g. f16+kv=q8_0)");
    Recipe r = make_recipe(text.substr(0, plus));
    r.name = std::string(text);
    r.kv_cache = parse_kv_cache(text.substr(plus + 4));
    return r;
  }
  Recipe r;
  r.name = std::string(text);
  const bool plain = text.find_first_of(",:{") == std::string_view::npos;
  if (plain) {
    if (const auto f = find_ftype(text)) {
      r.ftype = f;
      r.scheme = spec_for_type(ftype_info(*f).base);
      return r;
    }
  }
  if (!text.empty() && text.front() == '{') {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw Error("scheme JSON does not parse: " + std::string(e.what()));
    }
    r.scheme = parse_scheme_json(j);
  } else {
    r.scheme = parse_scheme(text);
  }
  return r;
}

TensorRule parse_rule(std::string_view text) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) {
    throw Error("--tensor-type expects PATTERN=SCHEME, got '" + std::string(text) + "'");
  }
  TensorRule rule{std::string(text.substr(0, eq)), parse_scheme(text.substr(eq + 1))};
  try {
    std::regex re(rule.pattern);
  } catch (const std::regex_error& e) {
    throw Error("--tensor-type pattern '" + rule.pattern + "' is not a valid regular expression: " + e.what());
  }
  return rule;
}

uint32_t gguf_file_type(const Recipe& r, bool all_ggml) {
  if (!all_ggml) return 1024;  // LLAMA_FTYPE_GUESSED
  if (r.ftype) return ftype_info(*r.ftype).file_type;
  if (r.scheme.method == "f32") return 0;
  if (r.scheme.method == "fp16") return 1;
  if (r.scheme.method == "bf16") return 32;
  return 1024;
}

std::vector<TensorPlan> plan_model(const Model& m, const Recipe& r) {
  std::vector<std::pair<std::string, const Matrix*>> tensors;
  tensors.emplace_back("token_embd.weight", &m.tok_embd);
  for (const auto& t : m.linear_weights()) tensors.push_back(t);
  // llama.cpp's file order puts output.weight right after token_embd; the mix counters only
  // depend on the order of attn_v and ffn_down tensors among themselves.
  std::stable_partition(tensors.begin(), tensors.end(), [](const auto& t) {
    return t.first == "token_embd.weight" || t.first == "output.weight";
  });
  std::vector<std::pair<std::regex, const TensorRule*>> rules;
  for (const auto& rule : r.rules) rules.emplace_back(std::regex(rule.pattern), &rule);
  MixState st;
  st.n_attention_wv = st.n_ffn_down = int(m.config.n_layer);
  st.n_gqa = m.config.n_head / std::max<int64_t>(1, m.config.n_head_kv);
  st.tied_embeddings = m.tied_output;
  std::vector<TensorPlan> plan;
  for (const auto& [name, w] : tensors) {
    TensorPlan p{name, w, std::nullopt, ""};
    const TensorCategory cat = tensor_category(name);
    const TensorRule* manual = nullptr;
    for (const auto& [re, rule] : rules) {
      if (std::regex_search(name, re)) {
        manual = rule;
        break;
      }
    }
    if (cat == TensorCategory::TokenEmbd && r.token_embd) {
      p.spec = r.token_embd;
      p.reason = "--token-embedding-type";
    } else if (cat == TensorCategory::Output && r.output) {
      p.spec = r.output;
      p.reason = "--output-tensor-type";
    } else if (manual) {
      p.spec = manual->spec;
      p.reason = "--tensor-type " + manual->pattern;
    } else if (r.scheme.method == "keep") {
      p.reason = "keep: as stored";
    } else if (r.ftype && !r.pure) {
      p.spec = spec_for_type(llama_mix_type(*r.ftype, name, w->cols, st));
      p.reason = "mix " + std::string(ftype_info(*r.ftype).name);
    } else if (cat == TensorCategory::TokenEmbd && !r.ftype && !is_ggml(r.scheme)) {
      p.reason = "token embedding kept (use --token-embedding-type)";
    } else {
      p.spec = r.scheme;
      p.reason = r.pure ? "pure" : "default";
    }
    if (p.spec && p.spec->method == "keep") p.spec.reset();  // "--tensor-type attn_v=keep"
    plan.push_back(std::move(p));
  }
  return plan;
}

double ErrorStats::sqnr_db() const {
  if (sum_sq_err == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(sum_sq / sum_sq_err);
}

ErrorStats weight_error(const float* w, int64_t rows, int64_t cols, TensorType t, const uint8_t* packed) {
  const TypeTraits& tr = type_traits(t);
  const size_t rb = row_bytes(tr, cols);
  std::vector<double> err(static_cast<size_t>(rows)), sq(static_cast<size_t>(rows));
  tbb::parallel_for(int64_t(0), rows, [&](int64_t r) {
    std::vector<float> y(static_cast<size_t>(cols));
    tr.dequantize_row(packed + size_t(r) * rb, y.data(), cols);
    double e = 0, s = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double x = w[r * cols + c], d = x - double(y[size_t(c)]);
      e += d * d;
      s += x * x;
    }
    err[size_t(r)] = e;
    sq[size_t(r)] = s;
  });
  ErrorStats st;
  for (int64_t r = 0; r < rows; ++r) {  // fixed order: the same sums for any thread count
    st.sum_sq_err += err[size_t(r)];
    st.sum_sq += sq[size_t(r)];
  }
  st.n = rows * cols;
  return st;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The field of `dst` that corresponds to `w`, a matrix of `src` (a copy of the same model).
Matrix* field_of(Model& dst, const Model& src, const Matrix* w) {
  if (w == &src.tok_embd) return &dst.tok_embd;
  if (w == &src.output) return &dst.output;
  for (size_t i = 0; i < src.layers.size(); ++i) {
    const LayerWeights& a = src.layers[i];
    LayerWeights& b = dst.layers[i];
    const std::pair<const Matrix*, Matrix*> fields[] = {{&a.wq, &b.wq},         {&a.wk, &b.wk},         {&a.wv, &b.wv},
                                                        {&a.wo, &b.wo},         {&a.w_gate, &b.w_gate}, {&a.w_up, &b.w_up},
                                                        {&a.w_down, &b.w_down}};
    for (const auto& [from, to] : fields) {
      if (from == w) return to;
    }
  }
  QB_ASSERT(false && "matrix is not a field of the model");
  return nullptr;
}

}  // namespace

bool recipe_needs_calibration(const Model& m, const Recipe& r) {
  // qat trains from the post-training start it names: that start decides.
  if (!r.ftype && is_qat(r.scheme)) return recipe_needs_calibration(m, make_recipe(qat_settings(r.scheme).ptq.to_string()));
  for (const TensorPlan& p : plan_model(m, r)) {
    if (p.spec && registry().method(*p.spec).needs_calibration_text()) return true;
  }
  return false;
}

Model quantize_model(const Model& m, const Recipe& r, QuantizeReport* report, const Calibration* calib,
                     const std::atomic<bool>* cancel) {
  auto check_cancel = [cancel] {
    if (cancel != nullptr && cancel->load()) throw Cancelled();
  };
  QuantizeReport rep;
  const auto t_all = std::chrono::steady_clock::now();
  const bool have_text = calib && !calib->windows.windows.empty();

  // What the plan needs from calibration.
  bool sequential = false, want_importance = false;
  const Method* prep = nullptr;
  std::optional<SchemeSpec> prep_spec;
  for (const TensorPlan& p : plan_model(m, r)) {
    if (!p.spec) continue;
    const Method& me = registry().method(*p.spec);
    if (me.wants_importance(*p.spec)) want_importance = true;
    if (!me.needs_calibration_text()) continue;
    if (p.name == "token_embd.weight") {
      throw Error("token_embd.weight: " + me.name +
                  " quantizes linear weights from their inputs; the token embedding is a lookup table (give it "
                  "another --token-embedding-type)");
    }
    if (!have_text) throw Error("scheme " + p.spec->to_string() + " (for " + p.name + ") needs calibration text: --calib FILE");
    sequential = sequential || me.calib == CalibUse::Sequential;
    if (me.prepare) {
      if (prep_spec && prep_spec->method != p.spec->method) {
        throw Error("schemes " + prep_spec->to_string() + " and " + p.spec->to_string() +
                    " both transform the whole model; a recipe may use only one such method");
      }
      prep = &me;
      prep_spec = *p.spec;
    }
  }
  if (have_text) rep.calibration = calib->windows.description;

  // Phase 1 for model transforms: observe the FP model, rewrite an F32 working copy.
  check_cancel();
  Model work = prep ? f32_working_copy(m) : m;
  if (prep) {
    auto t0 = std::chrono::steady_clock::now();
    const CalibStats stats = collect_stats(m, calib->windows, CollectOptions{true, -1});
    rep.calib_seconds += seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    std::map<std::string, SchemeSpec> specs;
    for (const TensorPlan& p : plan_model(m, r)) {
      if (p.spec) specs.emplace(p.name, *p.spec);
    }
    PrepareNotes prep_notes;
    prep->prepare(
        work,
        [&](const std::string& name) -> const SchemeSpec* {
          const auto it = specs.find(name);
          return it == specs.end() ? nullptr : &it->second;
        },
        stats, prep_notes);
    rep.notes = std::move(prep_notes.decisions);
    rep.fallbacks = std::move(prep_notes.fallbacks);
    rep.transform_seconds = seconds_since(t0);
  }
  std::optional<Imatrix> imatrix;
  if (want_importance && calib) {
    if (calib->imatrix) {
      imatrix = calib->imatrix;
    } else if (have_text) {
      const auto t0 = std::chrono::steady_clock::now();
      imatrix = make_imatrix(work, collect_stats(work, calib->windows, CollectOptions{false, -1}), calib->windows);
      rep.calib_seconds += seconds_since(t0);
    }
    if (imatrix) rep.imatrix = imatrix->source.empty() ? "given" : imatrix->source;
  }

  Model out = work;
  const std::vector<TensorPlan> plan = plan_model(work, r);
  std::vector<TensorReport> reports(plan.size());
  std::vector<Matrix*> dsts(plan.size());

  auto quantize_entry = [&](size_t i, const CalibContext& ctx) {
    check_cancel();
    const TensorPlan& p = plan[i];
    const Matrix& src = *p.source;
    TensorReport& tr = reports[i];
    tr.name = p.name;
    tr.rows = src.rows;
    tr.cols = src.cols;
    tr.note = p.reason;
    Matrix* dst = field_of(out, work, p.source);
    dsts[i] = dst;
    if (!p.spec) {
      tr.scheme = "keep";
      tr.format = std::string(src.traits().name);
      tr.bytes = src.bytes();
      tr.sqnr_db = std::numeric_limits<double>::infinity();
      return;
    }
    const Method& me = registry().method(*p.spec);
    const auto t0 = std::chrono::steady_clock::now();
    const F32Matrix f = to_f32(src);
    const WeightView view{p.name, src.rows, src.cols, f.data};
    PackedTensor pt;
    if (me.quantize_calib && (ctx.stats || ctx.importance || me.calib == CalibUse::Required)) {
      check_weights_finite(view);
      pt = me.quantize_calib(view, *p.spec, ctx);
      QB_ASSERT(pt.bytes.size() == size_t(view.rows) * row_bytes(type_traits(pt.type), view.cols));
      if (ctx.importance) tr.note += "; imatrix";
    } else {
      pt = quantize_tensor(view, *p.spec);
    }
    auto packed = std::make_shared<PackedTensor>(std::move(pt));
    tr.seconds = seconds_since(t0);
    const ErrorStats es = weight_error(f.data, src.rows, src.cols, packed->type, packed->bytes.data());
    tr.scheme = p.spec->to_string();
    tr.format = std::string(type_traits(packed->type).name);
    tr.bytes = packed->bytes.size();
    tr.mse = es.mse();
    tr.sqnr_db = es.sqnr_db();
    if (!packed->note.empty()) {
      tr.note += "; " + packed->note;
      tr.fallback = packed->note;
    }
    *dst = Matrix{packed->type, src.rows, src.cols, packed->bytes.data()};
    out.storage.push_back(std::shared_ptr<const void>(packed, packed->bytes.data()));
    if (work.tied_output && dst == &out.tok_embd) out.output = out.tok_embd;
  };
  auto importance_of = [&](const TensorPlan& p) -> const std::vector<float>* {
    if (!imatrix || !p.spec || !registry().method(*p.spec).wants_importance(*p.spec)) return nullptr;
    const auto it = imatrix->tensors.find(p.name);
    if (it == imatrix->tensors.end()) return nullptr;  // as llama-quantize: quantized without one
    if (int64_t(it->second.size()) != p.source->cols) {
      throw Error("imatrix entry " + p.name + " has " + std::to_string(it->second.size()) + " values, the tensor has " +
                  std::to_string(p.source->cols) + " columns");
    }
    return &it->second;
  };

  if (!sequential) {
    for (size_t i = 0; i < plan.size(); ++i) quantize_entry(i, CalibContext{nullptr, importance_of(plan[i])});
  } else {
    // Layer by layer: token_embd (layer -1), blk.0 .. blk.(n-1), output (layer n_layer).
    const int64_t n_layer = work.config.n_layer;
    for (int64_t layer = -1; layer <= n_layer; ++layer) {
      std::vector<size_t> here;
      bool needs_stats = false;
      for (size_t i = 0; i < plan.size(); ++i) {
        const auto site = linear_site(work, plan[i].name);
        if ((site ? site->layer : -1) != layer) continue;
        here.push_back(i);
        needs_stats = needs_stats || (plan[i].spec && registry().method(*plan[i].spec).calib == CalibUse::Sequential);
      }
      CalibStats stats;
      if (needs_stats) {
        check_cancel();
        const auto t0 = std::chrono::steady_clock::now();
        stats = collect_stats(out, calib->windows, CollectOptions{true, layer});
        rep.calib_seconds += seconds_since(t0);
      }
      for (size_t i : here) {
        CalibContext ctx{nullptr, importance_of(plan[i])};
        const auto site = linear_site(work, plan[i].name);
        if (needs_stats && site && plan[i].spec && registry().method(*plan[i].spec).calib == CalibUse::Sequential) {
          ctx.stats = &stats.at(site->layer, site->input);
        }
        quantize_entry(i, ctx);
      }
    }
  }
  for (size_t i = 0; i < plan.size(); ++i) {
    TensorReport& tr = reports[i];
    if (!tr.fallback.empty()) rep.fallbacks.push_back(tr.name + ": " + tr.fallback);
    tr.bits_per_weight = 8.0 * double(tr.bytes) / double(tr.rows * tr.cols);
    rep.all_ggml = rep.all_ggml && uint32_t(dsts[i]->type) < uint32_t(TensorType::INT_FIRST);
    rep.n_weights += tr.rows * tr.cols;
    rep.bytes += tr.bytes;
    rep.tensors.push_back(std::move(tr));
  }
  rep.seconds = seconds_since(t_all);
  rep.bits_per_weight = rep.n_weights ? 8.0 * double(rep.bytes) / double(rep.n_weights) : 0.0;
  if (report) *report = std::move(rep);
  out.kv_cache = r.kv_cache.value_or(KvCacheTypes{});
  return out;
}

nlohmann::json QuantizeReport::to_json() const {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  nlohmann::json ts = nlohmann::json::array();
  for (const auto& t : tensors) {
    ts.push_back({{"name", t.name}, {"scheme", t.scheme}, {"format", t.format}, {"shape", {t.cols, t.rows}},
                  {"bytes", t.bytes}, {"bits_per_weight", t.bits_per_weight}, {"mse", t.mse},
                  {"sqnr_db", num(t.sqnr_db)}, {"seconds", t.seconds}, {"note", t.note},
                  {"fallback", t.fallback.empty() ? nlohmann::json(nullptr) : nlohmann::json(t.fallback)}});
  }
  return {{"tensors", ts},
          {"n_weights", n_weights},
          {"bytes", bytes},
          {"bits_per_weight", bits_per_weight},
          {"seconds", seconds},
          {"calibration", calibration},
          {"imatrix", imatrix},
          {"calib_seconds", calib_seconds},
          {"transform_seconds", transform_seconds},
          {"notes", notes},
          {"fallbacks", fallbacks},
          {"llama_cpp_loadable", all_ggml}};
}

}  // namespace qbench::quant
