// The trace builder (see the header) and derive_trace(), which runs one
// over a workflow's whole journal.
#include "runtime/trace_builder.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "persistence/event_codec.hpp"
#include "runtime/trace_ids.hpp"
#include "troupe/errors.hpp"

namespace troupe {

namespace {

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
void put(attributes& a, const char* key, uint64_t v) {
  a.push_back({key, int_of(v)});
}
void put(attributes& a, const char* key, double v) {
  a.push_back({key, v});
}

caf::error corrupt(const std::string& workflow_id, uint64_t wf_seq, const char* kind,
                   const std::string& what) {
  return make_error(errc::journal_corrupt, workflow_id + " #" + std::to_string(wf_seq) + " ("
                                             + kind + "): " + what);
}

caf::error corrupt(const journal_record& r, const std::string& what) {
  return corrupt(r.workflow_id, r.wf_seq, r.kind.c_str(), what);
}

/// Why an attempt in flight was abandoned by event `e`.
const char* abandoned_by(const kernel::event& e) {
  if (auto t = std::get_if<kernel::timer_fired>(&e);
      t && t->kind == kernel::timer_kind::workflow_deadline)
    return "the workflow's deadline passed";
  if (std::holds_alternative<kernel::workflow_cancelled>(e))
    return "the workflow was cancelled";
  if (std::holds_alternative<kernel::workflow_crashed>(e))
    return "the workflow crashed";
  return nullptr; // ended by another kind of event
}

/// A trace_builder::sink that keeps span values (derive_trace).
class keep_spans final : public trace_builder::sink {
public:
  explicit keep_spans(std::vector<span>& out) : out_(out) {}
  void take(const otlp::span_ref& s) override { out_.push_back(otlp::to_span(s)); }

private:
  std::vector<span>& out_;
};

} // namespace

/// A span being handed over: its attributes in place, on the stack.
class trace_builder::draft {
public:
  otlp::span_ref ref;

  void id(uint64_t x) {
    write_hex64(x, id_);
    ref.span_id = std::string_view{id_, sizeof id_};
  }
  void str(const char* key, std::string_view v) { add(key).s = v; }
  void num(const char* key, uint64_t v) {
    auto& x = add(key);
    x.t = otlp::value_ref::type::integer;
    x.i = int_of(v);
  }
  void real(const char* key, double v) {
    auto& x = add(key);
    x.t = otlp::value_ref::type::real;
    x.d = v;
  }
  void flag(const char* key, bool v) {
    auto& x = add(key);
    x.t = otlp::value_ref::type::boolean;
    x.b = v;
  }
  /// Ends the span at `at` with `status`.
  void end(int64_t at, span_status status) {
    ref.end_ns = at;
    ref.ended = true;
    ref.status = status;
  }
  const otlp::span_ref& done() {
    ref.attributes = attrs_.data();
    ref.attribute_count = n_;
    return ref;
  }

private:
  otlp::value_ref& add(const char* key) {
    if (n_ == attrs_.size()) // more than any span has (12): not reached
      return overflow_;
    auto& a = attrs_[n_++];
    a.key = key;
    a.value = {};
    return a.value;
  }

