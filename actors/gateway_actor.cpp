#include "actors/gateway_actor.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <map>
#include <unordered_map>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/http_transport.hpp"
#include "gateway/wire.hpp"
#include "kernel/breaker.hpp"
#include "troupe/errors.hpp"

namespace troupe {

namespace {

using done_atom = caf::atom_constant<caf::atom("gw_done")>;
using pump_atom = caf::atom_constant<caf::atom("gw_pump")>;
using steady = std::chrono::steady_clock;

/// A transport result on its way from the I/O thread to the gateway.
struct http_outcome {
  caf::expected<gateway::http_response> result{caf::error{}};
};

} // namespace
} // namespace troupe

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::http_outcome)

namespace troupe {

namespace {

struct provider_rt {
  provider_config cfg;
  std::string api_key; ///< from the environment; never logged
};

struct waiting {
  llm_request req;
  caf::response_promise rp;
  double tokens_estimate = 0;
  uint32_t requeues = 0;
};

struct lane {
  std::string name; ///< "provider/model"
  const provider_rt* provider = nullptr;
  gateway::endpoint ep;
  kernel::circuit_breaker breaker;
  kernel::token_bucket requests;
  kernel::token_bucket tokens;
  model_price price;
  std::deque<waiting> queue;
  size_t in_flight = 0;
  duration held_until{0}; ///< a 429 hold
  duration pump_at{0};    ///< a pump message is armed for then (0: none)
  lane_stats stats;
};

struct flight {
  lane* l = nullptr;
  waiting w;
  steady::time_point sent;
};

struct gateway_state {
  std::map<std::string, provider_rt> providers;
  gateway_config cfg; ///< as configured (resolve_model adds the scripted provider)
  std::map<std::string, lane> lanes; ///< by name; map nodes keep lane* valid
  std::unordered_map<uint64_t, flight> flights;
  uint64_t next_flight = 1;
  std::unique_ptr<http_transport> transport;
  caf::actor scripted;
  std::shared_ptr<clock_source> clock;
  static inline const char* name = "troupe.gateway";

