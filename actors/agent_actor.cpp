// The agent attempt actor (see the header).
#include "actors/agent_actor.hpp"

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "troupe/errors.hpp"

namespace troupe {

namespace {

class agent_attempt final : public caf::event_based_actor, private step_context {
public:
  agent_attempt(caf::actor_config& cfg, caf::actor workflow, caf::actor model,
                caf::actor journal, agent_ptr impl, step_input in)
    : caf::event_based_actor(cfg),
      workflow_(std::move(workflow)),
      model_(std::move(model)),
      journal_(std::move(journal)),
      impl_(std::move(impl)),
      in_(std::move(in)) {
    // not set: default name
  }

  const char* name() const override { return "troupe.agent_attempt"; }

  caf::behavior make_behavior() override {
    guarded([this] { impl_->run(*this); });
    check_idle();
    return {[](run_atom) {}}; // nothing arrives but replies to our requests
  }

private:
  // -- step_context -----------------------------------------------------------
  const std::string& workflow_id() const override { return in_.workflow_id; }
  const std::string& node() const override { return in_.node; }
  uint32_t attempt() const override { return in_.attempt; }
  const nlohmann::json& state() const override { return in_.state; }
  const budgets_left& budget() const override { return in_.budget; }
  const std::string& idempotency_key() const override { return in_.key; }

  void ask(llm_request req, reply_handler then) override {
    if (done_)
      return;
    req.idempotency_key = in_.key;
    req.request_id = in_.key + ":" + std::to_string(in_.attempt) + ":" + std::to_string(calls_++);
    if (req.script.empty())
      req.script = in_.agent;
    ++pending_;
    request(model_, caf::infinite, ask_atom::value, std::move(req))
      .then(
        [this, then](llm_reply& r) {
          --pending_;
          send(workflow_, usage_atom::value, in_.token, uint64_t{r.total_tokens()});
          guarded([&] { then(*this, std::move(r)); });
          check_idle();
        },
        [this, then](caf::error& e) {
          --pending_;
          guarded([&] { then(*this, std::move(e)); });
          check_idle();
        });
  }

  void effect(const std::string& name, effect_fn fn, effect_handler then) override {
    if (done_)
      return;
    auto key = in_.key + "/" + name;
    ++pending_;
    request(journal_, caf::infinite, effect_atom::value, key)
      .then(
        [this, key, fn, then](std::vector<effect_record>& found) {
          if (!found.empty()) { // done before: its recorded result, not again
            effect_done(then, found.front().result);
            return;
          }
          effect_record rec;
          guarded([&] {
            rec.result = fn(key).dump();
            rec.key = key;
          });
          if (rec.key.empty()) { // fn threw: the attempt has failed
            --pending_;
            return;
          }
          rec.workflow_id = in_.workflow_id;
          rec.at_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        clock().now().time_since_epoch())
                        .count();
          request(journal_, caf::infinite, effect_atom::value, std::move(rec))
            .then([this, then](effect_record& r) { effect_done(then, r.result); },
                  [this, then](caf::error& e) { effect_failed(then, std::move(e)); });
        },
        [this, then](caf::error& e) { effect_failed(then, std::move(e)); });
  }

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

  // -- internals --------------------------------------------------------------
  void effect_done(const effect_handler& then, const std::string& result) {
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

  void effect_failed(const effect_handler& then, caf::error e) {
    --pending_;
    guarded([&] { then(*this, std::move(e)); });
    check_idle();
  }

  void report(agent_report r) {
    done_ = true;
    send(workflow_, std::move(r));
    quit();
  }

  // Agent code never lets an exception escape into CAF: it becomes "crashed".
  template <class F>
  void guarded(F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      fail(failure_kind::crashed, std::string{"agent threw: "} + e.what());
    } catch (...) {
      fail(failure_kind::crashed, "agent threw a non-standard exception");
    }
  }

  // An agent that returns with no model call pending and no outcome would
  // otherwise hang until its timeout: report it now.
  void check_idle() {
    if (!done_ && pending_ == 0)
      fail(failure_kind::crashed, "agent returned without finish() or fail() and with no "
                                  "model call pending");
  }

  caf::actor workflow_;
  caf::actor model_;
  caf::actor journal_;
  agent_ptr impl_;
  step_input in_;
  uint32_t calls_ = 0;
  uint32_t pending_ = 0;
  bool done_ = false;
};

} // namespace

caf::actor spawn_agent_attempt(caf::local_actor* self, caf::actor model, caf::actor journal,
                               agent_ptr impl, step_input input) {
  auto workflow = caf::actor_cast<caf::actor>(self);
  return self->spawn<agent_attempt, caf::monitored>(std::move(workflow), std::move(model),
                                                    std::move(journal), std::move(impl),
                                                    std::move(input));
}

} // namespace troupe
