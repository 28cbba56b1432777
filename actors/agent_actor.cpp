// Agent runners (see the header).
#include "actors/agent_actor.hpp"

#include <atomic>
#include <cstdio>
#include <memory>
#include <unordered_map>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "runtime/log_format.hpp"
#include "troupe/errors.hpp"

namespace troupe {

namespace {

using stop_flag = agent_runners::stop_flag;

class agent_runner;

/// One attempt on a runner: the step_context its agent sees. Every call
/// happens on the runner's actor. Once done it only waits to be erased.
class attempt_ctx final : public step_context {
public:
  attempt_ctx(agent_runner& runner, caf::actor workflow, step_input in)
    : runner_(runner), workflow_(std::move(workflow)), in_(std::move(in)) {}

  const std::string& workflow_id() const override { return in_.workflow_id; }
  const std::string& node() const override { return in_.node; }
  uint32_t attempt() const override { return in_.attempt; }
  const nlohmann::json& state() const override { return in_.state; }
  const budgets_left& budget() const override { return in_.budget; }
  const std::string& idempotency_key() const override { return in_.key; }
  const std::string& user() const override { return in_.user; }
  const std::string& traceparent() const override {
    if (traceparent_.empty()) // formatted once, when first needed
      traceparent_ = in_.trace.traceparent();
    return traceparent_;
  }

  nlohmann::json session_get(const std::string& key) const override {
    if (!in_.sessions || in_.user.empty())
      return nullptr;
    return in_.sessions->get(in_.user, key);
  }

  caf::error session_put(const std::string& key, const nlohmann::json& value) override {
    if (!in_.sessions)
      return make_error(errc::invalid_input, "session context: none in this runtime");
    return in_.sessions->put(in_.user, key, value);
  }

  void ask(llm_request req, reply_handler then) override;
  void effect(const std::string& name, effect_fn fn, effect_handler then) override;

  void finish(step_outcome o) override {
    if (done_)
      return;
    agent_report r;
    r.token = in_.token;
    r.ok = true;
    r.label = std::move(o.label);
    r.patch_json = o.patch.dump();
    r.tokens = o.extra_tokens;
    report(std::move(r));
  }

  void fail(failure_kind kind, std::string reason) override {
    if (done_)
      return;
    agent_report r;
    r.token = in_.token;
    r.kind = static_cast<uint8_t>(kind);
    r.reason = std::move(reason);
    report(std::move(r));
  }

  /// Runs agent code; an exception escaping it fails the attempt as crashed.
  template <class F>
  void guarded(F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      crashed(std::string{"agent threw: "} + e.what());
    } catch (...) {
      crashed("agent threw a non-standard exception");
    }
  }

  /// The attempt's log context: its workflow, trace, node and attempt.
  log_context about() const {
    // the trace id is the traceparent's second field (troupe/trace.hpp)
    auto trace = std::string_view{traceparent()};
    return {in_.workflow_id, trace.size() >= 35 ? trace.substr(3, 32) : std::string_view{},
            in_.node, in_.attempt};
  }

  /// An agent that returns with no call pending and no outcome would hang
  /// until its timeout: it has crashed, now.
  void check_idle() {
    if (!done_ && pending_ == 0)
      fail(failure_kind::crashed, "agent returned without finish() or fail() and with no "
                                  "model call pending");
  }

  bool done() const { return done_; }
  const caf::actor& workflow() const { return workflow_; }
  uint64_t token() const { return in_.token; }
  uint32_t pending_ = 0;

private:
  void report(agent_report r);
  void crashed(std::string why) {
    log_about(about(), spdlog::level::warn, "workflow {}: agent '{}' at '{}' attempt {}: {}",
              in_.workflow_id, in_.agent, in_.node, in_.attempt, why);
    fail(failure_kind::crashed, std::move(why));
  }
  void effect_done(const effect_handler& then, const std::string& result);

  agent_runner& runner_;
  caf::actor workflow_;
  step_input in_;
  mutable std::string traceparent_; ///< in_.trace, once asked for
  uint32_t calls_ = 0;
  uint64_t spent_ = 0;    ///< tokens of this attempt's answered calls
  uint64_t reserved_ = 0; ///< estimates of its calls in flight
  uint64_t spent_nusd_ = 0;    ///< cost of its answered calls
  uint64_t reserved_nusd_ = 0; ///< cost estimates of its calls in flight
  bool done_ = false;
};

/// Attempts are keyed by their workflow's actor id and the workflow's token.
struct attempt_key {
  caf::actor_id workflow = 0;
  uint64_t token = 0;
  bool operator==(const attempt_key& o) const {
    return workflow == o.workflow && token == o.token;
  }
};

struct attempt_key_hash {
  size_t operator()(const attempt_key& k) const {
    return std::hash<uint64_t>{}(k.workflow * 0x9e3779b97f4a7c15ULL ^ k.token);
  }
};

class agent_runner final : public caf::event_based_actor {
public:
  agent_runner(caf::actor_config& cfg, agent_ptr impl, caf::actor model, caf::actor journal,
               std::shared_ptr<const gateway_config> models,
               std::shared_ptr<clock_source> clock, stop_flag stopped)
    : caf::event_based_actor(cfg),
      impl_(std::move(impl)),
      model_(std::move(model)),
      journal_(std::move(journal)),
      models_(std::move(models)),
      clock_(std::move(clock)),
      stopped_(std::move(stopped)) {}

