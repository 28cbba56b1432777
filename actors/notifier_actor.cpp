// The notifier (see the header).
#include "actors/notifier_actor.hpp"

#include <map>
#include <memory>
#include <string>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/http_transport.hpp"
#include "kernel/workflow_machine.hpp"
#include "troupe/errors.hpp"

namespace troupe {

namespace {

using posted_atom = caf::atom_constant<caf::atom("nt_posted")>;
using again_atom = caf::atom_constant<caf::atom("nt_again")>;

/// How a POST ended: delivered, worth another try, or refused for good.
enum class verdict : uint8_t { sent, retry, give_up };

verdict judge(const caf::expected<gateway::http_response>& r, std::string& why) {
  if (!r) {
    why = describe(r.error());
    return verdict::retry;
  }
  auto s = r->status;
  why = "HTTP " + std::to_string(s);
  if (s >= 200 && s < 300)
    return verdict::sent;
  if (s == 408 || s == 429 || s >= 500)
    return verdict::retry;
  return verdict::give_up;
}

struct post {
  std::string url;
  std::string body;
  uint32_t attempt = 1;
};

struct notifier_state {
  notifier_config cfg;
  std::unique_ptr<http_transport> transport; ///< started on the first POST
  std::map<uint64_t, post> posts;            ///< waiting or in flight
  uint64_t next = 1;
  static inline const char* name = "troupe.notifier";

  ~notifier_state() { transport.reset(); } // its last callbacks go nowhere
};

using self_ptr = caf::stateful_actor<notifier_state>*;

void send(self_ptr self, uint64_t id) {
  auto& st = self->state;
  auto& p = st.posts.at(id);
  if (!st.transport)
    st.transport = std::make_unique<http_transport>();
  gateway::http_request req;
  req.url = p.url;
  req.headers = {{"Content-Type", "application/json"}};
  req.body = p.body;
  caf::actor_addr me = self->address(); // weak: callbacks do not keep it alive
  st.transport->submit(std::move(req), st.cfg.timeout,
                       [me, id](caf::expected<gateway::http_response> r) {
                         std::string why;
                         auto v = judge(r, why);
                         if (auto n = caf::actor_cast<caf::actor>(me))
                           caf::anon_send(n, posted_atom::value, id,
                                          static_cast<uint8_t>(v), why);
                       });
}

caf::behavior notifier(self_ptr self, notifier_config cfg) {
  self->state.cfg = std::move(cfg);
  return {
    [self](notify_atom, std::string& url, std::string& body) {
      auto& st = self->state;
      if (st.posts.size() >= st.cfg.max_pending) {
        spdlog::error("notifier: {} POSTs pending; dropped the one to {}", st.posts.size(), url);
        return;
      }
      auto id = st.next++;
      st.posts.emplace(id, post{std::move(url), std::move(body)});
      send(self, id);
    },
    [self](posted_atom, uint64_t id, uint8_t v, const std::string& why) {
      auto& st = self->state;
      auto i = st.posts.find(id);
      if (i == st.posts.end())
        return;
      auto& p = i->second;
      auto outcome = static_cast<verdict>(v);
      if (outcome == verdict::sent) {
        spdlog::info("notifier: sent to {} (try {})", p.url, p.attempt);
        st.posts.erase(i);
        return;
      }
      if (outcome == verdict::give_up || p.attempt >= st.cfg.retry.max_attempts) {
        spdlog::error("notifier: gave up on {} after {} tries: {}", p.url, p.attempt, why);
        st.posts.erase(i);
        return;
      }
      auto wait = kernel::backoff_delay(st.cfg.retry, id, p.url, p.attempt);
      spdlog::warn("notifier: {} failed ({}), try {} in {} ms", p.url, why, p.attempt + 1,
                   std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
      ++p.attempt;
      self->delayed_send(self, wait, again_atom::value, id);
    },
    [self](again_atom, uint64_t id) {
      if (self->state.posts.count(id))
        send(self, id);
    },
  };
}

} // namespace

caf::actor spawn_notifier(caf::actor_system& sys, notifier_config cfg) {
  return sys.spawn(notifier, std::move(cfg));
}

} // namespace troupe
