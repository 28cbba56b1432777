// The agent and definition registry (see the header).
#include "runtime/registry.hpp"

#include "troupe/errors.hpp"

namespace troupe {

registry::registry() : agents_(std::make_shared<agent_map>()) {}

caf::error registry::add_agent(const std::string& name, agent_ptr a) {
  if (name.empty())
    return make_error(errc::unknown_agent, "an agent needs a name");
  if (!a)
    return make_error(errc::unknown_agent, "agent '" + name + "' is null");
  std::lock_guard<std::mutex> guard{mtx_};
  if (agents_->count(name))
    return make_error(errc::unknown_agent, "agent '" + name + "' is already registered");
  auto next = std::make_shared<agent_map>(*agents_); // copy on write: readers keep theirs
  next->emplace(name, std::move(a));
  agents_ = std::move(next);
  return {};
}

caf::error registry::add_definition(definition def) {
  if (auto err = validate(def))
    return err;
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& n : def.nodes)
    if (n.kind == node_kind::agent && !agents_->count(n.agent))
      return make_error(errc::unknown_agent, "definition '" + def.name + "': node '" + n.name
                                                 + "' names agent '" + n.agent
                                                 + "', which is not registered");
  for (auto& n : def.nodes)
    if (n.kind == node_kind::agent && !n.policy.compensate.empty()
        && !agents_->count(n.policy.compensate))
      return make_error(errc::unknown_agent, "definition '" + def.name + "': node '" + n.name
                                                 + "' names compensating agent '"
                                                 + n.policy.compensate
                                                 + "', which is not registered");
  if (definitions_.count(def.name))
    return make_error(errc::unknown_definition,
                      "definition '" + def.name + "' is already registered");
  auto name = def.name;
  definitions_.emplace(name, std::make_shared<const definition>(std::move(def)));
  return {};
}

std::shared_ptr<const definition> registry::find_definition(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = definitions_.find(name);
  return i == definitions_.end() ? nullptr : i->second;
}

std::vector<std::shared_ptr<const definition>> registry::definitions() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::shared_ptr<const definition>> out;
  for (const auto& [name, def] : definitions_)
    out.push_back(def);
  return out;
}

std::shared_ptr<const registry::agent_map> registry::agents() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return agents_;
}

} // namespace troupe
