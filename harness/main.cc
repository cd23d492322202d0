// qbench: quantize language models and measure what quantization costs and buys.
#include <boost/program_options/errors.hpp>
#include <cstring>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "harness/build_identity.h"
#include "harness/cli.h"

namespace {

void print_usage() {
  std::cout << "qbench " QBENCH_VERSION
               " - quantize language models and measure what quantization costs and buys\n\n"
               "usage: qbench <command> [options]     (qbench <command> --help for its options)\n\n"
               "commands:\n";
  for (const auto& c : qbench::cli::commands()) {
    std::string name = c.name;
    name.resize(14, ' ');
    std::cout << "  " << name << c.summary << "\n";
  }
  std::cout << "\nexit codes: 0 success, 1 failure or regression, 2 bad input (file, option, dataset)\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_usage();
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "-V") {
    std::cout << "qbench " QBENCH_VERSION " (commit " << qbench::build_label() << ")\n";
    return 0;
  }
  for (const auto& c : qbench::cli::commands()) {
    if (args[0] != c.name) continue;
    try {
      return c.run(std::vector<std::string>(args.begin() + 1, args.end()));
    } catch (const qbench::IoError& e) {  // disk full, I/O error: a failure, not bad input
      std::cerr << "qbench " << c.name << ": error: " << e.what() << "\n";
      return 1;
    } catch (const qbench::Error& e) {
      std::cerr << "qbench " << c.name << ": error: " << e.what() << "\n";
      return 2;
    } catch (const std::bad_alloc&) {
      std::cerr << "qbench " << c.name << ": error: out of memory\n";
      return 2;
    } catch (const std::exception& e) {
      std::cerr << "qbench " << c.name << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "qbench: error: unknown command '" << args[0] << "' (see qbench --help)\n";
  return 2;
}
