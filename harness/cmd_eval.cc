// qbench eval: the task suites on one model; qbench tasks: what suites and tasks exist.
#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "quantizers/quantize_model.h"
#include "tasks/chat_template.h"
#include "tasks/evaluate.h"

namespace qbench::cli {
namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// --chat-template's help: every named template with its one-line description.
const std::string& chat_template_help() {
  static const std::string help = [] {
    std::string h = "chat template of the chat tasks; default: the model's own (recognised in its template text), "
                    "qbench for a model without one. One of:";
    for (const auto& t : chat_templates()) h += std::string("\n  ") + t.name + ": " + t.description;
    return h;
  }();
  return help;
}

}  // namespace

int cmd_tasks(const std::vector<std::string>& args) {
  bool json = false;
  int threads = 0;
  po::options_description desc("qbench tasks options");
  add_output_options(desc, json, threads);
  po::variables_map vm;
  if (!parse(args, desc, "usage: qbench tasks [--json]\n\nLists the suites and tasks (tasks/defs, tasks/suites) with their item counts.", vm)) return 0;
  set_threads(threads);
  const auto tasks = builtin_tasks();
  nlohmann::json jt = nlohmann::json::array();
  for (const auto& t : tasks) {
    nlohmann::json e = t.to_json();
    try {
      e["items"] = task_items(t, 0).size();
    } catch (const Error& err) {
      e["items"] = nullptr;
      e["unavailable"] = err.what();
    }
    jt.push_back(e);
  }
  nlohmann::json js = nlohmann::json::object();
  for (const auto& s : suite_names()) js[s] = suite_tasks(s);
  if (json) {
    print_json({{"suites", js}, {"tasks", jt}});
    return 0;
  }
  std::cout << "suites:\n";
  for (const auto& [name, list] : js.items()) {
    std::cout << "  " << name << ":";
    for (const auto& t : list) std::cout << " " << t.get<std::string>();
    std::cout << "\n";
  }
  std::cout << "\ntasks:\n";
  for (const auto& e : jt) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "  %-16s %-16s ", e["name"].get<std::string>().c_str(), e["kind"].get<std::string>().c_str());
    std::cout << buf << (e["items"].is_null() ? std::string("(data not found)") : std::to_string(e["items"].get<int64_t>()) + " items")
              << "  " << e["description"].get<std::string>() << "\n";
  }
  return 0;
}

