// The trace builder: folds one workflow's journal records, one at a time,
// through the pure kernel and turns what happened into spans
// (troupe/trace.hpp). derive_trace() runs one over a whole journal; the
// trace exporter keeps one per workflow in flight and encodes each span as
// the record that ends it commits. For a live workflow the exporter gets
// each event as the workflow actor applied it (runtime/applied_event.hpp)
// and the builder reads that transition instead of decoding the record and
// running the kernel again: the same spans either way. Pure (no I/O,
// clock or actors); one thread at a time.
//
// What becomes a span (the kernel's commands say which, so a journal is
// read exactly as the workflow actor lived it):
//   workflow_started ... complete | fail      the root span; dead letters,
//                                             operator actions, a crash and
//                                             the start of compensation are
//                                             events on it
//   an attempt (runtime/attempts.hpp, opened  one span per attempt (an undo
//   by its run_agent command)                 run by compensation too)
//   await_signal ... signal_received | gate_deadline | leaving the gate
//                                             one span per wait at a gate
//   an effect record                          a zero-length child span of the
//                                             attempt whose visit recorded it
//
// Spans are handed over as otlp::span_ref, borrowed for the call: the
// builder keeps what an open span needs in place, so a span costs no
// allocation on its way out.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "kernel/workflow_machine.hpp"
#include "runtime/applied_event.hpp"
#include "runtime/attempts.hpp"
#include "runtime/otlp_json.hpp"
#include "troupe/journal.hpp"
#include "troupe/trace.hpp"

namespace troupe {

class trace_builder {
public:
  /// Where spans go; each is valid only during the call.
  class sink {
  public:
    virtual void take(const otlp::span_ref& s) = 0;

  protected:
    ~sink() = default;
  };

  /// `def` is the row's definition and must outlive the builder.
  trace_builder(const definition& def, const workflow_row& row);
  trace_builder(const trace_builder&) = delete; // open spans point into it
  trace_builder& operator=(const trace_builder&) = delete;

  /// Folds record `r`, which must be the workflow's next one (wf_seq one
  /// past the last folded), and hands the spans it ends to `ended`.
  /// journal_corrupt naming the record if it is another workflow's, skips
  /// or repeats a wf_seq or does not decode (the builder is unchanged
  /// then), or does not fit the definition (the builder refuses every
  /// record after it).
  caf::error add(const journal_record& r, sink& ended);

  /// add() for the workflow's record `wf_seq` as its actor applied it:
  /// `a` is its event and transition, not checked against the definition.
  /// From then on the builder keeps no kernel state: add() of a record
  /// refuses, and the builder must be rebuilt from the journal.
  caf::error add(uint64_t wf_seq, const applied_event& a, sink& ended);

  /// Whether it has taken applied events (and so holds no kernel state).
  bool applied_only() const { return applied_; }

  /// Hands `out` the span of effect `e`: a child of the latest attempt of
  /// the visit whose key the effect's key extends that started no later
  /// than it (else the latest of that visit, else the root). Nothing if an
  /// effect with that key was placed already (a racing second write).
  void add_effect(const effect_record& e, sink& out);

  /// Hands `out` the spans still open (root, attempt, gate), ended false.
  void open_spans(sink& out) const;

  uint64_t last_wf_seq() const { return last_; }
  /// Where the workflow is after the last record folded.
  kernel::phase phase() const { return phase_; }
  const std::string& trace_id() const { return trace_id_; }

private:
  struct open_root {
    bool open = false;
    int64_t start_ns = 0;
    std::string parent; ///< the caller's span, "" none
    std::string name;
    std::vector<span_event> events;
  };
  struct open_attempt {
    bool open = false;
    std::string node, agent;
    uint32_t attempt = 0, visit = 0;
    uint64_t step = 0;
    bool compensation = false;
    uint64_t id = 0;
    int64_t start_ns = 0;
    std::string name;
  };
  struct open_gate {
    bool open = false;
    std::string gate, reason;
    uint32_t visit = 0;
    uint64_t id = 0;
    int64_t start_ns = 0;
    std::string name;
    std::vector<span_event> events;
  };
  /// An attempt, for placing effects.
  struct attempt_ref {
    std::string node;   ///< whose visit's idempotency key prefixes its effects' ("~undo" added
    uint32_t visit = 0; ///< for a compensation, as the workflow actor keys it)
    uint64_t id = 0;
    int64_t start_ns = 0;
  };
  class draft;

  /// Why record `wf_seq` of `workflow_id` is not the next one; "" if it is.
  std::string not_next(const std::string& workflow_id, uint64_t wf_seq) const;
  /// What record `wf_seq` (event `e`, whose transition gave the `n`
  /// `commands` and left `facts`) opens, ends and marks.
  void observe(uint64_t wf_seq, const kernel::event& e, const kernel::command* commands, size_t n,
               const trace_facts& facts, const std::string& problem, sink& ended);
  void fold(const kernel::event& e, int64_t at, sink& ended);
  void carry_out(const kernel::command& c, const kernel::event& e, int64_t at, sink& ended);
  /// The span id named "<workflow id><suffix>" (see attempt_span_id).
  uint64_t span_id(const std::string& suffix) const;
  void begin(draft& d, const std::string& name, uint64_t id, int64_t start_ns) const;
  void open_attempt_span(const kernel::run_agent& c, int64_t at);
  void attempt_attributes(draft& d) const;
  void close_attempt(const step_attempt& a, const kernel::event& e, const std::string& problem,
                     sink& ended);
  void open_gate_span(const std::string& gate, int64_t at);
  void gate_attributes(draft& d) const;
  void close_gate(const kernel::event& e, int64_t at, sink& ended);
  void root_attributes(draft& d) const;
  void close_root(bool completed, int64_t at, sink& ended);
  void root_event(std::string name, int64_t at, attributes attrs);

  const definition* def_;
  workflow_row row_;
  std::string trace_id_;
  uint64_t id_hash_;     ///< FNV-1a of the workflow id, where span ids continue
  std::string root_id_;
  kernel::workflow_state st_; ///< replayed records: the kernel's state
  trace_facts facts_;         ///< replayed records: st_'s facts
  const trace_facts* now_ = &facts_; ///< the facts of the record being observed
  kernel::phase phase_ = kernel::phase::not_started;
  bool compensating_ = false;
  uint64_t last_ = 0;
  bool broken_ = false;  ///< a record did not fit: the kernel state is lost
  bool applied_ = false; ///< took applied events: st_ is not kept
  attempt_fold attempts_;
  open_root root_;
  open_attempt attempt_;
  open_gate gate_;
  std::string scratch_; ///< a status message in the making
  std::vector<attempt_ref> visits_;
  std::set<std::string> placed_; ///< effect keys with a span
};

} // namespace troupe
