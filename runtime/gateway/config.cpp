// Validation of the gateway's configuration (troupe/gateway.hpp).
#include <cctype>
#include <set>
#include <string>

#include "troupe/errors.hpp"
#include "troupe/gateway.hpp"

namespace troupe {

namespace {

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64)
    return false;
  for (unsigned char c : s)
    if (!std::isalnum(c) && c != '_' && c != '-' && c != '.')
      return false;
  return true;
}

std::string check(const provider_config& p) {
  if (p.protocol != wire_protocol::scripted) {
    if (p.base_url.rfind("http://", 0) != 0 && p.base_url.rfind("https://", 0) != 0)
      return "base_url must start with http:// or https:// (got '" + p.base_url + "')";
    if (p.model.empty())
      return "model must be set";
  }
  if (p.request_timeout <= duration::zero())
    return "request_timeout must be positive";
  if (p.max_concurrent == 0)
    return "max_concurrent must be at least 1";
  if (p.requests_per_minute < 0 || p.tokens_per_minute < 0)
    return "rate limits must not be negative";
  if (p.breaker.failure_rate <= 0 || p.breaker.failure_rate > 1)
    return "breaker.failure_rate must be in (0, 1]";
  if (p.breaker.cool_down < duration::zero())
    return "breaker.cool_down must not be negative";
  if (p.default_retry_after < duration::zero())
    return "default_retry_after must not be negative";
  for (auto& [model, price] : p.prices)
    if (price.prompt < 0 || price.completion < 0)
      return "price of model '" + model + "' must not be negative";
  return {};
}

} // namespace

caf::error validate(const gateway_config& cfg) {
  std::set<std::string> names;
  for (auto& p : cfg.providers) {
    if (!valid_name(p.name))
      return make_error(errc::invalid_config,
                        "provider '" + p.name + "': name must be 1-64 of [A-Za-z0-9_.-]");
    if (!names.insert(p.name).second)
      return make_error(errc::invalid_config, "provider '" + p.name + "' is configured twice");
    if (p.name == "scripted" && p.protocol != wire_protocol::scripted)
      return make_error(errc::invalid_config,
                        "provider 'scripted': that name is the embedded scripted model's");
    if (auto why = check(p); !why.empty())
      return make_error(errc::invalid_config, "provider '" + p.name + "': " + why);
  }
  return {};
}

caf::expected<model_route> resolve_model(const gateway_config& cfg,
                                         const std::string& model_ref) {
  auto slash = model_ref.find('/');
  const provider_config* p = nullptr;
  std::string pname;
  if (model_ref.empty()) {
    p = cfg.providers.empty() ? nullptr : &cfg.providers.front();
    pname = p ? p->name : "scripted";
  } else {
    pname = model_ref.substr(0, slash);
    for (auto& c : cfg.providers)
      if (c.name == pname)
        p = &c;
    if (!p && pname != "scripted") {
      std::string names;
      bool scripted = false;
      for (auto& c : cfg.providers) {
        names += c.name + ", ";
        scripted = scripted || c.name == "scripted";
      }
      names = scripted ? names.substr(0, names.size() - 2) : names + "scripted";
      return make_error(errc::llm_rejected, "unknown model '" + model_ref
                                              + "': no provider named '" + pname
                                              + "' (configured: " + names + ")");
    }
  }
  model_route r;
  r.provider = pname;
  // "provider" and "provider/" both mean the provider's default model.
  if (slash != std::string::npos)
    r.model = model_ref.substr(slash + 1);
  if (r.model.empty() && p)
    r.model = p->model;
  if (r.model.empty()) // the embedded model, or a scripted provider without a model name
    r.model = "scripted";
  if (p)
    if (auto i = p->prices.find(r.model); i != p->prices.end())
      r.price = i->second;
  return r;
}

double cost_usd(const model_price& p, uint64_t prompt_tokens, uint64_t completion_tokens) {
  return (static_cast<double>(prompt_tokens) * p.prompt
          + static_cast<double>(completion_tokens) * p.completion)
         / 1e6;
}

} // namespace troupe