int cmd_eval(const std::vector<std::string>& args) {
  ModelOptions o;
  std::string suites = "math_reasoning,chat", task_list, items_out, scheme, activations = "kernel", chat_template, kv_types;
  int64_t limit = 0, n_ctx = 0;
  bool serial = false;
  po::options_description desc("qbench eval options");
  desc.add_options()
      ("suite,s", po::value(&suites)->value_name("A,B"), "comma-separated suites (default: math_reasoning,chat)")
      ("tasks", po::value(&task_list)->value_name("X,Y"), "comma-separated tasks instead of suites")
      ("scheme", po::value(&scheme)->value_name("S"), "quantize the model with scheme S first (see qbench schemes)")
      ("limit", po::value(&limit)->value_name("N"), "at most N items per task (0: all)")
      ("ctx", po::value(&n_ctx)->value_name("N"), "context window in tokens (0: the model's)")
      ("items-out", po::value(&items_out)->value_name("F.jsonl"), "write per-item results (one JSON object per line)")
      ("chat-template", po::value(&chat_template)->value_name("NAME"), chat_template_help().c_str())
      ("serial", po::bool_switch(&serial), "run tasks and items one at a time (same numbers, slower)");
  add_model_options(desc, o);
  add_activation_option(desc, activations);
  add_kv_cache_option(desc, kv_types);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench eval [--model FILE] [--scheme S] [--suite math_reasoning,chat | --tasks X,Y] [--limit N]\n"
             "                   [--chat-template NAME] [--json]\n\n"
             "Scores the model on task suites the way lm-evaluation-harness scores: multiple choice by\n"
             "log-likelihood (acc, acc_norm), greedy generation with answer extraction (exact_match),\n"
             "instruction checks, likelihood and perplexity; every metric with its standard error.\n"
             "Chat tasks write each prompt in the model's chat template (recognised in the model's own\n"
             "template text; an unrecognised one is an error unless --chat-template names one).",
             vm)) {
    return 0;
  }
  set_threads(o.threads);
  if (limit < 0) throw Error("--limit must be >= 0");
  const auto all = builtin_tasks();
  std::vector<TaskDef> chosen;
  std::vector<std::string> names = split_list(task_list);
  if (names.empty()) {
    for (const auto& s : split_list(suites)) {
      for (const auto& t : suite_tasks(s)) names.push_back(t);
    }
  }
  for (const auto& n : names) chosen.push_back(find_task(all, n));
  if (!chat_template.empty() && find_chat_template(chat_template) == nullptr) {
    throw Error("--chat-template: unknown chat template '" + chat_template + "' (known: " + chat_template_names() + ")");
  }
  const Model source = load_model_from(o);
  // One template for every chat task, chosen before any work (an unrecognised one is an error).
  std::optional<ChatTemplateChoice> chat;
  if (std::any_of(chosen.begin(), chosen.end(), [](const TaskDef& t) { return t.chat; })) {
    chat = choose_chat_template(source, chat_template);
  }
  quant::QuantizeReport qreport;
  Model m = scheme.empty() ? source : quant::quantize_model(source, quant::make_recipe(scheme), &qreport);
  const nlohmann::json matmul = apply_activations(m, activations, 128);
  const std::string kv_cache = apply_kv_cache(m, kv_types);
  const LanguageModel lm(m, n_ctx);
  std::vector<std::vector<Example>> items(chosen.size());
  for (size_t i = 0; i < chosen.size(); ++i) items[i] = task_items(chosen[i], limit);
  std::vector<TaskResult> results(chosen.size());
  const auto t0 = std::chrono::steady_clock::now();
  auto one = [&](size_t i) { results[i] = evaluate_task(lm, chosen[i], items[i], !serial, chat ? chat->tmpl : nullptr); };
  if (serial) {
    for (size_t i = 0; i < chosen.size(); ++i) one(i);
  } else {
    tbb::parallel_for(size_t(0), chosen.size(), one);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Truncation is lm-eval's behaviour, but never silent: the counts are in the JSON and here.
  for (const auto& r : results) {
    if (r.n_truncated == 0) continue;
    std::fprintf(stderr, "eval: warning: task %s: %lld of %lld items did not fit the %lld-token context and were "
                 "left-truncated (%lld of them lost scored tokens)\n", r.task.c_str(), (long long)r.n_truncated,
                 (long long)r.n_items, (long long)lm.n_ctx(), (long long)r.n_unscored);
  }
  if (!items_out.empty()) {
    std::string lines;
    for (const auto& r : results) {
      for (const auto& it : r.items) {
        nlohmann::json rec = it;
        rec["task"] = r.task;
        lines += json_text(rec) + "\n";
      }
    }
    write_file_atomic(items_out, lines);
  }
  if (o.json) {
    nlohmann::json tr = nlohmann::json::array();
    for (const auto& r : results) tr.push_back(r.to_json());
    nlohmann::json q = nullptr;
    if (!scheme.empty()) {
      q = {{"scheme", scheme}, {"bits_per_weight", qreport.bits_per_weight}, {"bytes", qreport.bytes},
           {"seconds", qreport.seconds}};
    }
    const nlohmann::json ct = chat ? nlohmann::json{{"name", chat->tmpl->name},
                                                    {"source", chat_template_source_name(chat->source)},
                                                    {"description", chat->describe()}}
                                   : nlohmann::json(nullptr);
    print_json({{"command", "eval"}, {"model", model_json(m)}, {"quantization", q}, {"matmul", matmul}, {"kv_cache", kv_cache}, {"limit", limit},
                {"ctx", lm.n_ctx()}, {"threads", thread_count()}, {"chat_template", ct},
                {"seconds", seconds}, {"tasks", tr}, {"items_file", items_out}});
    return 0;
  }
  if (!scheme.empty()) std::printf("scheme %s: %.3f bits per weight\n", scheme.c_str(), qreport.bits_per_weight);
  std::printf("%s\n", activations_summary(matmul).c_str());
  if (kv_cache != "f32") std::printf("KV cache: %s\n", kv_cache.c_str());
  if (chat) std::printf("chat template: %s\n", chat->describe().c_str());
  std::printf("%-16s %-18s %10s %10s %7s\n", "task", "metric", "value", "stderr", "items");
  for (const auto& r : results) {
    for (const auto& mv : r.metrics) {
      std::printf("%-16s %-18s %10.4f %10.4f %7lld\n", r.task.c_str(), mv.name.c_str(), mv.value, mv.stderr,
                  (long long)r.n_items);
    }
  }
  std::fprintf(stderr, "[%zu tasks in %.1f s, %d threads]\n", results.size(), seconds, thread_count());
  return 0;
}

}  // namespace qbench::cli
