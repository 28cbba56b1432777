// Agent API helpers: lambda agents, mapping model errors to failure kinds,
// ask_json, token counting.
#include "troupe/agent.hpp"

#include <cctype>

#include "troupe/errors.hpp"

namespace troupe {

namespace {

class fn_agent final : public agent {
public:
  explicit fn_agent(agent_fn fn) : fn_(std::move(fn)) {}
  void run(step_context& ctx) const override { fn_(ctx); }

private:
  agent_fn fn_;
};

} // namespace

const std::string& step_context::traceparent() const {
  static const std::string none;
  return none;
}

agent_ptr make_agent(agent_fn fn) {
  return std::make_shared<fn_agent>(std::move(fn));
}

failure_kind failure_of(const caf::error& err) {
  if (is(err, errc::llm_timeout))
    return failure_kind::timeout;
  if (is(err, errc::bad_output))
    return failure_kind::bad_output;
  if (is(err, errc::circuit_open))
    return failure_kind::circuit_open;
  if (is(err, errc::llm_rejected))
    return failure_kind::rejected;
  if (is(err, errc::over_budget))
    return failure_kind::budget;
  return failure_kind::crashed;
}

void ask_json(step_context& ctx, llm_request req,
              std::function<void(step_context&, nlohmann::json)> then) {
  req.json_output = true;
  ctx.ask(std::move(req), [then](step_context& c, caf::expected<llm_reply> r) {
    if (!r)
      return c.fail(failure_of(r.error()), "model: " + describe(r.error()));
    auto doc = nlohmann::json::parse(r->text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      auto head = r->text.substr(0, 60);
      return c.fail(failure_kind::bad_output, "model reply is not a JSON object: \"" + head
                                                  + (r->text.size() > 60 ? "...\"" : "\""));
    }
    then(c, std::move(doc));
  });
}

uint32_t estimate_prompt_tokens(const llm_request& req) {
  uint32_t n = 0;
  for (auto& m : req.messages)
    n += count_tokens(m.content) + 4;
  return n;
}

uint32_t count_tokens(const std::string& text) {
  uint32_t n = 0;
  bool in_word = false;
  for (unsigned char c : text) {
    if (std::isalnum(c)) {
      if (!in_word)
        ++n;
      in_word = true;
    } else {
      in_word = false;
      if (!std::isspace(c))
        ++n;
    }
  }
  return n;
}

} // namespace troupe
