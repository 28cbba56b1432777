// The trace builder (see the header) and derive_trace(), which runs one
// over a workflow's whole journal.
#include "runtime/trace_builder.hpp"

#include <algorithm>
#include <utility>

#include "persistence/event_codec.hpp"
#include "troupe/errors.hpp"
#include "troupe/hash.hpp"

namespace troupe {

namespace {

using json = nlohmann::json;

double usd_of(uint64_t nusd) {
  return static_cast<double>(nusd) / 1e9;
}

/// OTLP integers are signed 64-bit: larger counts saturate.
int64_t int_of(uint64_t x) {
  return x > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(x);
}

void put(attributes& a, const char* key, std::string v) {
  a.push_back({key, std::move(v)});
}
void put(attributes& a, const char* key, const char* v) { // not the bool overload
  a.push_back({key, std::string{v}});
}
void put(attributes& a, const char* key, uint64_t v) {
  a.push_back({key, int_of(v)});
}
void put(attributes& a, const char* key, double v) {
  a.push_back({key, v});
}
void put(attributes& a, const char* key, bool v) {
  a.push_back({key, v});
}

std::string hex64(uint64_t x) {
  static const char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, x >>= 4)
    out[static_cast<size_t>(i)] = digits[x & 0xf];
  return out;
}

/// A span id from the FNV-1a hash of what names it: never the all-zero
/// id, which OTLP reads as none.
std::string span_id_from(uint64_t fnv) {
  auto h = splitmix64(fnv);
  return hex64(h == 0 ? 1 : h);
}

/// The span id named "<workflow_id><suffix>". FNV-1a runs byte by byte, so
/// a builder hashes its workflow id once and continues from there.
std::string span_id_of(const std::string& workflow_id, const std::string& suffix) {
  return span_id_from(fnv1a(suffix, fnv1a(workflow_id)));
}

caf::error corrupt(const journal_record& r, const std::string& what) {
  return make_error(errc::journal_corrupt, r.workflow_id + " #" + std::to_string(r.wf_seq) + " ("
                                             + r.kind + "): " + what);
}

/// Why an attempt in flight was abandoned by event `e`.
std::string abandoned_by(const kernel::event& e) {
  if (auto t = std::get_if<kernel::timer_fired>(&e);
      t && t->kind == kernel::timer_kind::workflow_deadline)
    return "the workflow's deadline passed";
  if (std::holds_alternative<kernel::workflow_cancelled>(e))
    return "the workflow was cancelled";
  if (std::holds_alternative<kernel::workflow_crashed>(e))
    return "the workflow crashed";
  return std::string{"ended by "} + kernel::kind_of(e);
}

} // namespace

// -- ids (troupe/trace.hpp) ----------------------------------------------------

std::string trace_id_of(const std::string& workflow_id, const std::string& traceparent) {
  if (!traceparent.empty())
    if (auto p = parse_traceparent(traceparent))
      return p->trace_id;
  auto hi = splitmix64(fnv1a("troupe.trace/" + workflow_id));
  auto lo = splitmix64(fnv1a(workflow_id, hi));
  return hex64(hi) + hex64(hi == 0 && lo == 0 ? 1 : lo);
}

std::string root_span_id(const std::string& workflow_id) {
  return span_id_of(workflow_id, "/workflow");
}

std::string attempt_span_id(const std::string& workflow_id, uint64_t step) {
  return span_id_of(workflow_id, "/step/" + std::to_string(step));
}

// -- the builder ----------------------------------------------------------------

trace_builder::trace_builder(const definition& def, const workflow_row& row)
  : def_(&def),
    row_(row),
    trace_id_(trace_id_of(row.id, "")),
    id_hash_(fnv1a(row.id)),
    root_id_(root_span_id(row.id)) {}

std::string trace_builder::span_id(const std::string& suffix) const {
  return span_id_from(fnv1a(suffix, id_hash_));
}

