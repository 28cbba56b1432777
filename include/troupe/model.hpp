// The model seam: what an agent asks a model and what comes back. Agents
// reach the model through their step_context; the runtime routes requests
// to its gateway actor (troupe/gateway.hpp), which fronts the HTTP
// providers and the embedded scripted model.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "troupe/definition.hpp"

namespace troupe {

struct chat_message {
  std::string role; ///< "system" | "user" | "assistant"
  std::string content;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_message& x) {
  return f(caf::meta::type_name("chat_message"), x.role, x.content);
}

/// One model call. `model` picks the provider and model (see
/// troupe/gateway.hpp). `script` selects the scripted model's rule (by
/// default the agent's name); real providers ignore it.
struct llm_request {
  std::string model;
  std::vector<chat_message> messages;
  uint32_t max_tokens = 1024;
  double temperature = -1;     ///< < 0: the provider's default
  bool json_output = false;    ///< reply must be a JSON object
  /// With json_output: fields the object must have (its declared shape);
  /// a reply without one of them is bad_output.
  std::vector<std::string> required_fields;
  std::string idempotency_key; ///< of the step making the call
  std::string request_id;      ///< unique per call: "<key>:<attempt>:<call>"
  std::string script;
  /// Sent as the `traceparent` header; filled in with the attempt's
  /// (step_context::traceparent) when empty.
  std::string traceparent{};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, llm_request& x) {
  return f(caf::meta::type_name("llm_request"), x.model, x.messages, x.max_tokens, x.temperature,
           x.json_output, x.required_fields, x.idempotency_key, x.request_id, x.script,
           x.traceparent);
}

struct llm_reply {
  std::string text;
  uint32_t prompt_tokens = 0;
  uint32_t completion_tokens = 0;
  std::string provider;   ///< the provider's name
  std::string model;      ///< the model that answered
  uint64_t latency_us = 0; ///< from sending the request to its reply
  double cost_usd = 0;     ///< from the provider's price table
  uint32_t total_tokens() const { return prompt_tokens + completion_tokens; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, llm_reply& x) {
  return f(caf::meta::type_name("llm_reply"), x.text, x.prompt_tokens, x.completion_tokens,
           x.provider, x.model, x.latency_us, x.cost_usd);
}

/// The embedded scripted model: deterministic replies with injectable
/// latency and faults. Whether a given call is faulted is a pure function of
/// (seed, request_id), so a run is reproducible.
struct scripted_model_config {
  /// Reply text for a request whose `script` names this rule. Must be
  /// thread-safe and must not block. Unknown scripts get an llm_unavailable error.
  using rule = std::function<std::string(const llm_request&)>;
  /// What a rule returns to leave the call unanswered, as a model that
  /// hangs would: the step's timeout decides (tests and examples use it to
  /// hang chosen calls; timeout_rate hangs calls at random).
  static inline const std::string no_reply = "\x01troupe:no-reply";
  /// What a rule returns to answer the call with llm_unavailable, as a
  /// model that fails would (fail_rate fails calls at random).
  static inline const std::string error_reply = "\x01troupe:error-reply";
  std::map<std::string, rule> rules;

  duration latency{0};           ///< before every reply
  double fail_rate = 0;          ///< reply llm_unavailable
  double timeout_rate = 0;       ///< never reply (the step timeout decides)
  double malformed_rate = 0;     ///< reply with text that is not JSON
  uint64_t seed = 42;
};

/// Approximate token count of `text` (words + punctuation runs): the
/// scripted model's usage, the gateway's context-window and rate-limit
/// estimates, and the usage of a provider reply that reports none.
uint32_t count_tokens(const std::string& text);

/// Approximate prompt tokens of a request: count_tokens of each message
/// plus 4 for its role and framing. What budgets, context windows and rate
/// limits reserve before a call (with max_tokens for the reply).
uint32_t estimate_prompt_tokens(const llm_request& req);

} // namespace troupe
