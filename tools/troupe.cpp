// The `troupe` command-line tool: runs the bundled examples (troupe demo,
// troupe run <example>). The commands live in cli.cpp; this is only main().
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  return troupe::cli::run(args, std::cout, std::cerr);
}