caf::error trace_builder::add(const journal_record& r, std::vector<span>& ended) {
  if (broken_)
    return corrupt(r, "the trace of '" + row_.id + "' stopped at an earlier record");
  if (r.workflow_id != row_.id)
    return corrupt(r, "record of another workflow in the trace of '" + row_.id + "'");
  if (r.wf_seq != last_ + 1)
    return corrupt(r, (r.wf_seq <= last_ ? "duplicate wf_seq" : "gap in wf_seq")
                        + std::string{" (expected #"} + std::to_string(last_ + 1) + ")");
  auto e = persistence::from_record_without_state(r); // spans need no workflow state
  if (!e)
    return std::move(e.error());
  std::string problem; // a completion the kernel takes as bad_output
  if (auto c = std::get_if<kernel::step_completed>(&*e); c && st_.at == kernel::phase::running)
    problem = kernel::completion_problem(*def_, st_, *c);
  bool was_compensating = st_.compensating;
  auto commands = kernel::apply_in_place(*def_, st_, *e); // no copy: this runs per committed event
  if (!commands) {
    broken_ = true;
    return corrupt(r, "does not fit version " + std::to_string(def_->version) + " of '"
                        + def_->name + "': " + describe(commands.error()));
  }
  last_ = r.wf_seq;
  fold(*e, problem, r.at_ns, ended);
  for (const auto& c : *commands)
    carry_out(c, *e, r.at_ns, ended);
  if (attempt_ && st_.at != kernel::phase::running) // invariant 2 of the kernel
    close_attempt(*e, {}, r.at_ns, ended);
  if (gate_ && st_.at != kernel::phase::at_gate)
    close_gate(*e, r.at_ns, ended);
  if (!was_compensating && st_.compensating)
    root_event("compensating", r.at_ns, {{"troupe.reason", st_.undo_reason}});
  return {};
}

// What the event itself ends or marks.
void trace_builder::fold(const kernel::event& e, const std::string& problem, int64_t at,
                         std::vector<span>& ended) {
  if (auto s = std::get_if<kernel::workflow_started>(&e)) {
    trace_id_ = trace_id_of(row_.id, s->traceparent);
    root_ = open(root_id_, "workflow " + row_.definition, at);
    root_->parent_span_id.clear(); // the caller's span, if it gave one
    if (auto p = parse_traceparent(s->traceparent))
      root_->parent_span_id = p->span_id;
    put(root_->attributes, "troupe.definition", row_.definition);
    put(root_->attributes, "troupe.definition.version", uint64_t{row_.version});
  } else if (std::holds_alternative<kernel::step_completed>(e)
             || std::holds_alternative<kernel::step_failed>(e)) {
    close_attempt(e, problem, at, ended);
  } else if (std::holds_alternative<kernel::signal_received>(e)) {
    close_gate(e, at, ended);
  } else if (auto t = std::get_if<kernel::timer_fired>(&e)) {
    if (t->kind == kernel::timer_kind::gate_deadline)
      close_gate(e, at, ended);
  } else if (auto r = std::get_if<kernel::dlq_retried>(&e)) {
    attributes a;
    put(a, "troupe.by", r->by);
    put(a, "troupe.grant.steps", r->grant.steps);
    put(a, "troupe.grant.tokens", r->grant.tokens);
    put(a, "troupe.grant.cost_usd", usd_of(r->grant.cost_nusd));
    put(a, "troupe.grant.time_ns",
        static_cast<uint64_t>(std::max<int64_t>(r->grant.time.count(), 0)));
    root_event("dlq_retried", at, std::move(a));
  } else if (auto d = std::get_if<kernel::dlq_dropped>(&e)) {
    root_event("dlq_dropped", at, {{"troupe.by", d->by}, {"troupe.reason", d->reason}});
  } else if (auto c = std::get_if<kernel::workflow_cancelled>(&e)) {
    root_event("cancelled", at, {{"troupe.by", c->by}, {"troupe.reason", c->reason}});
  } else if (auto x = std::get_if<kernel::workflow_crashed>(&e)) {
    root_event("crashed", at, {{"troupe.reason", x->reason}});
  }
}