  /// Runs as the gateway exits: every request it still holds, sent or
  /// queued, is answered shutting_down instead of never.
  ~gateway_state() {
    transport.reset(); // stops the I/O thread; its last callbacks go nowhere
    auto err = make_error(errc::shutting_down, "the model gateway stopped");
    for (auto& [id, f] : flights)
      f.w.rp.deliver(err);
    for (auto& [name, l] : lanes)
      for (auto& w : l.queue)
        w.rp.deliver(err);
  }
};

using self_ptr = caf::stateful_actor<gateway_state>*;

duration now_of(self_ptr self) {
  if (auto& c = self->state.clock)
    return c->now();
  return std::chrono::duration_cast<duration>(steady::now().time_since_epoch());
}

caf::error on_lane(const lane& l, const caf::error& err) {
  if (err.category() != error_category)
    return make_error(errc::llm_unavailable, l.name + ": " + describe(err));
  return make_error(static_cast<errc>(err.code()), l.name + ": " + context_of(err));
}

// -- routing and admission -----------------------------------------------------

caf::expected<lane*> lane_for(self_ptr self, const std::string& model_ref) {
  auto& st = self->state;
  auto route = resolve_model(st.cfg, model_ref);
  if (!route)
    return std::move(route.error());
  auto p = st.providers.find(route->provider);
  if (p == st.providers.end()) // resolve_model knows the same providers
    return make_error(errc::llm_rejected, "no provider named '" + route->provider + "'");
  auto& model = route->model;
  auto name = route->lane();
  auto i = st.lanes.find(name);
  if (i != st.lanes.end())
    return &i->second;
  auto& cfg = p->second.cfg;
  auto& l = st.lanes[name];
  l.name = name;
  l.provider = &p->second;
  l.ep.protocol = cfg.protocol;
  l.ep.base_url = cfg.base_url;
  while (!l.ep.base_url.empty() && l.ep.base_url.back() == '/')
    l.ep.base_url.pop_back();
  l.ep.model = model;
  l.ep.api_key = p->second.api_key;
  l.ep.anthropic_version = cfg.anthropic_version;
  l.breaker = kernel::circuit_breaker{cfg.breaker};
  l.requests = kernel::token_bucket{cfg.requests_per_minute / 60.0, cfg.requests_per_minute};
  l.tokens = kernel::token_bucket{cfg.tokens_per_minute / 60.0, cfg.tokens_per_minute};
  l.price = route->price;
  l.stats.lane = name;
  return &l;
}

// Applies the provider's context window to `req`: fits, trimmed to fit, or
// an error saying by how much it does not.
caf::error fit_context(const lane& l, llm_request& req) {
  auto& cfg = l.provider->cfg;
  auto window = cfg.context_window;
  if (window == 0)
    return {};
  auto too_big = [&] { return estimate_prompt_tokens(req) + req.max_tokens > window; };
  if (too_big() && cfg.overflow == overflow_policy::truncate_oldest) {
    auto non_system = [](const chat_message& m) { return m.role != "system"; };
    while (too_big()
           && std::count_if(req.messages.begin(), req.messages.end(), non_system) > 1)
      req.messages.erase(std::find_if(req.messages.begin(), req.messages.end(), non_system));
  }
  if (!too_big())
    return {};
  return make_error(errc::llm_rejected,
                    l.name + ": request of about " + std::to_string(estimate_prompt_tokens(req))
                      + " prompt tokens + max_tokens " + std::to_string(req.max_tokens)
                      + " exceeds the context window of " + std::to_string(window)
                      + (cfg.overflow == overflow_policy::refuse ? " (overflow policy: refuse)"
                                                                 : " even with only the last "
                                                                   "message kept"));
}

caf::error circuit_error(const lane& l, duration now) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(l.breaker.retry_at() - now);
  return make_error(errc::circuit_open, l.name + ": circuit open, next probe in "
                                          + std::to_string(std::max<int64_t>(left.count(), 0))
                                          + " ms");
}

// -- sending -------------------------------------------------------------------

void finish(self_ptr self, uint64_t id, gateway::decoded d);

void send_scripted(self_ptr self, uint64_t id, lane& l, const llm_request& req) {
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
    l.provider->cfg.request_timeout);
  self->request(self->state.scripted, timeout, ask_atom::value, req)
    .then(
      [self, id](llm_reply& r) {
        auto f = self->state.flights.find(id);
        if (f == self->state.flights.end())
          return;
        gateway::decoded d;
        if (auto why = gateway::check_output(f->second.w.req, r.text); !why.empty())
          d.reply = make_error(errc::bad_output, why);
        else
          d.reply = std::move(r);
        finish(self, id, std::move(d));
      },
      [self, id](caf::error& err) {
        gateway::decoded d;
        if (err == caf::sec::request_timeout)
          err = make_error(errc::llm_timeout, "the scripted model did not answer in time");
        d.breaker_failure = is(err, errc::llm_timeout) || is(err, errc::llm_unavailable);
        d.reply = std::move(err);
        finish(self, id, std::move(d));
      });
}

void send_http(self_ptr self, uint64_t id, lane& l, const llm_request& req) {
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
    l.provider->cfg.request_timeout);
  caf::actor_addr me = self->address(); // weak: callbacks do not keep the gateway alive
  self->state.transport->submit(gateway::encode_request(l.ep, req), timeout,
                                [me, id](caf::expected<gateway::http_response> r) {
                                  if (auto gw = caf::actor_cast<caf::actor>(me))
                                    caf::anon_send(gw, done_atom::value, id,
                                                   http_outcome{std::move(r)});
                                });
}

void dispatch(self_ptr self, lane& l, waiting w) {
  auto& st = self->state;
  auto id = st.next_flight++;
  ++l.in_flight;
  ++l.stats.sent;
  auto& f = st.flights[id];
  f.l = &l;
  f.w = std::move(w);
  f.sent = steady::now();
  if (l.ep.protocol == wire_protocol::scripted)
    send_scripted(self, id, l, f.w.req);
  else
    send_http(self, id, l, f.w.req);
}

void arm_pump(self_ptr self, lane& l, duration at, duration now) {
  if (l.pump_at != duration::zero() && l.pump_at <= at)
    return; // an earlier pump is on its way
  l.pump_at = at;
  self->delayed_send(self, std::max(at - now, duration::zero()), pump_atom::value, l.name);
}

void fail_queue(lane& l, const caf::error& err) {
  for (auto& w : l.queue) {
    ++l.stats.rejected;
    w.rp.deliver(err);
  }
  l.queue.clear();
}

