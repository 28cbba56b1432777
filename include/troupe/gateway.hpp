// The model gateway's configuration: which providers agents can reach, and
// the limits that keep a failing, slow or throttling provider from taking
// the runtime down with it. One gateway actor fronts every provider; agents
// name a provider (and optionally a model) in llm_request::model:
//
//   ""                 the default provider (the first configured, else
//                      the embedded scripted model) with its default model
//   "local"            provider "local" with its default model
//   "local/qwen2.5:7b" provider "local", model "qwen2.5:7b"
//
// The embedded scripted model is always there as provider "scripted".
// Breakers, rate limits, queues and token counts are kept per provider +
// model ("lane"). API keys are read from the environment variable a
// provider names, when the gateway starts; they are never logged,
// journaled or put in an error message.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "troupe/definition.hpp"

namespace troupe {

enum class wire_protocol : uint8_t {
  scripted,  ///< the embedded scripted model (no HTTP)
  openai,    ///< POST {base_url}/chat/completions: OpenAI, vLLM, llama.cpp, Ollama /v1
  anthropic, ///< POST {base_url}/messages: the Anthropic Messages API
};

const char* to_string(wire_protocol p);

/// When a lane's circuit opens and how it recovers. Closed: calls pass and
/// their results are counted. It opens after `consecutive_failures` failures
/// in a row, or when at least `window` calls have ended and the share of
/// failures among the last `window` reaches `failure_rate`. Open: calls
/// fail fast with circuit_open for `cool_down`. Half-open: up to
/// `half_open_probes` calls go through; the first success closes it, a
/// failure opens it again. Failures are timeouts, transport errors, 408,
/// 429, 5xx and statuses that are no answer (runtime/gateway/wire.hpp); a
/// refused request (other 4xx) or bad output is the caller's problem and
/// does not count.
struct breaker_policy {
  uint32_t consecutive_failures = 5; ///< 0: never open on a run of failures
  uint32_t window = 20;              ///< 0: no rate rule
  double failure_rate = 0.5;         ///< in (0, 1]
  duration cool_down = std::chrono::seconds{30};
  uint32_t half_open_probes = 1;
};

/// What the gateway does with a request larger than the model's context
/// window (prompt estimate + max_tokens).
enum class overflow_policy : uint8_t {
  refuse,          ///< llm_rejected, nothing is sent
  truncate_oldest, ///< drop the oldest non-system messages until it fits;
                   ///< llm_rejected if even the last message alone does not
};

/// US dollars per million tokens.
struct model_price {
  double prompt = 0;
  double completion = 0;
};

struct provider_config {
  std::string name;  ///< how requests name it; [A-Za-z0-9_.-]+, unique
  wire_protocol protocol = wire_protocol::openai;
  std::string base_url; ///< e.g. "https://api.openai.com/v1", "http://127.0.0.1:11434/v1"
  std::string model;    ///< the default model
  std::string api_key_env; ///< the environment variable holding the key ("": none)
  duration request_timeout = std::chrono::seconds{60};
  size_t max_concurrent = 16; ///< requests in flight per lane
  size_t max_queue = 1024;    ///< waiting per lane; past it: overloaded
  double requests_per_minute = 0; ///< 0: unlimited
  double tokens_per_minute = 0;   ///< prompt estimate + max_tokens; 0: unlimited
  uint32_t context_window = 0;    ///< tokens; 0: not checked
  overflow_policy overflow = overflow_policy::refuse;
  /// A 429 holds the lane for its Retry-After (or this when absent) and
  /// requeues the request, at most `max_requeues` times; then the request
  /// fails with llm_unavailable.
  duration default_retry_after = std::chrono::seconds{1};
  uint32_t max_requeues = 2;
  breaker_policy breaker;
  std::map<std::string, model_price> prices; ///< by model; absent: cost 0
  std::string anthropic_version = "2023-06-01";
};

struct gateway_config {
  std::vector<provider_config> providers;
};

/// What the gateway knows about one lane (runtime::model_lanes()).
struct lane_stats {
  std::string lane;    ///< "provider/model"
  std::string breaker; ///< closed | open | half_open
  uint64_t queued = 0;
  uint64_t in_flight = 0;
  uint64_t sent = 0;
  uint64_t succeeded = 0;
  uint64_t failed = 0;         ///< errors that count against the breaker
  uint64_t rejected = 0;       ///< refused before sending (context, queue full, circuit open)
  uint64_t rate_limited = 0;   ///< 429s received
  uint64_t breaker_opened = 0; ///< times the circuit opened
  int64_t held_for_ms = 0;     ///< what is left of a 429 hold
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  double cost_usd = 0;
};

/// Checks a gateway config: names, URLs, protocols, limits. The error
/// (invalid_config) names the provider and the field.
caf::error validate(const gateway_config& cfg);

/// Where a model reference leads.
struct model_route {
  std::string provider;
  std::string model;
  model_price price; ///< zero when the provider has no price for the model
  std::string lane() const { return provider + "/" + model; }
};

/// Resolves a model reference ("", "provider", "provider/", "provider/model")
/// exactly as the gateway routes it; the scripted provider is always there.
/// A provider that is not configured is llm_rejected naming the ones that are.
caf::expected<model_route> resolve_model(const gateway_config& cfg, const std::string& model_ref);

/// US dollars for a call's tokens at `p`.
double cost_usd(const model_price& p, uint64_t prompt_tokens, uint64_t completion_tokens);

} // namespace troupe