// What the event's commands open, end or mark.
void trace_builder::carry_out(const kernel::command& c, const kernel::event& e, int64_t at,
                              std::vector<span>& ended) {
  if (auto r = std::get_if<kernel::run_agent>(&c)) {
    open_attempt(*r, at);
  } else if (std::holds_alternative<kernel::cancel_step>(c)) {
    if (attempt_)
      close_attempt(e, {}, at, ended);
  } else if (auto a = std::get_if<kernel::await_signal>(&c)) {
    if (gate_) // a gate routed to a gate
      close_gate(e, at, ended);
    open_gate(a->gate, at);
  } else if (auto m = std::get_if<kernel::remind>(&c)) {
    if (gate_)
      gate_->events.push_back({"reminder", at, {{"troupe.reminder", int64_t{m->n}}}});
  } else if (auto d = std::get_if<kernel::dead_letter>(&c)) {
    root_event("dead_lettered", at,
               {{"troupe.node", d->node}, {"troupe.outcome", d->outcome},
                {"troupe.reason", d->reason}});
  } else if (std::holds_alternative<kernel::complete>(c)) {
    close_root(true, at, ended);
  } else if (std::holds_alternative<kernel::fail>(c)) {
    close_root(false, at, ended);
  }
}

span trace_builder::open(std::string span_id, std::string name, int64_t at) const {
  span s;
  s.trace_id = trace_id_;
  s.span_id = std::move(span_id);
  s.parent_span_id = root_id_;
  s.name = std::move(name);
  s.start_ns = at;
  s.attributes.reserve(12);
  put(s.attributes, "troupe.workflow.id", row_.id);
  return s;
}

void trace_builder::open_attempt(const kernel::run_agent& c, int64_t at) {
  auto id = span_id("/step/" + std::to_string(st_.steps)); // attempt_span_id(id, steps)
  attempt_ = open(id, (c.compensation ? "undo " : "step ") + c.node, at);
  auto& a = attempt_->attributes;
  put(a, "troupe.node", c.node);
  put(a, "troupe.agent", c.agent);
  put(a, "troupe.attempt", uint64_t{c.attempt});
  put(a, "troupe.visit", uint64_t{c.visit});
  put(a, "troupe.step", st_.steps);
  put(a, "troupe.compensation", c.compensation);
  // the effect keys of this attempt start with its visit's key (workflow actor's run_agent)
  auto node = c.compensation ? c.node + "~undo" : c.node;
  attempts_.push_back({kernel::idempotency_key(row_.id, node, c.visit) + "/", std::move(id), at});
}

void trace_builder::close_attempt(const kernel::event& e, const std::string& problem, int64_t at,
                                  std::vector<span>& ended) {
  if (!attempt_)
    return;
  auto& s = *attempt_;
  auto& a = s.attributes;
  auto charge = [&](uint64_t tokens, uint64_t nusd) {
    put(a, "troupe.tokens", tokens);
    put(a, "troupe.cost_usd", usd_of(nusd));
  };
  if (auto c = std::get_if<kernel::step_completed>(&e)) {
    charge(c->tokens, c->cost_nusd);
    put(a, "troupe.label", c->label);
    s.status = problem.empty() ? span_status::ok : span_status::error;
    if (!problem.empty()) {
      put(a, "troupe.failure.kind", to_string(failure_kind::bad_output));
      s.status_message = "bad_output: " + problem;
    }
  } else if (auto f = std::get_if<kernel::step_failed>(&e)) {
    charge(f->tokens, f->cost_nusd);
    put(a, "troupe.failure.kind", to_string(f->kind));
    put(a, "troupe.failure.reason", f->reason);
    s.status = span_status::error;
    s.status_message = std::string{to_string(f->kind)} + (f->reason.empty() ? "" : ": " + f->reason);
  } else {
    put(a, "troupe.abandoned", true);
    s.status = span_status::error;
    s.status_message = "abandoned: " + abandoned_by(e);
  }
  if (st_.at == kernel::phase::backoff)
    put(a, "troupe.retry", true); // another attempt follows after the backoff
  s.end_ns = at;
  s.ended = true;
  ended.push_back(std::move(s));
  attempt_.reset();
}

void trace_builder::open_gate(const std::string& gate, int64_t at) {
  gate_ = open(span_id("/gate/" + std::to_string(last_)), "gate " + gate, at);
  put(gate_->attributes, "troupe.gate", gate);
  put(gate_->attributes, "troupe.visit", uint64_t{st_.visits[gate]});
  if (!st_.reason.empty())
    put(gate_->attributes, "troupe.reason", st_.reason); // a failure or budget routed here
}