void note_breaker(lane& l, std::optional<kernel::breaker_state> changed);

// Sends what the lane's limits allow now; arms a pump for when more is.
void pump(self_ptr self, lane& l) {
  auto now = now_of(self);
  auto& cfg = l.provider->cfg;
  while (!l.queue.empty() && l.in_flight < cfg.max_concurrent) {
    if (now < l.held_until)
      return arm_pump(self, l, l.held_until, now);
    if (l.breaker.state() == kernel::breaker_state::open && now < l.breaker.retry_at())
      return fail_queue(l, circuit_error(l, now));
    auto& w = l.queue.front();
    auto wait = std::max(l.requests.wait_for(1, now), l.tokens.wait_for(w.tokens_estimate, now));
    if (wait > duration::zero())
      return arm_pump(self, l, now + wait, now);
    auto was = l.breaker.state();
    if (!l.breaker.admit(now))
      return; // half-open, its probes out: their results pump again
    if (was != l.breaker.state())
      note_breaker(l, l.breaker.state());
    l.requests.take(1, now);
    l.tokens.take(w.tokens_estimate, now);
    auto next = std::move(l.queue.front());
    l.queue.pop_front();
    dispatch(self, l, std::move(next));
  }
}

// -- results -------------------------------------------------------------------

void note_breaker(lane& l, std::optional<kernel::breaker_state> changed) {
  if (!changed)
    return;
  if (*changed == kernel::breaker_state::open) {
    ++l.stats.breaker_opened;
    spdlog::warn("gateway: {}: circuit open (cool-down {} ms)", l.name,
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                   l.provider->cfg.breaker.cool_down)
                   .count());
  } else {
    spdlog::warn("gateway: {}: circuit {}", l.name, kernel::to_string(*changed));
  }
}

void finish(self_ptr self, uint64_t id, gateway::decoded d) {
  auto& st = self->state;
  auto i = st.flights.find(id);
  if (i == st.flights.end())
    return;
  auto f = std::move(i->second);
  st.flights.erase(i);
  auto& l = *f.l;
  auto& cfg = l.provider->cfg;
  --l.in_flight;
  auto now = now_of(self);
  note_breaker(l, l.breaker.record(!d.breaker_failure, now));
  if (d.rate_limited) {
    ++l.stats.rate_limited;
    auto hold = d.retry_after > std::chrono::milliseconds::zero()
                  ? std::chrono::duration_cast<duration>(d.retry_after)
                  : cfg.default_retry_after;
    l.held_until = std::max(l.held_until, now + hold);
    if (f.w.requeues < cfg.max_requeues) {
      ++f.w.requeues;
      l.tokens.give_back(f.w.tokens_estimate, now);
      l.queue.push_front(std::move(f.w));
      pump(self, l);
      return;
    }
  }
  if (d.reply) {
    auto& r = *d.reply;
    auto actual = static_cast<double>(r.total_tokens());
    if (actual < f.w.tokens_estimate)
      l.tokens.give_back(f.w.tokens_estimate - actual, now);
    else
      l.tokens.take(actual - f.w.tokens_estimate, now);
    r.provider = l.provider->cfg.name;
    if (r.model.empty())
      r.model = l.ep.model;
    r.latency_us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - f.sent).count());
    r.cost_usd = cost_usd(l.price, r.prompt_tokens, r.completion_tokens);
    ++l.stats.succeeded;
    l.stats.prompt_tokens += r.prompt_tokens;
    l.stats.completion_tokens += r.completion_tokens;
    l.stats.cost_usd += r.cost_usd;
    f.w.rp.deliver(std::move(r));
  } else {
    if (d.breaker_failure)
      ++l.stats.failed;
    f.w.rp.deliver(on_lane(l, d.reply.error()));
  }
  pump(self, l);
}

