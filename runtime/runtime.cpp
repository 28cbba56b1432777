// The embedding facade (include/troupe/runtime.hpp): owns the actor system
// and the service actors (journal writer, timers, scripted model, gateway,
// workflow manager) under one supervisor, and turns blocking calls into
// requests to the current manager.
#include "troupe/runtime.hpp"

#include <cmath>

#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <tuple>
#include <type_traits>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/gateway_actor.hpp"
#include "actors/messages.hpp"
#include "actors/notifier_actor.hpp"
#include "actors/scripted_model_actor.hpp"
#include "actors/timer_service.hpp"
#include "actors/workflow_actor.hpp"
#include "actors/workflow_manager_actor.hpp"
#include "persistence/journal_writer_actor.hpp"
#include "runtime/change_feed.hpp"
#include "runtime/log_format.hpp"
#include "runtime/metrics.hpp"
#include "runtime/registry.hpp"
#include "runtime/session_store.hpp"
#include "runtime/trace_exporter.hpp"
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
  sys_cfg.add_message_type<start_msg>("troupe.start_msg");
  sys_cfg.add_message_type<llm_request>("troupe.llm_request");
  sys_cfg.add_message_type<llm_reply>("troupe.llm_reply");
  sys_cfg.add_message_type<journal_record>("troupe.journal_record");
  sys_cfg.add_message_type<journal_write>("troupe.journal_write");
  sys_cfg.add_message_type<effect_record>("troupe.effect_record");
  sys_cfg.add_message_type<std::vector<effect_record>>("troupe.effect_records");
  sys_cfg.add_message_type<recovery_report>("troupe.recovery_report");
  return sys_cfg;
}

void check_tracing(const tracing_config& t) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("troupe config: tracing." + what);
  };
  if (t.otlp_endpoint.empty())
    return;
  if (t.otlp_endpoint.rfind("http://", 0) != 0 && t.otlp_endpoint.rfind("https://", 0) != 0)
    fail("otlp_endpoint must be an http:// or https:// URL, got '" + t.otlp_endpoint + "'");
  if (t.batch_max == 0 || t.buffer_max == 0)
    fail("batch_max and buffer_max must be at least 1");
  if (t.retry.max_attempts == 0 || t.retry.base_backoff < duration::zero()
      || t.retry.max_backoff < t.retry.base_backoff)
    fail("retry needs max_attempts >= 1 and 0 <= base_backoff <= max_backoff");
  if (t.flush_interval.count() < 0 || t.post_timeout.count() <= 0
      || t.shutdown_timeout.count() < 0)
    fail("flush_interval and shutdown_timeout must not be negative, post_timeout must be "
         "positive");
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
  auto& nr = cfg.notify_retry;
  if (nr.max_attempts == 0 || nr.base_backoff < duration::zero()
      || nr.max_backoff < nr.base_backoff)
    throw std::invalid_argument("troupe config: notify_retry needs max_attempts >= 1 and "
                                "0 <= base_backoff <= max_backoff");
  if (cfg.journal_batch == 0)
    throw std::invalid_argument("troupe config: journal_batch must be at least 1");
  if (cfg.session_ttl <= duration::zero() || cfg.session_max_bytes == 0)
    throw std::invalid_argument("troupe config: session_ttl and session_max_bytes must be "
                                "positive");
  auto level = spdlog::level::from_str(cfg.log_level);
  if (level == spdlog::level::off && cfg.log_level != "off")
    throw std::invalid_argument("troupe config: unknown log_level '" + cfg.log_level + "'");
  if (cfg.log_format != "text" && cfg.log_format != "json")
    throw std::invalid_argument("troupe config: log_format must be 'text' or 'json', got '"
                                + cfg.log_format + "'");
  check_tracing(cfg.tracing);
  if (!cfg.clock)
    cfg.clock = system_clock_source();
  if (!cfg.random)
    cfg.random = system_random();
  if (!cfg.journal)
    cfg.journal = make_memory_journal();
  return cfg;
}

} // namespace

