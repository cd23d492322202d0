// Entry points of the qbench commands (one cmd_*.cc each).
#pragma once

#include <string>
#include <vector>

namespace qbench::cli {

int cmd_info(const std::vector<std::string>& args);
int cmd_tokenize(const std::vector<std::string>& args);
int cmd_perplexity(const std::vector<std::string>& args);
int cmd_generate(const std::vector<std::string>& args);
int cmd_train(const std::vector<std::string>& args);
int cmd_qat(const std::vector<std::string>& args);
int cmd_eval(const std::vector<std::string>& args);
int cmd_tasks(const std::vector<std::string>& args);
int cmd_datagen(const std::vector<std::string>& args);
int cmd_schemes(const std::vector<std::string>& args);
int cmd_quantize(const std::vector<std::string>& args);
int cmd_convert(const std::vector<std::string>& args);
int cmd_run(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_compare(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);
int cmd_imatrix(const std::vector<std::string>& args);

}  // namespace qbench::cli
