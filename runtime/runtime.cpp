// The embedding facade (include/troupe/runtime.hpp): owns the actor system
// and the service actors (journal writer, model, workflow manager) and turns
// blocking calls into requests to the manager.
#include "troupe/runtime.hpp"

#include <stdexcept>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/gateway_actor.hpp"
#include "actors/messages.hpp"
#include "actors/scripted_model_actor.hpp"
#include "actors/timer_service.hpp"
#include "actors/workflow_manager_actor.hpp"
#include "persistence/journal_writer_actor.hpp"
#include "runtime/registry.hpp"
#include "troupe/errors.hpp"

namespace troupe {

namespace {

caf::actor_system_config make_system_config(const config& cfg) {
  caf::actor_system_config sys_cfg;
  sys_cfg.set("scheduler.max-threads", cfg.threads);
  sys_cfg.set("scheduler.policy", caf::atom_from_string(cfg.scheduler)); // checked()
  sys_cfg.add_message_type<agent_report>("troupe.agent_report");
  sys_cfg.add_message_type<info_msg>("troupe.info_msg");
  sys_cfg.add_message_type<signal_msg>("troupe.signal_msg");
  sys_cfg.add_message_type<llm_request>("troupe.llm_request");
  sys_cfg.add_message_type<llm_reply>("troupe.llm_reply");
  sys_cfg.add_message_type<journal_record>("troupe.journal_record");
  sys_cfg.add_message_type<journal_write>("troupe.journal_write");
  sys_cfg.add_message_type<effect_record>("troupe.effect_record");
  sys_cfg.add_message_type<std::vector<effect_record>>("troupe.effect_records");
  sys_cfg.add_message_type<recovery_report>("troupe.recovery_report");
  return sys_cfg;
}

config checked(config cfg) {
  auto rate = [](const char* name, double x) {
    if (!(x >= 0.0 && x <= 1.0))
      throw std::invalid_argument(std::string{"troupe config: model."} + name
                                  + " must be within [0, 1], got " + std::to_string(x));
  };
  if (cfg.scheduler != "sharing" && cfg.scheduler != "stealing")
    throw std::invalid_argument("troupe config: scheduler must be 'sharing' or 'stealing', got '"
                                + cfg.scheduler + "'");
  if (cfg.threads == 0 || cfg.threads > 256)
    throw std::invalid_argument("troupe config: threads must be within [1, 256], got "
                                + std::to_string(cfg.threads));
  rate("fail_rate", cfg.model.fail_rate);
  rate("timeout_rate", cfg.model.timeout_rate);
  rate("malformed_rate", cfg.model.malformed_rate);
  if (cfg.model.fail_rate + cfg.model.timeout_rate + cfg.model.malformed_rate > 1.0)
    throw std::invalid_argument("troupe config: model fault rates add up to more than 1");
  if (cfg.model.latency < duration::zero())
    throw std::invalid_argument("troupe config: model.latency must not be negative");
  if (auto err = validate(cfg.gateway))
    throw std::invalid_argument("troupe config: " + describe(err));
  if (cfg.journal_batch == 0)
    throw std::invalid_argument("troupe config: journal_batch must be at least 1");
  auto level = spdlog::level::from_str(cfg.log_level);
  if (level == spdlog::level::off && cfg.log_level != "off")
    throw std::invalid_argument("troupe config: unknown log_level '" + cfg.log_level + "'");
  if (!cfg.clock)
    cfg.clock = system_clock_source();
  if (!cfg.random)
    cfg.random = system_random();
  if (!cfg.journal)
    cfg.journal = make_memory_journal();
  return cfg;
}

} // namespace

struct runtime::impl {
  explicit impl(config c)
    : cfg(checked(std::move(c))), sys_cfg(make_system_config(cfg)), sys(sys_cfg) {
    spdlog::set_level(spdlog::level::from_str(cfg.log_level));
    journal = persistence::spawn_journal_writer(sys, cfg.journal, cfg.journal_batch,
                                                cfg.journal->blocks());
    scripted = spawn_scripted_model(sys, cfg.model);
    auto gw = spawn_gateway(sys, {cfg.gateway, scripted, cfg.clock});
    if (!gw) {
      caf::anon_send_exit(journal, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(scripted, caf::exit_reason::user_shutdown);
      throw std::invalid_argument("troupe config: " + describe(gw.error()));
    }
    model = std::move(*gw);
    timers = spawn_timer_service(sys, cfg.clock);
    manager = spawn_workflow_manager(
      sys, {reg, journal, model, std::make_shared<const gateway_config>(cfg.gateway), cfg.clock,
            cfg.random, cfg.journal, cfg.snapshot_every, cfg.passivate, timers});
  }

  // Sends one request to the manager and waits for its answer.
  template <class T, class... Ts>
  caf::expected<T> ask(caf::duration timeout, Ts&&... xs) {
    if (stopped)
      return make_error(errc::shutting_down, "the runtime is shut down");
    caf::scoped_actor self{sys};
    caf::expected<T> result{caf::error{}};
    self->request(manager, timeout, std::forward<Ts>(xs)...)
      .receive([&](T& x) { result = std::move(x); },
               [&](caf::error& e) { result = std::move(e); });
    return result;
  }

  config cfg;
  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  std::shared_ptr<registry> reg = std::make_shared<registry>();
  caf::actor journal;
  caf::actor scripted; ///< behind the gateway
  caf::actor model;    ///< the gateway
  caf::actor timers;
  caf::actor manager;
  std::atomic<bool> stopped{false};
};

runtime::runtime(config cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {}

runtime::~runtime() {
  shutdown();
}

caf::error runtime::register_agent(const std::string& name, agent_ptr a) {
  return impl_->reg->add_agent(name, std::move(a));
}

caf::error runtime::register_agent(const std::string& name, agent_fn fn) {
  if (!fn)
    return make_error(errc::unknown_agent, "agent '" + name + "' is an empty function");
  return impl_->reg->add_agent(name, make_agent(std::move(fn)));
}

caf::error runtime::register_definition(definition def) {
  return impl_->reg->add_definition(std::move(def));
}

caf::expected<std::string> runtime::start(const std::string& definition, nlohmann::json input,
                                          const std::string& idempotency_key) {
  if (!input.is_object())
    return make_error(errc::invalid_input,
                      "input of a '" + definition + "' workflow must be a JSON object");
  std::string text;
  try {
    text = input.dump();
  } catch (const nlohmann::json::exception& e) { // e.g. a string that is not UTF-8
    return make_error(errc::invalid_input, "input of a '" + definition + "' workflow: " + e.what());
  }
  return impl_->ask<std::string>(caf::infinite, start_atom::value, definition, text,
                                 idempotency_key);
}

caf::error runtime::signal(const std::string& workflow_id, const std::string& gate,
                           const decision& d) {
  signal_msg m{workflow_id, gate, d.verdict, d.patch_json, d.by};
  if (impl_->stopped)
    return make_error(errc::shutting_down, "the runtime is shut down");
  caf::scoped_actor self{impl_->sys};
  caf::error result;
  self->request(impl_->manager, caf::infinite, signal_atom::value, std::move(m))
    .receive([] {}, [&](caf::error& e) { result = std::move(e); });
  return result;
}

caf::expected<workflow_info> runtime::await(const std::string& workflow_id,
                                            std::chrono::milliseconds timeout, bool or_parked) {
  // The manager answers await_timeout itself when the time runs out, so no
  // waiter outlives its caller.
  auto ms = static_cast<uint64_t>(std::max<int64_t>(timeout.count(), 1));
  auto r = impl_->ask<info_msg>(caf::infinite, await_atom::value, workflow_id, or_parked, ms);
  if (!r)
    return r.error();
  return to_info(*r);
}

caf::expected<workflow_info> runtime::status(const std::string& workflow_id) {
  auto r = impl_->ask<info_msg>(caf::infinite, status_atom::value, workflow_id);
  if (!r)
    return r.error();
  return to_info(*r);
}

caf::expected<recovery_report> runtime::recover() {
  return impl_->ask<recovery_report>(caf::infinite, recover_atom::value);
}

caf::expected<uint64_t> runtime::purge(std::chrono::nanoseconds older_than) {
  if (impl_->stopped)
    return make_error(errc::shutting_down, "the runtime is shut down");
  if (older_than < std::chrono::nanoseconds::zero())
    return make_error(errc::invalid_config, "purge: older_than must not be negative");
  auto before = impl_->cfg.clock->now() - older_than;
  caf::scoped_actor self{impl_->sys};
  caf::expected<uint64_t> result{caf::error{}};
  self->request(impl_->manager, caf::infinite, purge_atom::value, int64_t{before.count()})
    .receive([&](uint64_t n) { result = n; }, [&](caf::error& e) { result = std::move(e); });
  return result;
}

caf::expected<std::vector<journal_record>> runtime::history(const std::string& workflow_id) {
  auto records = impl_->cfg.journal->read(workflow_id);
  if (records && records->empty())
    return make_error(errc::unknown_workflow, "no journaled events for '" + workflow_id + "'");
  return records;
}

void runtime::shutdown() {
  if (!impl_ || impl_->stopped.exchange(true))
    return;
  auto& i = *impl_;
  caf::scoped_actor self{i.sys};
  // The manager first: it stops every workflow before it quits. Then the
  // services the workflows were using.
  self->send_exit(i.manager, caf::exit_reason::user_shutdown);
  self->wait_for(i.manager);
  for (auto& a : {i.model, i.scripted, i.journal, i.timers})
    self->send_exit(a, caf::exit_reason::user_shutdown);
  self->wait_for(i.model, i.scripted, i.journal, i.timers);
  i.manager = i.model = i.scripted = i.journal = i.timers = nullptr;
}

caf::expected<std::vector<lane_stats>> runtime::model_lanes() {
  if (impl_->stopped)
    return make_error(errc::shutting_down, "the runtime is shut down");
  caf::scoped_actor self{impl_->sys};
  caf::expected<std::vector<lane_stats>> result{caf::error{}};
  self->request(impl_->model, caf::infinite, status_atom::value)
    .receive([&](std::vector<lane_stats>& x) { result = std::move(x); },
             [&](caf::error& e) { result = std::move(e); });
  return result;
}

const char* to_string(workflow_status s) {
  switch (s) {
    case workflow_status::running: return "running";
    case workflow_status::parked: return "parked";
    case workflow_status::completed: return "completed";
    case workflow_status::failed: return "failed";
  }
  return "unknown";
}

} // namespace troupe
