// Reading Prometheus text in tests: the value of one series, by its exact
// name and labels as the exposition writes them (labels sorted by name).
#pragma once

#include <sstream>
#include <string>

namespace troupe::testing {

/// The value of `series` (e.g. `troupe_steps_total{agent="a",outcome="ok"}`)
/// in `text`, or -1 if the text has no such line.
inline double sample(const std::string& text, const std::string& series) {
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line))
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0
        && line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  return -1;
}

} // namespace troupe::testing