/// The current handle of each service; a restart replaces it.
class service_directory {
public:
  caf::actor get(caf::actor service_directory::*which) {
    std::lock_guard<std::mutex> guard{mtx_};
    return this->*which;
  }
  void set(caf::actor service_directory::*which, caf::actor a) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      this->*which = std::move(a);
    }
    changed_.notify_all();
  }
  /// The services will not come back: their supervisor gave up or stopped.
  void close() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      closed_ = true;
    }
    changed_.notify_all();
  }
  bool closed() {
    std::lock_guard<std::mutex> guard{mtx_};
    return closed_;
  }
  /// Waits until service `which` is no longer `dead` (restarted) or the
  /// services are closed.
  void wait_replaced(caf::actor service_directory::*which, const caf::actor& dead) {
    std::unique_lock<std::mutex> lock{mtx_};
    changed_.wait(lock, [&] { return closed_ || this->*which != dead; });
  }

  caf::actor journal, timers, scripted, model, notifier, manager;

private:
  std::mutex mtx_;
  std::condition_variable changed_;
  bool closed_ = false;
};

struct runtime::impl {
  explicit impl(config c)
    : cfg(checked(std::move(c))), sys_cfg(make_system_config(cfg)), sys(sys_cfg) {
    // Watchers learn of each commit (runtime::watch); everything else sees
    // the store as it was given.
    cfg.journal = std::make_shared<feed_journal>(cfg.journal, feed);
    spdlog::set_level(spdlog::level::from_str(cfg.log_level));
    if (cfg.log_format == "json")
      use_json_logs();
    if (auto err = check_gateway(cfg.gateway))
      throw std::invalid_argument("troupe config: " + describe(err));
    if (!cfg.tracing.otlp_endpoint.empty())
      tracer = std::make_shared<trace_exporter>(
        cfg.tracing, cfg.journal,
        [defs = reg](const std::string& name) { return defs->find_definition(name); });
    auto root_sup = spawn_supervisor(sys, service_tree());
    if (!root_sup)
      throw std::invalid_argument("troupe: " + describe(root_sup.error()));
    root = std::move(*root_sup);
    // The supervisor answers once it has started every child (in order).
    caf::scoped_actor self{sys};
    std::string missing;
    self->request(root, caf::infinite, children_atom::value)
      .receive(
        [&](std::vector<child_info>& kids) {
          for (auto& k : kids)
            if (!k.running)
              missing += (missing.empty() ? "" : ", ") + k.id;
        },
        [&](caf::error& err) { missing = describe(err); });
    if (!missing.empty()) {
      self->send_exit(root, caf::exit_reason::user_shutdown);
      self->wait_for(root);
      throw std::invalid_argument("troupe: runtime services did not start: " + missing);
    }
  }

