// The scripted model actor (see the header).
#include "actors/scripted_model_actor.hpp"

#include <unordered_map>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "troupe/errors.hpp"
#include "troupe/hash.hpp"

namespace troupe {

namespace {

struct delayed_reply {
  caf::response_promise promise;
  caf::expected<llm_reply> reply;
};

struct scripted_model_state {
  scripted_model_config cfg;
  uint64_t next_id = 0;
  std::unordered_map<uint64_t, delayed_reply> delayed;
  static inline const char* name = "troupe.scripted_model";
};

caf::expected<llm_reply> answer(const scripted_model_config& cfg, const llm_request& req,
                                scripted_fault fault) {
  if (fault == scripted_fault::fail)
    return make_error(errc::llm_unavailable, "scripted model: injected failure for "
                                                 + req.request_id);
  auto rule = cfg.rules.find(req.script);
  if (rule == cfg.rules.end())
    return make_error(errc::llm_unavailable, "scripted model: no script '" + req.script + "'");
  llm_reply r;
  r.provider = "scripted";
  r.text = fault == scripted_fault::malformed ? malformed_reply : rule->second(req);
  if (r.text == scripted_model_config::error_reply)
    return make_error(errc::llm_unavailable, "scripted model: the rule failed " + req.request_id);
  uint32_t prompt = 0;
  for (auto& m : req.messages)
    prompt += count_tokens(m.content);
  r.prompt_tokens = prompt;
  r.completion_tokens = count_tokens(r.text);
  return r;
}

caf::behavior scripted_model(caf::stateful_actor<scripted_model_state>* self,
                             scripted_model_config cfg) {
  self->state.cfg = std::move(cfg);
  return {
    [self](ask_atom, const llm_request& req) -> caf::result<llm_reply> {
      auto& st = self->state;
      auto fault = roll_fault(st.cfg, req.request_id);
      // A promise takes over the reply when made: make one only when the
      // answer comes later (or never).
      if (fault == scripted_fault::timeout)
        return self->make_response_promise<llm_reply>(); // never answered

      auto reply = answer(st.cfg, req, fault);
      if (reply && reply->text == scripted_model_config::no_reply)
        return self->make_response_promise<llm_reply>(); // the rule hangs it
      if (st.cfg.latency <= duration::zero()) {
        if (reply)
          return std::move(*reply);
        return std::move(reply.error());
      }
      auto rp = self->make_response_promise<llm_reply>();
      auto id = st.next_id++;
      st.delayed.emplace(id, delayed_reply{rp, std::move(reply)});
      self->delayed_send(self, st.cfg.latency, reply_atom::value, id);
      return rp;
    },
    [self](reply_atom, uint64_t id) {
      auto i = self->state.delayed.find(id);
      if (i == self->state.delayed.end())
        return;
      auto& d = i->second;
      if (d.reply)
        d.promise.deliver(std::move(*d.reply));
      else
        d.promise.deliver(std::move(d.reply.error()));
      self->state.delayed.erase(i);
    },
  };
}

} // namespace

scripted_fault roll_fault(const scripted_model_config& cfg, const std::string& request_id) {
  double u = static_cast<double>(splitmix64(fnv1a(request_id) ^ cfg.seed) >> 11) * 0x1.0p-53;
  if (u < cfg.fail_rate)
    return scripted_fault::fail;
  if (u < cfg.fail_rate + cfg.timeout_rate)
    return scripted_fault::timeout;
  if (u < cfg.fail_rate + cfg.timeout_rate + cfg.malformed_rate)
    return scripted_fault::malformed;
  return scripted_fault::none;
}

caf::actor spawn_scripted_model(caf::actor_system& sys, scripted_model_config cfg) {
  return sys.spawn(scripted_model, std::move(cfg));
}

} // namespace troupe