void trace_builder::close_gate(const kernel::event& e, int64_t at, std::vector<span>& ended) {
  if (!gate_)
    return;
  auto& s = *gate_;
  if (auto sig = std::get_if<kernel::signal_received>(&e)) {
    put(s.attributes, "troupe.decision", sig->decision);
    put(s.attributes, "troupe.decided_by", sig->by);
    s.status = span_status::ok;
  } else if (auto t = std::get_if<kernel::timer_fired>(&e);
             t && t->kind == kernel::timer_kind::gate_deadline) {
    put(s.attributes, "troupe.decision", outcome::timeout);
    s.status = span_status::error;
    s.status_message = "no decision before the gate's deadline";
  } else {
    s.status = span_status::error;
    s.status_message = std::string{"left without a decision: "} + kernel::kind_of(e);
  }
  s.end_ns = at;
  s.ended = true;
  ended.push_back(std::move(s));
  gate_.reset();
}

void trace_builder::close_root(bool completed, int64_t at, std::vector<span>& ended) {
  if (!root_)
    return;
  auto& s = *root_;
  auto& a = s.attributes;
  put(a, "troupe.status", completed ? "completed" : "failed");
  put(a, "troupe.outcome", st_.outcome);
  put(a, "troupe.steps", st_.steps);
  put(a, "troupe.tokens", st_.tokens);
  put(a, "troupe.cost_usd", usd_of(st_.cost_nusd));
  s.status = completed ? span_status::ok : span_status::error;
  if (!completed)
    s.status_message = st_.outcome + ": " + st_.reason;
  s.end_ns = at;
  s.ended = true;
  ended.push_back(std::move(s));
  root_.reset();
}

void trace_builder::root_event(std::string name, int64_t at, attributes attrs) {
  if (root_)
    root_->events.push_back({std::move(name), at, std::move(attrs)});
}

void trace_builder::add_effect(const effect_record& e, std::vector<span>& out) {
  if (!placed_.insert(e.key).second)
    return;
  const attempt_ref* by = nullptr;
  for (auto i = attempts_.rbegin(); i != attempts_.rend(); ++i) {
    if (e.key.compare(0, i->key_prefix.size(), i->key_prefix) != 0)
      continue;
    if (by == nullptr)
      by = &*i; // the latest of the visit, should none have started before it
    if (i->start_ns <= e.at_ns) {
      by = &*i;
      break;
    }
  }
  auto name = by != nullptr ? e.key.substr(by->key_prefix.size()) : e.key;
  span s = open(span_id("/effect/" + e.key), "effect " + name, e.at_ns);
  if (by != nullptr)
    s.parent_span_id = by->span_id;
  put(s.attributes, "troupe.effect.name", name);
  put(s.attributes, "troupe.effect.key", e.key);
  s.status = span_status::ok;
  s.end_ns = e.at_ns;
  s.ended = true;
  out.push_back(std::move(s));
}

void trace_builder::open_spans(std::vector<span>& out) const {
  for (const auto* s : {&root_, &attempt_, &gate_})
    if (*s)
      out.push_back(**s);
}

// -- derive_trace (troupe/trace.hpp) ---------------------------------------------

caf::expected<std::vector<span>> derive_trace(const definition& def, const workflow_row& row,
                                              const std::vector<journal_record>& records,
                                              const std::vector<effect_record>& effects) {
  if (def.name != row.definition || def.version != row.version)
    return make_error(errc::unknown_definition,
                      "trace of '" + row.id + "': it runs version " + std::to_string(row.version)
                        + " of '" + row.definition + "', given version "
                        + std::to_string(def.version) + " of '" + def.name + "'");
  trace_builder b{def, row};
  std::vector<span> out;
  auto by_time = effects;
  std::stable_sort(by_time.begin(), by_time.end(),
                   [](const effect_record& x, const effect_record& y) { return x.at_ns < y.at_ns; });
  size_t next = 0;
  for (const auto& r : records) {
    // an effect comes after the records of its instant: its attempt has started
    while (next < by_time.size() && by_time[next].at_ns < r.at_ns)
      b.add_effect(by_time[next++], out);
    if (auto err = b.add(r, out))
      return err;
  }
  while (next < by_time.size())
    b.add_effect(by_time[next++], out);
  b.open_spans(out);
  auto root = root_span_id(row.id);
  std::stable_sort(out.begin(), out.end(), [&](const span& x, const span& y) {
    if (x.start_ns != y.start_ns)
      return x.start_ns < y.start_ns;
    return x.span_id == root && y.span_id != root;
  });
  return out;
}

} // namespace troupe