  std::array<otlp::attribute_ref, 16> attrs_;
  size_t n_ = 0;
  otlp::value_ref overflow_;
  char id_[16];
};

// -- the builder ----------------------------------------------------------------

trace_builder::trace_builder(const definition& def, const workflow_row& row)
  : def_(&def),
    row_(row),
    trace_id_(trace_id_of(row.id, "")),
    id_hash_(workflow_hash(row.id)),
    root_id_(root_span_id(row.id)) {
  visits_.reserve(8); // one allocation for most workflows, not one per doubling
}

uint64_t trace_builder::span_id(const std::string& suffix) const {
  return span_number(id_hash_, suffix);
}

std::string trace_builder::not_next(const std::string& workflow_id, uint64_t wf_seq) const {
  if (broken_)
    return "the trace of '" + row_.id + "' stopped at an earlier record";
  if (workflow_id != row_.id)
    return "record of another workflow in the trace of '" + row_.id + "'";
  if (wf_seq != last_ + 1)
    return (wf_seq <= last_ ? "duplicate wf_seq" : "gap in wf_seq") + std::string{" (expected #"}
           + std::to_string(last_ + 1) + ")";
  return {};
}

caf::error trace_builder::add(const journal_record& r, sink& ended) {
  if (applied_)
    return corrupt(r, "the trace of '" + row_.id + "' was built from applied events: "
                      "it has no kernel state to replay this record with");
  if (auto why = not_next(r.workflow_id, r.wf_seq); !why.empty())
    return corrupt(r, why);
  auto e = persistence::from_record_without_state(r); // spans need no workflow state
  if (!e)
    return std::move(e.error());
  std::string problem; // a completion the kernel takes as bad_output
  if (auto c = std::get_if<kernel::step_completed>(&*e); c && st_.at == kernel::phase::running)
    problem = kernel::completion_problem(*def_, st_, *c);
  auto commands = kernel::apply_in_place(*def_, st_, *e); // no copy: this runs per committed event
  if (!commands) {
    broken_ = true;
    return corrupt(r, "does not fit version " + std::to_string(def_->version) + " of '"
                        + def_->name + "': " + describe(commands.error()));
  }
  read_facts(st_, facts_);
  observe(r.wf_seq, *e, commands->data(), commands->size(), facts_, problem, ended);
  return {};
}

caf::error trace_builder::add(uint64_t wf_seq, const applied_event& a, sink& ended) {
  if (auto why = not_next(row_.id, wf_seq); !why.empty())
    return corrupt(row_.id, wf_seq, kernel::kind_of(a.event), why);
  applied_ = true; // st_ is not kept from here on
  observe(wf_seq, a.event, a.command ? &*a.command : nullptr, a.command ? 1 : 0, a.after,
          a.problem, ended);
  return {};
}

void trace_builder::observe(uint64_t wf_seq, const kernel::event& e,
                            const kernel::command* commands, size_t n, const trace_facts& facts,
                            const std::string& problem, sink& ended) {
  auto at = static_cast<int64_t>(kernel::time_of(e).count()); // the record's at_ns
  now_ = &facts;
  last_ = wf_seq;
  phase_ = facts.at;
  // the attempt it ends, then what the event itself ends or marks, then its commands
  if (const auto* a = attempts_.add(e))
    close_attempt(*a, e, problem, ended);
  fold(e, at, ended);
  for (size_t i = 0; i < n; ++i)
    carry_out(commands[i], e, at, ended);
  if (gate_.open && facts.at != kernel::phase::at_gate)
    close_gate(e, at, ended);
  if (!compensating_ && facts.compensating)
    root_event("compensating", at, {{"troupe.reason", facts.undo_reason}});
  compensating_ = facts.compensating;
  now_ = &facts_;
}

// What the event itself ends or marks.
void trace_builder::fold(const kernel::event& e, int64_t at, sink& ended) {
  if (auto s = std::get_if<kernel::workflow_started>(&e)) {
    root_.open = true;
    root_.start_ns = at;
    root_.name = "workflow " + row_.definition;
    root_.parent.clear(); // the caller's span, if it gave one
    trace_id_ = trace_id_of(row_.id, "");
    if (!s->traceparent.empty())
      if (auto p = parse_traceparent(s->traceparent)) {
        trace_id_ = p->trace_id;
        root_.parent = p->span_id;
      }
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
                              sink& ended) {
  if (auto r = std::get_if<kernel::run_agent>(&c)) {
    open_attempt_span(*r, at);
  } else if (auto a = std::get_if<kernel::await_signal>(&c)) {
    if (gate_.open) // a gate routed to a gate
      close_gate(e, at, ended);
    open_gate_span(a->gate, at);
  } else if (auto m = std::get_if<kernel::remind>(&c)) {
    if (gate_.open)
      gate_.events.push_back({"reminder", at, {{"troupe.reminder", int64_t{m->n}}}});
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

void trace_builder::begin(draft& d, const std::string& name, uint64_t id,
                          int64_t start_ns) const {
  d.ref.trace_id = trace_id_;
  d.id(id);
  d.ref.parent_span_id = root_id_;
  d.ref.name = name;
  d.ref.start_ns = start_ns;
  d.str("troupe.workflow.id", row_.id);
}

void trace_builder::open_attempt_span(const kernel::run_agent& c, int64_t at) {
  auto& a = attempt_;
  const auto* running = attempts_.in_flight(); // begun by the same record's step_scheduled
  a.open = true;
  a.node = running != nullptr ? running->node : c.node;
  a.attempt = running != nullptr ? running->attempt : c.attempt;
  a.start_ns = running != nullptr ? running->start_ns : at;
  a.agent = c.agent;
  a.visit = c.visit;
  a.step = now_->steps;
  a.compensation = c.compensation;
  a.id = attempt_span_number(id_hash_, a.step); // attempt_span_id(id, steps)
  a.name = (c.compensation ? "undo " : "step ") + a.node;
  // the effect keys of this attempt start with its visit's key (workflow actor's run_agent)
  visits_.push_back({c.compensation ? c.node + "~undo" : c.node, c.visit, a.id, a.start_ns});
}

void trace_builder::attempt_attributes(draft& d) const {
  const auto& a = attempt_;
  begin(d, a.name, a.id, a.start_ns);
  d.str("troupe.node", a.node);
  d.str("troupe.agent", a.agent);
  d.num("troupe.attempt", a.attempt);
  d.num("troupe.visit", a.visit);
  d.num("troupe.step", a.step);
  d.flag("troupe.compensation", a.compensation);
}

void trace_builder::close_attempt(const step_attempt& a, const kernel::event& e,
                                  const std::string& problem, sink& ended) {
  if (!attempt_.open)
    return;
  draft d;
  attempt_attributes(d);
  auto& msg = scratch_;
  msg.clear();
  span_status status = span_status::error;
  if (a.end == attempt_end::completed) {
    d.num("troupe.tokens", a.tokens);
    d.real("troupe.cost_usd", usd_of(a.cost_nusd));
    d.str("troupe.label", a.label);
    if (problem.empty()) {
      status = span_status::ok;
    } else {
      d.str("troupe.failure.kind", to_string(failure_kind::bad_output));
      msg.append("bad_output: ").append(problem);
    }
  } else if (a.end == attempt_end::failed) {
    d.num("troupe.tokens", a.tokens);
    d.real("troupe.cost_usd", usd_of(a.cost_nusd));
    d.str("troupe.failure.kind", to_string(a.kind));
    d.str("troupe.failure.reason", a.reason);
    msg.append(to_string(a.kind));
    if (!a.reason.empty())
      msg.append(": ").append(a.reason);
  } else {
    d.flag("troupe.abandoned", true);
    msg.append("abandoned: ");
    if (const char* why = abandoned_by(e))
      msg.append(why);
    else
      msg.append("ended by ").append(kernel::kind_of(e));
  }
  if (now_->at == kernel::phase::backoff)
    d.flag("troupe.retry", true); // another attempt follows after the backoff
  d.ref.status_message = msg;
  d.end(a.end_ns, status);
  attempt_.open = false;
  ended.take(d.done());
}

void trace_builder::open_gate_span(const std::string& gate, int64_t at) {
  auto& g = gate_;
  g.open = true;
  g.gate = gate;
  g.visit = now_->visit; // the gate is the node it is at
  g.reason = now_->reason; // a failure or budget routed here, or ""
  g.id = span_id("/gate/" + std::to_string(last_));
  g.start_ns = at;
  g.name = "gate " + gate;
  g.events.clear();
}

void trace_builder::gate_attributes(draft& d) const {
  const auto& g = gate_;
  begin(d, g.name, g.id, g.start_ns);
  d.str("troupe.gate", g.gate);
  d.num("troupe.visit", g.visit);
  if (!g.reason.empty())
    d.str("troupe.reason", g.reason);
  d.ref.events = &g.events;
}

void trace_builder::close_gate(const kernel::event& e, int64_t at, sink& ended) {
  if (!gate_.open)
    return;
  draft d;
  gate_attributes(d);
  auto& msg = scratch_;
  msg.clear();
  span_status status = span_status::error;
  if (auto sig = std::get_if<kernel::signal_received>(&e)) {
    d.str("troupe.decision", sig->decision);
    d.str("troupe.decided_by", sig->by);
    status = span_status::ok;
  } else if (auto t = std::get_if<kernel::timer_fired>(&e);
             t && t->kind == kernel::timer_kind::gate_deadline) {
    d.str("troupe.decision", outcome::timeout);
    msg = "no decision before the gate's deadline";
  } else {
    msg.append("left without a decision: ").append(kernel::kind_of(e));
  }
  d.ref.status_message = msg;
  d.end(at, status);
  gate_.open = false;
  ended.take(d.done());
}

void trace_builder::root_attributes(draft& d) const {
  begin(d, root_.name, 0, root_.start_ns);
  d.ref.span_id = root_id_;
  d.ref.parent_span_id = root_.parent;
  d.str("troupe.definition", row_.definition);
  d.num("troupe.definition.version", row_.version);
  d.ref.events = &root_.events;
}

void trace_builder::close_root(bool completed, int64_t at, sink& ended) {
  if (!root_.open)
    return;
  draft d;
  root_attributes(d);
  d.str("troupe.status", completed ? "completed" : "failed");
  const auto& f = *now_;
  d.str("troupe.outcome", f.outcome);
  d.num("troupe.steps", f.steps);
  d.num("troupe.tokens", f.tokens);
  d.real("troupe.cost_usd", usd_of(f.cost_nusd));
  auto& msg = scratch_;
  msg.clear();
  if (!completed)
    msg.append(f.outcome).append(": ").append(f.reason);
  d.ref.status_message = msg;
  d.end(at, completed ? span_status::ok : span_status::error);
  root_.open = false;
  ended.take(d.done());
}

void trace_builder::root_event(std::string name, int64_t at, attributes attrs) {
  if (root_.open)
    root_.events.push_back({std::move(name), at, std::move(attrs)});
}

void trace_builder::add_effect(const effect_record& e, sink& out) {
  if (!placed_.insert(e.key).second)
    return;
  const attempt_ref* by = nullptr;
  size_t prefix = 0; // of the key: "<idempotency key of the visit>/"
  for (auto i = visits_.rbegin(); i != visits_.rend(); ++i) {
    auto key = kernel::idempotency_key(row_.id, i->node, i->visit) + "/";
    if (e.key.compare(0, key.size(), key) != 0)
      continue;
    prefix = key.size();
    if (by == nullptr)
      by = &*i; // the latest of the visit, should none have started before it
    if (i->start_ns <= e.at_ns) {
      by = &*i;
      break;
    }
  }
  auto name = e.key.substr(prefix);
  draft d;
  auto title = "effect " + name;
  begin(d, title, span_id("/effect/" + e.key), e.at_ns);
  char parent[16];
  if (by != nullptr) {
    write_hex64(by->id, parent);
    d.ref.parent_span_id = std::string_view{parent, sizeof parent};
  }
  d.str("troupe.effect.name", name);
  d.str("troupe.effect.key", e.key);
  d.end(e.at_ns, span_status::ok);
  out.take(d.done());
}

void trace_builder::open_spans(sink& out) const {
  if (root_.open) {
    draft d;
    root_attributes(d);
    out.take(d.done());
  }
  if (attempt_.open) {
    draft d;
    attempt_attributes(d);
    out.take(d.done());
  }
  if (gate_.open) {
    draft d;
    gate_attributes(d);
    out.take(d.done());
  }
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
  keep_spans keep{out};
  auto by_time = effects;
  std::stable_sort(by_time.begin(), by_time.end(),
                   [](const effect_record& x, const effect_record& y) { return x.at_ns < y.at_ns; });
  size_t next = 0;
  for (const auto& r : records) {
    // an effect comes after the records of its instant: its attempt has started
    while (next < by_time.size() && by_time[next].at_ns < r.at_ns)
      b.add_effect(by_time[next++], keep);
    if (auto err = b.add(r, keep))
      return err;
  }
  while (next < by_time.size())
    b.add_effect(by_time[next++], keep);
  b.open_spans(keep);
  auto root = root_span_id(row.id);
  std::stable_sort(out.begin(), out.end(), [&](const span& x, const span& y) {
    if (x.start_ns != y.start_ns)
      return x.start_ns < y.start_ns;
    return x.span_id == root && y.span_id != root;
  });
  return out;
}

} // namespace troupe