  const char* name() const override { return "troupe.agent_runner"; }

  caf::behavior make_behavior() override {
    return {
      [this](run_atom, step_input& in) {
        auto workflow = caf::actor_cast<caf::actor>(current_sender());
        if (!workflow)
          return; // an anonymous run request has nobody to report to
        attempt_key k{workflow.id(), in.token};
        auto a = std::make_unique<attempt_ctx>(*this, std::move(workflow), std::move(in));
        auto& ref = *a;
        attempts_[k] = std::move(a);
        ref.guarded([&] { impl_->run(ref); });
        ref.check_idle();
        settle(k);
      },
      [this](cancel_atom, uint64_t token) {
        if (auto& s = current_sender())
          attempts_.erase({s->id(), token});
      },
    };
  }

  void on_exit() override {
    stopped_->store(true);
    auto why = "agent runner stopped: "
               + (fail_state() ? describe(fail_state()) : std::string{"exited"});
    for (auto& [k, a] : attempts_)
      if (!a->done())
        a->fail(failure_kind::crashed, why);
    attempts_.clear();
  }

  /// The attempt `k` if it is still running (not reported, not cancelled).
  attempt_ctx* find(const attempt_key& k) {
    auto i = attempts_.find(k);
    return i == attempts_.end() || i->second->done() ? nullptr : i->second.get();
  }

  /// Forgets `k` once it has reported. Called by every entry point after
  /// the agent's code has returned, never from inside it.
  void settle(const attempt_key& k) {
    auto i = attempts_.find(k);
    if (i != attempts_.end() && i->second->done())
      attempts_.erase(i);
  }

  /// Runs `f` on the attempt `k` if it is still running, then settles it.
  template <class F>
  void resume(const attempt_key& k, F&& f) {
    if (auto* a = find(k)) {
      f(*a);
      settle(k);
    }
  }

  const caf::actor& model() const { return model_; }
  const caf::actor& journal() const { return journal_; }

  /// Now, on the runtime's clock if it has one (effects are stamped with
  /// it, like the workflows' events).
  int64_t now_ns() {
    if (clock_)
      return clock_->now().count();
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock().now().time_since_epoch())
      .count();
  }

  /// What a call to `model_ref` costs per token (zero when unpriced).
  model_price price_of(const std::string& model_ref) const {
    if (!models_)
      return {};
    auto r = resolve_model(*models_, model_ref);
    return r ? r->price : model_price{};
  }

private:
  agent_ptr impl_;
  caf::actor model_;
  caf::actor journal_;
  std::shared_ptr<const gateway_config> models_;
  std::shared_ptr<clock_source> clock_;
  stop_flag stopped_;
  std::unordered_map<attempt_key, std::unique_ptr<attempt_ctx>, attempt_key_hash> attempts_;
};

void attempt_ctx::report(agent_report r) {
  done_ = true;
  // from on_exit too, where the runner can no longer send as itself
  caf::anon_send(workflow_, std::move(r));
}

/// `need` more on top of `used` does not fit `limit` (unlimited never binds).
bool over(uint64_t limit, uint64_t used, uint64_t need) {
  return limit != budgets_left::unlimited && used + need > limit;
}

std::string usd(uint64_t nano) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "$%.6f", to_usd(nano));
  return buf;
}