caf::behavior gateway_behavior(self_ptr self, gateway_env env,
                               std::map<std::string, provider_rt> providers) {
  auto& st = self->state;
  st.providers = std::move(providers);
  st.cfg = std::move(env.cfg);
  st.scripted = std::move(env.scripted);
  st.clock = std::move(env.clock);
  for (auto& [name, p] : st.providers)
    if (p.cfg.protocol != wire_protocol::scripted && !st.transport)
      st.transport = std::make_unique<http_transport>();
  // The transport dies with the state (~gateway_state).
  return {
    [self](ask_atom, llm_request& req) -> caf::result<llm_reply> {
      auto l = lane_for(self, req.model);
      if (!l)
        return l.error();
      auto& ln = **l;
      auto now = now_of(self);
      if (auto err = fit_context(ln, req)) {
        ++ln.stats.rejected;
        return err;
      }
      if (ln.breaker.state() == kernel::breaker_state::open && now < ln.breaker.retry_at()) {
        ++ln.stats.rejected;
        return circuit_error(ln, now);
      }
      if (ln.queue.size() >= ln.provider->cfg.max_queue) {
        ++ln.stats.rejected;
        return make_error(errc::overloaded, ln.name + ": " + std::to_string(ln.queue.size())
                                              + " requests already queued (max_queue)");
      }
      auto rp = self->make_response_promise<llm_reply>();
      waiting w;
      w.tokens_estimate = estimate_prompt_tokens(req) + req.max_tokens;
      w.req = std::move(req);
      w.rp = rp;
      ln.queue.push_back(std::move(w));
      pump(self, ln);
      return rp;
    },
    [self](done_atom, uint64_t id, http_outcome& out) {
      auto i = self->state.flights.find(id);
      if (i == self->state.flights.end())
        return;
      gateway::decoded d;
      if (!out.result) {
        d.breaker_failure = true; // the provider could not be reached or did not answer
        d.reply = std::move(out.result.error());
      } else {
        d = gateway::decode_response(i->second.l->ep, i->second.w.req, *out.result);
      }
      finish(self, id, std::move(d));
    },
    [self](pump_atom, const std::string& name) {
      auto i = self->state.lanes.find(name);
      if (i == self->state.lanes.end())
        return;
      i->second.pump_at = duration::zero();
      pump(self, i->second);
    },
    [self](tick_atom) {
      for (auto& [name, l] : self->state.lanes)
        pump(self, l);
    },
    [self](status_atom) {
      std::vector<lane_stats> out;
      auto now = now_of(self);
      for (auto& [name, l] : self->state.lanes) {
        auto s = l.stats;
        s.breaker = kernel::to_string(l.breaker.state());
        s.queued = l.queue.size();
        s.in_flight = l.in_flight;
        s.held_for_ms = std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(l.held_until - now).count());
        out.push_back(std::move(s));
      }
      return out;
    },
  };
}

} // namespace

namespace {

/// The key of provider `p` from its environment variable ("" when it names none).
caf::expected<std::string> key_of(const provider_config& p) {
  if (p.api_key_env.empty())
    return std::string{};
  auto* key = std::getenv(p.api_key_env.c_str());
  if (!key || !*key)
    return make_error(errc::invalid_config, "provider '" + p.name + "': environment variable "
                                              + p.api_key_env + " is not set");
  return std::string{key};
}

} // namespace

caf::error check_gateway(const gateway_config& cfg) {
  if (auto err = validate(cfg))
    return err;
  for (auto& p : cfg.providers)
    if (auto key = key_of(p); !key)
      return key.error();
  return {};
}

caf::expected<caf::actor> spawn_gateway(caf::actor_system& sys, gateway_env env) {
  if (auto err = validate(env.cfg))
    return err;
  std::map<std::string, provider_rt> providers;
  for (auto& p : env.cfg.providers) {
    auto key = key_of(p);
    if (!key)
      return key.error();
    providers.emplace(p.name, provider_rt{p, std::move(*key)});
  }
  if (!providers.count("scripted")) {
    // The embedded model is always reachable, with no breaker: its faults
    // are injected on purpose and must reach the workflow as they are.
    provider_config s;
    s.name = "scripted";
    s.protocol = wire_protocol::scripted;
    s.model = "scripted";
    s.breaker.consecutive_failures = 0;
    s.breaker.window = 0;
    s.max_concurrent = 1'000'000;
    s.max_queue = 1'000'000;
    providers.emplace("scripted", provider_rt{s, {}});
  }
  if (providers.at("scripted").cfg.protocol == wire_protocol::scripted && !env.scripted)
    return make_error(errc::invalid_config, "gateway: no scripted model actor");
  return sys.spawn(gateway_behavior, std::move(env), std::move(providers));
}

} // namespace troupe