  // The services, rest_for_one: each depends on those started before it, so
  // a restart takes the later ones along, and the manager, always last, is
  // always restarted and recovers the workflows from the journal.
  supervisor_spec service_tree() {
    supervisor_spec s;
    s.name = "troupe.services";
    s.flags.strategy = restart_strategy::rest_for_one;
    s.flags.intensity = 5;
    s.flags.period = std::chrono::seconds{30};
    s.flags.base_backoff = std::chrono::milliseconds{10};
    s.flags.max_backoff = std::chrono::seconds{2};
    s.observer = [this, seen = std::make_shared<std::set<std::string>>()](
                   const supervision_event& e) {
      if (e.k == supervision_event::kind::started && !e.child.empty()
          && !seen->insert(e.child).second)
        metrics->service_restarted(e.child);
      if (e.k == supervision_event::kind::escalated || e.k == supervision_event::kind::stopped) {
        if (e.k == supervision_event::kind::escalated)
          spdlog::critical("troupe: the runtime's services gave up: {}", e.what);
        svc.close();
      }
    };
    auto child = [this](std::string id, caf::actor service_directory::*slot,
                        std::function<caf::actor(caf::actor_system&)> start,
                        duration shutdown = std::chrono::seconds{30}) {
      child_spec c;
      c.id = std::move(id);
      c.shutdown = shutdown;
      c.start = [this, slot, start = std::move(start)](caf::actor_system& sys) {
        auto a = start(sys);
        svc.set(slot, a);
        return a;
      };
      return c;
    };
    s.children.push_back(child("journal", &service_directory::journal, [this](auto& sys) {
      persistence::commit_hook hook;
      if (tracer) // committed writes go to the exporter before they are acknowledged
        hook = [t = tracer](std::vector<journal_write>& batch) { t->committed(batch); };
      return persistence::spawn_journal_writer(sys, cfg.journal, cfg.journal_batch,
                                               cfg.journal->blocks(), metrics,
                                               std::move(hook));
    }));
    s.children.push_back(child("timers", &service_directory::timers, [this](auto& sys) {
      return spawn_timer_service(sys, cfg.clock);
    }));
    s.children.push_back(child("scripted", &service_directory::scripted, [this](auto& sys) {
      return spawn_scripted_model(sys, cfg.model);
    }));
    s.children.push_back(child("gateway", &service_directory::model, [this](auto& sys) {
      auto gw = spawn_gateway(sys, {cfg.gateway, svc.get(&service_directory::scripted),
                                    cfg.clock});
      if (!gw) {
        spdlog::error("troupe: the model gateway did not start: {}", describe(gw.error()));
        return caf::actor{};
      }
      return *gw;
    }));
    s.children.push_back(child("notifier", &service_directory::notifier, [this](auto& sys) {
      notifier_config n;
      n.retry = cfg.notify_retry;
      return spawn_notifier(sys, n);
    }));
    s.children.push_back(child(
      "manager", &service_directory::manager,
      [this](auto& sys) {
        manager_env env{reg,
                        svc.get(&service_directory::journal),
                        svc.get(&service_directory::model),
                        models,
                        cfg.clock,
                        cfg.random,
                        cfg.journal,
                        cfg.snapshot_every,
                        cfg.passivate,
                        svc.get(&service_directory::timers),
                        svc.get(&service_directory::notifier),
                        std::make_shared<live_workflows>(),
                        nullptr,
                        sessions, // the context outlives a manager's restart
                        cfg.workflow_restart_intensity,
                        cfg.workflow_restart_period,
                        metrics};
        env.adopt_from = std::exchange(workflows, env.live); // null at the first start
        env.trace_applied = tracer != nullptr;
        return spawn_workflow_manager(sys, std::move(env));
      },
      std::chrono::minutes{1})); // it stops every workflow first
    return s;
  }

  /// An operator's action on one workflow (dead-letter drop, cancel): the
  /// verdict and reason go to the workflow through the manager.
  caf::error act(const std::string& workflow_id, const char* verdict, const std::string& by,
                 const std::string& reason) {
    signal_msg m;
    m.workflow_id = workflow_id;
    m.verdict = verdict;
    m.patch_json = reason;
    m.by = by;
    auto r = ask<caf::unit_t>(&service_directory::manager, signal_atom::value, std::move(m));
    return r ? caf::error{} : r.error();
  }

