// The trace builder: folds one workflow's journal records, one at a time,
// through the pure kernel and turns what happened into spans
// (troupe/trace.hpp). derive_trace() runs one over a whole journal; the
// trace exporter keeps one per workflow in flight and exports each span as
// the record that ends it commits. Pure (no I/O, clock or actors); one
// thread at a time.
//
// What becomes a span (the kernel's commands say which, so a journal is
// read exactly as the workflow actor lived it):
//   workflow_started ... complete | fail      the root span; dead letters,
//                                             operator actions, a crash and
//                                             the start of compensation are
//                                             events on it
//   run_agent ... step_completed | step_failed | cancel_step
//                                             one span per attempt (an undo
//                                             run by compensation too)
//   await_signal ... signal_received | gate_deadline | leaving the gate
//                                             one span per wait at a gate
//   an effect record                          a zero-length child span of the
//                                             attempt whose visit recorded it
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "kernel/workflow_machine.hpp"
#include "troupe/journal.hpp"
#include "troupe/trace.hpp"

namespace troupe {

class trace_builder {
public:
  /// `def` is the row's definition and must outlive the builder.
  trace_builder(const definition& def, const workflow_row& row);

  /// Folds record `r`, which must be the workflow's next one (wf_seq one
  /// past the last folded), and appends the spans it ends to `ended`.
  /// journal_corrupt naming the record if it is another workflow's, skips
  /// or repeats a wf_seq or does not decode (the builder is unchanged
  /// then), or does not fit the definition (the builder refuses every
  /// record after it).
  caf::error add(const journal_record& r, std::vector<span>& ended);

  /// Appends the span of effect `e` to `out`: a child of the latest attempt
  /// of the visit whose key the effect's key extends that started no later
  /// than it (else the latest of that visit, else the root). Nothing if an
  /// effect with that key was placed already (a racing second write).
  void add_effect(const effect_record& e, std::vector<span>& out);

  /// Appends the spans still open (root, attempt, gate), ended false.
  void open_spans(std::vector<span>& out) const;

  uint64_t last_wf_seq() const { return last_; }
  const kernel::workflow_state& state() const { return st_; }
  const std::string& trace_id() const { return trace_id_; }

private:
  struct attempt_ref {
    std::string key_prefix; ///< "<idempotency key of its visit>/"
    std::string span_id;
    int64_t start_ns = 0;
  };

  void fold(const kernel::event& e, const std::string& problem, int64_t at,
            std::vector<span>& ended);
  void carry_out(const kernel::command& c, const kernel::event& e, int64_t at,
                 std::vector<span>& ended);
  span open(std::string span_id, std::string name, int64_t at) const;
  /// The span id named "<workflow id><suffix>" (see attempt_span_id).
  std::string span_id(const std::string& suffix) const;
  void open_attempt(const kernel::run_agent& c, int64_t at);
  void close_attempt(const kernel::event& e, const std::string& problem, int64_t at,
                     std::vector<span>& ended);
  void open_gate(const std::string& gate, int64_t at);
  void close_gate(const kernel::event& e, int64_t at, std::vector<span>& ended);
  void close_root(bool completed, int64_t at, std::vector<span>& ended);
  void root_event(std::string name, int64_t at, attributes attrs);

  const definition* def_;
  workflow_row row_;
  std::string trace_id_;
  uint64_t id_hash_;     ///< FNV-1a of the workflow id, where span ids continue
  std::string root_id_;
  kernel::workflow_state st_;
  uint64_t last_ = 0;
  bool broken_ = false; ///< a record did not fit: the kernel state is lost
  std::optional<span> root_, attempt_, gate_;
  std::vector<attempt_ref> attempts_;
  std::set<std::string> placed_; ///< effect keys with a span
};

} // namespace troupe