void attempt_ctx::ask(llm_request req, reply_handler then) {
  if (done_)
    return;
  if (!in_.model.empty()) // the workflow's override (a fork's): every call, priced as it
    req.model = in_.model;
  // Reserve the call's estimate against the workflow's token and cost
  // budgets; one that does not fit is never sent.
  uint64_t prompt = estimate_prompt_tokens(req);
  uint64_t estimate = prompt + req.max_tokens;
  auto& left = in_.budget;
  uint64_t estimate_nusd = 0; // priced only when a cost budget binds
  if (left.cost_nusd != budgets_left::unlimited)
    estimate_nusd = to_nano_usd(cost_usd(runner_.price_of(req.model), prompt, req.max_tokens));
  caf::error refused;
  if (over(left.tokens, spent_ + reserved_, estimate))
    refused = make_error(errc::over_budget,
                         "a model call of about " + std::to_string(estimate)
                           + " tokens (prompt + max_tokens) does not fit the "
                           + std::to_string(left.tokens - std::min(left.tokens, spent_ + reserved_))
                           + " tokens left of the workflow's budget");
  else if (over(left.cost_nusd, spent_nusd_ + reserved_nusd_, estimate_nusd))
    refused = make_error(errc::over_budget,
                         "a model call of up to " + usd(estimate_nusd)
                           + " (prompt + max_tokens at the model's price) does not fit the "
                           + usd(left.cost_nusd
                                 - std::min(left.cost_nusd, spent_nusd_ + reserved_nusd_))
                           + " left of the workflow's cost budget");
  if (refused) {
    guarded([&] { then(*this, std::move(refused)); });
    return;
  }
  reserved_ += estimate;
  reserved_nusd_ += estimate_nusd;
  req.idempotency_key = in_.key;
  if (req.traceparent.empty()) // the provider's spans nest under this attempt's
    req.traceparent = traceparent();
  req.request_id = in_.key + ":" + std::to_string(in_.attempt) + ":" + std::to_string(calls_++);
  if (req.script.empty())
    req.script = in_.agent;
  ++pending_;
  attempt_key k{workflow_.id(), in_.token};
  auto* r = &runner_;
  auto unreserve = [estimate, estimate_nusd](attempt_ctx& a) {
    --a.pending_;
    a.reserved_ -= estimate;
    a.reserved_nusd_ -= estimate_nusd;
  };
  runner_.request(runner_.model(), caf::infinite, ask_atom::value, std::move(req))
    .then(
      [r, k, then, unreserve](llm_reply& rep) {
        r->resume(k, [&](attempt_ctx& a) {
          unreserve(a);
          uint64_t tokens = rep.total_tokens();
          uint64_t nusd = to_nano_usd(rep.cost_usd);
          a.spent_ += tokens;
          a.spent_nusd_ += nusd;
          r->send(a.workflow(), usage_atom::value, a.token(), tokens, nusd);
          a.guarded([&] { then(a, std::move(rep)); });
          a.check_idle();
        });
      },
      [r, k, then, unreserve](caf::error& e) {
        r->resume(k, [&](attempt_ctx& a) {
          unreserve(a);
          a.guarded([&] { then(a, std::move(e)); });
          a.check_idle();
        });
      });
}

void attempt_ctx::effect(const std::string& name, effect_fn fn, effect_handler then) {
  if (done_)
    return;
  auto key = in_.key + "/" + name;
  ++pending_;
  attempt_key k{workflow_.id(), in_.token};
  auto* r = &runner_;
  auto failed = [r, k, then](caf::error& e) {
    r->resume(k, [&](attempt_ctx& a) {
      --a.pending_;
      a.guarded([&] { then(a, std::move(e)); });
      a.check_idle();
    });
  };
  runner_.request(runner_.journal(), caf::infinite, effect_atom::value, key)
    .then(
      [r, k, key, fn, then, failed](std::vector<effect_record>& found) {
        r->resume(k, [&](attempt_ctx& a) {
          if (!found.empty()) { // done before: its recorded result, not again
            a.effect_done(then, found.front().result);
            return;
          }
          effect_record rec;
          a.guarded([&] {
            rec.result = fn(key).dump();
            rec.key = key;
          });
          if (rec.key.empty()) { // fn threw: the attempt has failed
            --a.pending_;
            return;
          }
          rec.workflow_id = a.workflow_id();
          rec.at_ns = r->now_ns();
          r->request(r->journal(), caf::infinite, effect_atom::value, std::move(rec))
            .then(
              [r, k, then](effect_record& done) {
                r->resume(k, [&](attempt_ctx& b) { b.effect_done(then, done.result); });
              },
              failed);
        });
      },
      failed);
}

void attempt_ctx::effect_done(const effect_handler& then, const std::string& result) {
  --pending_;
  auto j = nlohmann::json::parse(result, nullptr, false);
  if (j.is_discarded())
    guarded([&] {
      then(*this, make_error(errc::journal_corrupt, "effect result does not parse"));
    });
  else
    guarded([&] { then(*this, std::move(j)); });
  check_idle();
}

} // namespace

agent_runners::agent_runners(caf::actor_system& sys, caf::actor model, caf::actor journal,
                             size_t width, std::shared_ptr<const gateway_config> models,
                             std::shared_ptr<clock_source> clock)
  : sys_(sys), model_(std::move(model)), journal_(std::move(journal)),
    models_(std::move(models)), clock_(std::move(clock)), width_(width == 0 ? 1 : width) {}

caf::actor agent_runners::spawn_runner(const agent_ptr& impl, const stop_flag& stopped) {
  return sys_.spawn<agent_runner>(impl, model_, journal_, models_, clock_, stopped);
}

caf::actor agent_runners::pick(const std::string& agent, const agent_ptr& impl,
                               uint64_t token) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (closed_)
    return nullptr;
  auto& slots = runners_[agent];
  if (slots.empty())
    slots.resize(width_);
  auto& s = slots[token % width_];
  if (!s.runner || s.stopped->load()) {
    s.stopped = std::make_shared<std::atomic<bool>>(false);
    s.runner = spawn_runner(impl, s.stopped);
  }
  return s.runner;
}

void agent_runners::stop() {
  std::map<std::string, std::vector<slot>> all;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    closed_ = true;
    all.swap(runners_);
  }
  for (auto& [name, slots] : all)
    for (auto& s : slots)
      if (s.runner)
        caf::anon_send_exit(s.runner, caf::exit_reason::user_shutdown);
}

} // namespace troupe