  /// Sends one request to service `which` and waits for its answer, or for
  /// the service to die first (interrupted).
  template <class T, class... Ts>
  caf::expected<T> ask(caf::actor service_directory::*which, Ts&&... xs) {
    if (stopped)
      return make_error(errc::shutting_down, "the runtime is shut down");
    if (svc.closed())
      return make_error(errc::shutting_down, "the runtime's services stopped: their supervisor "
                                             "gave up after too many restarts (see the log)");
    auto dest = svc.get(which);
    if (!dest)
      return make_error(errc::shutting_down, "the runtime's services are down");
    auto answer = std::make_shared<std::promise<caf::expected<T>>>();
    auto got = answer->get_future();
    auto args = std::make_tuple(std::forward<Ts>(xs)...);
    sys.spawn([dest, answer, args = std::move(args)](caf::event_based_actor* self) mutable {
      auto once = [self, answer](caf::expected<T> x) {
        // The request met the service's closed mailbox: it died first.
        if (!x && x.error() == caf::sec::request_receiver_down)
          x = make_error(errc::interrupted, "the service answering the call stopped");
        answer->set_value(std::move(x));
        self->quit();
      };
      self->monitor(dest);
      self->set_down_handler([once](caf::down_msg& dm) {
        once(make_error(errc::interrupted,
                        "the service answering the call stopped: " + describe(dm.reason)));
      });
      std::apply(
        [&](auto&... a) {
          auto sent = self->request(dest, caf::infinite, a...);
          if constexpr (std::is_same<T, caf::unit_t>::value)
            sent.then([once]() { once(caf::unit); },
                      [once](caf::error& e) { once(std::move(e)); });
          else
            sent.then([once](T& x) { once(std::move(x)); },
                      [once](caf::error& e) { once(std::move(e)); });
        },
        args);
    });
    return got.get();
  }

  /// ask() for reads: asked again of the restarted service when the one
  /// asked died, or was stopped for a restart (shutting_down while the
  /// runtime is not), before it answered.
  template <class T, class... Ts>
  caf::expected<T> ask_again(caf::actor service_directory::*which, const Ts&... xs) {
    for (int tries = 0;; ++tries) {
      auto dest = svc.get(which);
      auto r = ask<T>(which, xs...);
      bool restarting = !r && (is(r.error(), errc::interrupted)
                               || (is(r.error(), errc::shutting_down) && !stopped));
      if (!restarting || tries == 10)
        return r;
      wait_for_restart(which, dest);
    }
  }

  /// Waits until the supervisor has replaced service `which`, or gave up.
  void wait_for_restart(caf::actor service_directory::*which, const caf::actor& dead) {
    svc.wait_replaced(which, dead);
  }

