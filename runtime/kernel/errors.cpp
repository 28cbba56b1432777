// troupe::errc: names, retry classification and rendering. Pure.
#include "troupe/errors.hpp"

#include <caf/exit_reason.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace troupe {

caf::error make_error(errc code, std::string context) {
  return caf::error{static_cast<uint8_t>(code), error_category,
                    caf::make_message(std::move(context))};
}

const char* to_string(errc code) {
  switch (code) {
    case errc::invalid_definition: return "invalid_definition";
    case errc::unknown_definition: return "unknown_definition";
    case errc::unknown_agent: return "unknown_agent";
    case errc::unknown_workflow: return "unknown_workflow";
    case errc::bad_signal: return "bad_signal";
    case errc::invalid_transition: return "invalid_transition";
    case errc::invalid_input: return "invalid_input";
    case errc::invalid_config: return "invalid_config";
    case errc::workflow_finished: return "workflow_finished";
    case errc::llm_timeout: return "llm_timeout";
    case errc::llm_unavailable: return "llm_unavailable";
    case errc::overloaded: return "overloaded";
    case errc::circuit_open: return "circuit_open";
    case errc::await_timeout: return "await_timeout";
    case errc::bad_output: return "bad_output";
    case errc::agent_crashed: return "agent_crashed";
    case errc::journal_write_failed: return "journal_write_failed";
    case errc::journal_corrupt: return "journal_corrupt";
    case errc::journal_unusable: return "journal_unusable";
    case errc::journal_full: return "journal_full";
    case errc::llm_rejected: return "llm_rejected";
    case errc::over_budget: return "over_budget";
    case errc::restart_intensity: return "restart_intensity";
    case errc::interrupted: return "interrupted";
    case errc::shutting_down: return "shutting_down";
  }
  return "unknown_errc";
}

bool is_retryable(errc code) {
  switch (code) {
    case errc::llm_timeout:
    case errc::llm_unavailable:
    case errc::overloaded:
    case errc::circuit_open:
    case errc::await_timeout:
      return true;
    default:
      return false;
  }
}

bool is(const caf::error& err, errc code) {
  return err && err.category() == error_category && err.code() == static_cast<uint8_t>(code);
}

std::string context_of(const caf::error& err) {
  const auto& msg = err.context();
  if (msg.size() == 1 && msg.match_element<std::string>(0))
    return msg.get_as<std::string>(0);
  return msg.empty() ? std::string{} : caf::to_string(msg);
}

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  auto ctx = context_of(err);
  std::string name;
  if (err.category() == error_category)
    name = to_string(static_cast<errc>(err.code()));
  else if (err.category() == caf::atom("system"))
    name = caf::to_string(static_cast<caf::sec>(err.code()));
  else if (err.category() == caf::atom("exit"))
    name = caf::to_string(static_cast<caf::exit_reason>(err.code()));
  else
    name = caf::to_string(err.category()) + "_error(" + std::to_string(err.code()) + ")";
  return ctx.empty() ? name : name + ": " + ctx;
}

} // namespace troupe
