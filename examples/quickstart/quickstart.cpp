// Shows the embedding API end to end, exactly as the README presents it.
#include "quickstart/quickstart.hpp"

#include "troupe/errors.hpp"

namespace troupe::examples {

caf::expected<quickstart_result> run_quickstart() {
  using namespace troupe;
  // -- from README.md, "Using it from C++" --
  config cfg;                                // embedded scripted model, in-memory journal
  cfg.model.rules["extractor"] = [](const llm_request&) {   // what the model answers
    return std::string{R"({"product": "printer", "urgency": "high"})"};
  };
  runtime rt{cfg};
  rt.register_agent("extractor", [](step_context& ctx) {
    llm_request req;
    req.messages.push_back({"user", "Extract fields from: " + ctx.state()["ticket"].get<std::string>()});
    ask_json(ctx, req, [](step_context& c, nlohmann::json fields) {   // never blocks a thread
      step_outcome o;
      o.patch = {{"fields", fields}};
      c.finish(o);                           // or c.finish({"low_confidence"}), c.fail(...)
    });
  });
  agent_policy p;
  p.timeout = std::chrono::seconds{2};
  p.retry.max_attempts = 3;                  // full-jitter backoff between attempts
  rt.register_definition(*definition_builder{"triage"}
    .agent("extract", "extractor", p).on("ok", "review").on("exhausted", "review")
    .gate("review").on("approve", "done").on("reject", "rejected")
    .completed("done").failed("rejected")
    .build());                               // refused with a message naming the node if invalid

  auto id = rt.start("triage", {{"ticket", "..."}}, "ticket-42");   // idempotency key
  auto parked = rt.await(*id, std::chrono::seconds{5}, /*or_parked=*/true);
  rt.signal(*id, "review", decision::approve("alice"));
  auto result = rt.await(*id, std::chrono::seconds{5});   // workflow_info: status, state, steps, tokens
  auto events = rt.history(*id);             // the journal: r.kind, r.at_ns, r.payload (JSON)
  // -- end of the README's code --
  if (!parked)
    return parked.error();
  if (!result)
    return result.error();
  if (!events)
    return events.error();
  quickstart_result out{*parked, *result, {}};
  for (auto& r : *events)
    out.history.push_back(r.kind);
  return out;
}

} // namespace troupe::examples
