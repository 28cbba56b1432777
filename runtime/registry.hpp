// The runtime's registry of agents and definitions. Written by the facade's
// register_* calls (any thread), read by the manager and workflow actors.
// Readers get immutable snapshots, so a workflow never sees a change mid-run.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "troupe/agent.hpp"
#include "troupe/definition.hpp"

namespace troupe {

class registry {
public:
  using agent_map = std::map<std::string, agent_ptr>;

  registry();

  /// unknown_agent if `name` is empty, taken, or `a` is null.
  caf::error add_agent(const std::string& name, agent_ptr a);
  /// Validates again and checks that every agent it names is registered;
  /// unknown_definition if the name is taken.
  caf::error add_definition(definition def);

  std::shared_ptr<const definition> find_definition(const std::string& name) const;
  /// Every registered definition, by name.
  std::vector<std::shared_ptr<const definition>> definitions() const;
  std::shared_ptr<const agent_map> agents() const;

private:
  mutable std::mutex mtx_;
  std::shared_ptr<const agent_map> agents_;
  std::map<std::string, std::shared_ptr<const definition>> definitions_;
};

} // namespace troupe