  config cfg;
  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  std::shared_ptr<registry> reg = std::make_shared<registry>();
  std::shared_ptr<const gateway_config> models = std::make_shared<const gateway_config>(cfg.gateway);
  std::shared_ptr<session_store> sessions =
    std::make_shared<session_store>(cfg.clock, cfg.session_ttl, cfg.session_max_bytes);
  std::shared_ptr<runtime_metrics> metrics = std::make_shared<runtime_metrics>();
  std::shared_ptr<change_feed> feed = std::make_shared<change_feed>();
  service_directory svc;
  std::shared_ptr<live_workflows> workflows; ///< the current manager's
  std::shared_ptr<trace_exporter> tracer; ///< null while export is off
  caf::actor root; ///< the services' supervisor
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

namespace {

/// A workflow's row and its kernel state right after event `wf_seq`.
struct past_state {
  workflow_row row;
  persistence::loaded_workflow wf;
};

caf::expected<past_state> load_past(journal_store& store, const registry& reg,
                                    const std::string& workflow_id, uint64_t wf_seq) {
  auto row = store.workflow(workflow_id);
  if (!row)
    return std::move(row.error());
  auto def = reg.find_definition(row->definition);
  if (!def || def->version != row->version)
    return make_error(errc::unknown_definition,
                      "workflow " + workflow_id + " runs definition '" + row->definition + "' v"
                        + std::to_string(row->version) + ", which is not registered here");
  auto wf = persistence::load_workflow_at(store, *def, workflow_id, wf_seq);
  if (!wf)
    return std::move(wf.error());
  return past_state{std::move(*row), std::move(*wf)};
}

/// invalid_input naming the model reference if the gateway cannot resolve it.
caf::error check_model(const gateway_config& gw, const std::string& model) {
  if (model.empty())
    return {};
  auto route = resolve_model(gw, model);
  if (!route)
    return make_error(errc::invalid_input,
                      "model '" + model + "': " + context_of(route.error()));
  return {};
}

} // namespace

caf::expected<std::string> runtime::start(const std::string& definition, nlohmann::json input,
                                          const std::string& idempotency_key,
                                          const std::string& user) {
  start_options opts;
  opts.idempotency_key = idempotency_key;
  opts.user = user;
  return start(definition, std::move(input), opts);
}

caf::expected<std::string> runtime::start(const std::string& definition, nlohmann::json input,
                                          const start_options& opts) {
  if (!input.is_object())
    return make_error(errc::invalid_input,
                      "input of a '" + definition + "' workflow must be a JSON object");
  std::string text;
  try {
    text = input.dump();
  } catch (const nlohmann::json::exception& e) { // e.g. a string that is not UTF-8
    return make_error(errc::invalid_input, "input of a '" + definition + "' workflow: " + e.what());
  }
  if (auto err = check_model(impl_->cfg.gateway, opts.model))
    return err;
  // the manager checks the traceparent: a bad one starts nothing
  start_msg m;
  m.definition = definition;
  m.input_json = std::move(text);
  m.key = opts.idempotency_key;
  m.user = opts.user;
  m.traceparent = opts.traceparent;
  m.model = opts.model;
  return impl_->ask<std::string>(&service_directory::manager, start_atom::value, std::move(m));
}

caf::error runtime::signal(const std::string& workflow_id, const std::string& gate,
                           const decision& d) {
  signal_msg m{workflow_id, gate, d.verdict, d.patch_json, d.by};
  auto r = impl_->ask<caf::unit_t>(&service_directory::manager, signal_atom::value, std::move(m));
  return r ? caf::error{} : r.error();
}

caf::expected<workflow_info> runtime::await(const std::string& workflow_id,
                                            std::chrono::milliseconds timeout, bool or_parked) {
  // The manager answers await_timeout itself when the time runs out, so no
  // waiter outlives its caller.
  auto ms = static_cast<uint64_t>(std::max<int64_t>(timeout.count(), 1));
  auto r = impl_->ask_again<info_msg>(&service_directory::manager, await_atom::value, workflow_id,
                                      or_parked, ms);
  if (!r)
    return r.error();
  return to_info(*r);
}

caf::expected<workflow_info> runtime::status(const std::string& workflow_id) {
  auto r = impl_->ask_again<info_msg>(&service_directory::manager, status_atom::value,
                                      workflow_id);
  if (!r)
    return r.error();
  return to_info(*r);
}

caf::expected<recovery_report> runtime::recover() {
  return impl_->ask<recovery_report>(&service_directory::manager, recover_atom::value);
}

caf::expected<uint64_t> runtime::purge(std::chrono::nanoseconds older_than) {
  if (impl_->stopped)
    return make_error(errc::shutting_down, "the runtime is shut down");
  if (older_than < std::chrono::nanoseconds::zero())
    return make_error(errc::invalid_config, "purge: older_than must not be negative");
  auto before = impl_->cfg.clock->now() - older_than;
  return impl_->ask<uint64_t>(&service_directory::manager, purge_atom::value,
                              int64_t{before.count()});
}

caf::expected<std::vector<workflow_info>> runtime::dead_letters() {
  auto rows = impl_->cfg.journal->open_workflows();
  if (!rows)
    return rows.error();
  std::vector<workflow_info> out;
  for (auto& row : *rows) {
    if (row.status != "dead_lettered")
      continue;
    auto info = status(row.id);
    if (!info)
      return info.error();
    if (info->status == workflow_status::dead_lettered) // not retried meanwhile
      out.push_back(std::move(*info));
  }
  return out;
}

caf::error runtime::retry_dead_letter(const std::string& workflow_id, const std::string& by,
                                      extra_budget more) {
  if (!(more.cost_usd >= 0) || !std::isfinite(more.cost_usd))
    return make_error(errc::invalid_input, "retry of '" + workflow_id
                                             + "': extra cost_usd must be a finite number >= 0");
  if (more.time < std::chrono::nanoseconds::zero())
    return make_error(errc::invalid_input,
                      "retry of '" + workflow_id + "': extra time must not be negative");
  signal_msg m;
  m.workflow_id = workflow_id;
  m.verdict = signal_msg::dlq_retry;
  m.by = by;
  m.grant_steps = more.steps;
  m.grant_tokens = more.tokens;
  m.grant_cost_nusd = to_nano_usd(more.cost_usd);
  m.grant_time_ns = more.time.count();
  auto r = impl_->ask<caf::unit_t>(&service_directory::manager, signal_atom::value, std::move(m));
  return r ? caf::error{} : r.error();
}

caf::error runtime::drop_dead_letter(const std::string& workflow_id, const std::string& by,
                                     const std::string& reason) {
  return impl_->act(workflow_id, signal_msg::dlq_drop, by, reason);
}

caf::error runtime::cancel(const std::string& workflow_id, const std::string& by,
                           const std::string& reason) {
  return impl_->act(workflow_id, signal_msg::cancel, by, reason);
}

caf::expected<std::vector<journal_record>> runtime::history(const std::string& workflow_id) {
  auto records = impl_->cfg.journal->read(workflow_id);
  if (records && records->empty())
    return make_error(errc::unknown_workflow, "no journaled events for '" + workflow_id + "'");
  return records;
}

caf::expected<std::vector<span>> runtime::trace(const std::string& workflow_id) {
  auto& store = *impl_->cfg.journal;
  auto row = store.workflow(workflow_id);
  if (!row)
    return std::move(row.error());
  auto def = impl_->reg->find_definition(row->definition);
  if (!def)
    return make_error(errc::unknown_definition, "trace of '" + workflow_id + "': definition '"
                                                  + row->definition + "' is not registered");
  auto records = store.read(workflow_id);
  if (!records)
    return std::move(records.error());
  auto effects = store.effects_of(workflow_id);
  if (!effects)
    return std::move(effects.error());
  return derive_trace(*def, *row, *records, *effects);
}

troupe::trace_stats runtime::trace_stats() const {
  return impl_->tracer ? impl_->tracer->stats() : troupe::trace_stats{};
}

bool runtime::flush_traces(std::chrono::milliseconds timeout) {
  return !impl_->tracer || impl_->tracer->flush(timeout);
}

void runtime::shutdown() {
  if (!impl_ || impl_->stopped.exchange(true))
    return;
  auto& i = *impl_;
  caf::scoped_actor self{i.sys};
  // The supervisor stops its children newest first: the manager (which
  // stops every workflow before it quits), then the services the workflows
  // were using.
  self->send_exit(i.root, caf::exit_reason::user_shutdown);
  self->wait_for(i.root);
  i.root = nullptr;
  i.svc.close();
  if (i.tracer) // every write is in; export what it can within its bound
    i.tracer->stop();
  i.feed->close();
}

caf::expected<std::vector<workflow_row>> runtime::list(const workflow_query& q) {
  return impl_->cfg.journal->list_workflows(q);
}

caf::expected<workflow_counts> runtime::counts() {
  return impl_->cfg.journal->count_workflows();
}

std::vector<definition> runtime::definitions() {
  std::vector<definition> out;
  for (const auto& d : impl_->reg->definitions())
    out.push_back(*d);
  return out;
}

journal_changes runtime::watch(uint64_t after, std::chrono::milliseconds wait) {
  return impl_->feed->wait(after, wait);
}

void runtime::wake_watchers() {
  impl_->feed->wake();
}

caf::expected<std::vector<lane_stats>> runtime::model_lanes() {
  return impl_->ask_again<std::vector<lane_stats>>(&service_directory::model, status_atom::value);
}

caf::expected<workflow_info> runtime::state_at(const std::string& workflow_id,
                                               uint64_t wf_seq) {
  // reads are safe from any thread
  auto past = load_past(*impl_->cfg.journal, *impl_->reg, workflow_id, wf_seq);
  if (!past)
    return std::move(past.error());
  auto& s = past->wf.state;
  workflow_info w;
  w.id = past->row.id;
  w.definition = past->row.definition;
  w.status = status_of(s);
  w.node = s.node;
  w.outcome = s.outcome;
  w.reason = s.reason;
  w.state = std::move(s.data);
  w.steps = s.steps;
  w.tokens = s.tokens;
  w.cost_usd = to_usd(s.cost_nusd);
  return w;
}

caf::expected<std::string> runtime::fork(const std::string& workflow_id, uint64_t wf_seq,
                                         const fork_options& opts) {
  if (auto err = check_model(impl_->cfg.gateway, opts.model))
    return err;
  auto past = load_past(*impl_->cfg.journal, *impl_->reg, workflow_id, wf_seq);
  if (!past)
    return std::move(past.error());
  const auto& s = past->wf.state;
  auto at = workflow_id + " at event #" + std::to_string(wf_seq);
  if (s.finished())
    return make_error(errc::invalid_input,
                      at + " had finished (" + kernel::to_string(s.at) + ", outcome '"
                        + s.outcome + "'): fork it at an earlier event");
  if (s.compensating)
    return make_error(errc::invalid_input,
                      at + " was undoing its steps (compensating '" + s.node
                        + "'): fork it at an event before the compensation began");
  start_msg m;
  m.definition = past->row.definition;
  m.input_json = s.data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  m.key = opts.idempotency_key;
  m.user = past->row.user;
  // at a soft-budget gate: the step that waited there
  m.start_node = s.resume_node.empty() ? s.node : s.resume_node;
  m.model = opts.model;
  m.forked_from = workflow_id;
  m.forked_at = wf_seq;
  return impl_->ask<std::string>(&service_directory::manager, start_atom::value, std::move(m));
}

caf::expected<std::string> runtime::metrics_text() {
  runtime_metrics::scrape now;
  auto lanes = model_lanes();
  if (!lanes)
    return std::move(lanes.error());
  now.lanes = std::move(*lanes);
  // The journal is the truth about workflows; its store keeps the counts.
  auto counts = impl_->cfg.journal->count_workflows();
  if (!counts)
    return std::move(counts.error());
  now.workflows = {{"running", counts->running},
                   {"parked", counts->parked},
                   {"dead_lettered", counts->dead_lettered},
                   {"completed", counts->completed},
                   {"failed", counts->failed}};
  return impl_->metrics->text(now);
}

caf::expected<std::vector<child_info>> runtime::services() {
  if (impl_->stopped)
    return make_error(errc::shutting_down, "the runtime is shut down");
  caf::scoped_actor self{impl_->sys};
  caf::expected<std::vector<child_info>> result{caf::error{}};
  self->request(impl_->root, caf::infinite, children_atom::value)
    .receive([&](std::vector<child_info>& x) { result = std::move(x); },
             [&](caf::error& e) { result = std::move(e); });
  return result;
}

std::vector<agent_latency> runtime::step_latency() const {
  return impl_->metrics->step_latency();
}

caf::error runtime::clock_changed() {
  auto all = services();
  if (!all)
    return std::move(all.error());
  for (const auto& c : *all)
    if (c.id == "timers" && c.running && c.actor) {
      // a wake-up for no timer in particular: the service fires what is due
      // by the clock now and asks for its next wake-up again
      caf::anon_send(c.actor, wake_atom::value, int64_t{0});
      return {};
    }
  return make_error(errc::shutting_down, "the timer service is not running");
}

const char* to_string(workflow_status s) {
  switch (s) {
    case workflow_status::running: return "running";
    case workflow_status::parked: return "parked";
    case workflow_status::dead_lettered: return "dead_lettered";
    case workflow_status::completed: return "completed";
    case workflow_status::failed: return "failed";
  }
  return "unknown";
}

} // namespace troupe
