// The trace exporter (see the header). One thread runs impl::run(); the
// journal writer's thread calls committed(), callers flush() and stats(),
// and the HTTP transport's thread reports each POST. Everything they share
// is under `mtx`; the builders, the batches and the batch in flight belong
// to the exporter's thread alone.
//
// A span is encoded (runtime/otlp_json.hpp) the moment its builder ends it,
// straight into the body of the batch it will be posted in: batches wait
// as OTLP text, never as span values.
#include "runtime/trace_exporter.hpp"

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <spdlog/spdlog.h>

#include "actors/http_transport.hpp"
#include "runtime/applied_event.hpp"
#include "runtime/otlp_json.hpp"
#include "runtime/trace_builder.hpp"
#include "troupe/errors.hpp"

namespace troupe {

namespace {

using steady = std::chrono::steady_clock;

/// How a POST ended, as the transport's thread saw it.
struct post_result {
  bool ok = false;
  bool retry = false; ///< not ok: worth another try
  std::string why;
};

post_result judge(const caf::expected<gateway::http_response>& r) {
  if (!r)
    return {false, true, context_of(r.error())};
  auto s = r->status;
  if (s >= 200 && s < 300)
    return {true, false, {}};
  return {false, s == 408 || s == 429 || s >= 500, "HTTP " + std::to_string(s)};
}

/// A workflow's builder, with the definition it reads.
struct traced {
  traced(std::shared_ptr<const definition> d, const workflow_row& row)
    : def(std::move(d)), builder(*def, row) {}
  std::shared_ptr<const definition> def;
  trace_builder builder;
};

/// How long a busy exporter lets commits gather before it takes them: a
/// wake-up per commit cost more than the spans of the commit.
constexpr auto pause = std::chrono::milliseconds{5};

/// rebuild(): fold every record the journal has.
constexpr uint64_t all_records = UINT64_MAX;

bool parked(kernel::phase p) {
  return p == kernel::phase::completed || p == kernel::phase::failed
         || p == kernel::phase::at_gate || p == kernel::phase::dead_lettered;
}

/// Spans encoded into the body of the POST they go out in.
struct encoded_batch {
  std::string body;   ///< the body's head and the spans so far
  size_t spans = 0;
  steady::time_point first_at; ///< when its first span came
};

} // namespace

struct trace_exporter::impl final : trace_builder::sink {
  impl(tracing_config c, std::shared_ptr<journal_store> s, definition_lookup d)
    : cfg(std::move(c)), store(std::move(s)), defs(std::move(d)) {}

  // -- shared, under mtx ----------------------------------------------------
  std::mutex mtx;
  std::condition_variable work;    ///< the thread waits for work here
  std::condition_variable flushed; ///< flush() waits here
  std::vector<journal_write> inbox;
  size_t inbox_records = 0;
  /// Workflows some of whose writes were skipped (inbox full): their
  /// builders miss records, and one that finished meanwhile would stay.
  std::unordered_set<std::string> stale;
  std::optional<post_result> result; ///< the POST in flight ended
  uint64_t flush_asked = 0;
  uint64_t flush_done = 0;
  bool stopping = false;
  bool stop_called = false;
  bool running = true; ///< false once the thread has ended
  /// The thread waits with nothing to do: a commit wakes it. While busy it
  /// takes the inbox every `pause` instead, not once per commit.
  bool idle = false;

  // -- counters: written by the thread (committed() too), read by stats() --
  std::atomic<uint64_t> exported{0}, dropped{0}, queued{0}, posts{0}, posts_failed{0},
    skipped{0};

  // -- the thread's own -----------------------------------------------------
  tracing_config cfg;
  std::shared_ptr<journal_store> store;
  definition_lookup defs;
  std::unordered_map<std::string, std::unique_ptr<traced>> builders;
  std::deque<encoded_batch> waiting; ///< the last one takes the spans made next
  size_t waiting_spans = 0;
  encoded_batch batch;     ///< in flight, or waiting to be tried again (spans > 0)
  std::vector<std::string> spare; ///< bodies posted, emptied: their memory is reused
  bool posting = false;
  uint32_t tries = 0;      ///< of the batch
  uint64_t batches = 0;    ///< seeds the backoff jitter
  steady::time_point retry_at;
  uint64_t produced = 0;   ///< spans made (dropped at once too)
  uint64_t resolved = 0;   ///< spans exported or dropped
  uint64_t flush_seen = 0; ///< the last flush() asked that the thread has taken up
  uint64_t flush_target = 0; ///< ... done once `resolved` reaches this
  std::unique_ptr<http_transport> transport;
  std::thread thread;

  void run();
  steady::time_point wake_at() const;
  void take(journal_write& w);
  void fold_events(journal_write& w);
  traced* builder_for(const journal_write& w);
  std::unique_ptr<traced> rebuild(const workflow_row& row, uint64_t before_seq);
  void place_effect(const effect_record& e);
  /// A span a builder ended: encoded into the last batch waiting, or dropped.
  void take(const otlp::span_ref& s) override;
  void maybe_post();
  void post();
  void finished_post(const post_result& r);
  void count_queued() { queued = waiting_spans + batch.spans; }
  void done_with_batch() {
    batch.spans = 0;
    batch.body.clear();
    if (spare.size() < 4)
      spare.push_back(std::move(batch.body));
    batch.body = {};
  }
};

void trace_exporter::impl::run() {
  pthread_setname_np(pthread_self(), "troupe.trace"); // for top and perf
  std::unique_lock<std::mutex> lk{mtx};
  bool busy = false; // the last round had writes to take
  for (;;) {
    auto until = wake_at();
    if (busy) // more are coming: take them in one go a little later
      until = std::min(until, steady::now() + pause);
    idle = !busy;
    work.wait_until(lk, until, [&] {
      return stopping || result || flush_asked != flush_seen || inbox_records >= inbox_max / 4
             || (idle && !inbox.empty());
    });
    idle = false;
    if (stopping)
      break;
    busy = !inbox.empty();
    auto writes = std::move(inbox);
    inbox.clear();
    inbox_records = 0;
    auto lagging = std::move(stale);
    stale.clear();
    auto ended = std::move(result);
    result.reset();
    auto asked = flush_asked;
    lk.unlock();
    for (auto& w : writes)
      take(w);
    for (const auto& id : lagging) // their next record rebuilds them from the journal
      builders.erase(id);
    if (asked != flush_seen) { // everything committed before it is made now
      flush_seen = asked;
      flush_target = produced;
    }
    if (ended)
      finished_post(*ended);
    maybe_post();
    lk.lock();
    if (flush_done < flush_seen && resolved >= flush_target) {
      flush_done = flush_seen;
      flushed.notify_all();
    }
  }
  running = false;
  flushed.notify_all();
  lk.unlock();
  transport.reset(); // a POST in flight ends shutting_down; its report goes nowhere
}

steady::time_point trace_exporter::impl::wake_at() const {
  auto idle = steady::now() + std::chrono::hours{1};
  if (posting)
    return idle; // its report wakes us
  if (batch.spans > 0)
    return retry_at;
  if (!waiting.empty())
    return flush_done < flush_seen ? steady::now() : waiting.front().first_at + cfg.flush_interval;
  return idle;
}

void trace_exporter::impl::take(journal_write& w) {
  if (!w.events.empty() || w.applied)
    fold_events(w);
  for (const auto& e : w.effect)
    place_effect(e);
}

namespace {

/// Whether `w` carries its events as applied (see committed()).
bool is_applied(const journal_write& w) {
  return w.applied != nullptr;
}

const std::string& workflow_of(const journal_write& w) {
  return is_applied(w) ? w.applied->workflow_id() : w.events.front().workflow_id;
}

uint64_t first_seq_of(const journal_write& w) {
  return is_applied(w) ? w.applied->first_seq() : w.events.front().wf_seq;
}

size_t events_of(const journal_write& w) {
  return is_applied(w) ? w.applied->size() : w.events.size();
}

} // namespace

void trace_exporter::impl::fold_events(journal_write& w) {
  const auto& id = workflow_of(w);
  auto* t = builder_for(w);
  auto n = events_of(w);
  if (t == nullptr) {
    skipped += n;
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    auto err = is_applied(w) ? t->builder.add(w.applied->first_seq() + i, (*w.applied)[i], *this)
                             : t->builder.add(w.events[i], *this);
    if (err) {
      spdlog::debug("trace export: workflow {} not traced further: {}", id, describe(err));
      skipped += n - i;
      builders.erase(id);
      t = nullptr;
      break;
    }
  }
  // a parked or finished workflow holds nothing here; its next record rebuilds it
  if (t != nullptr && parked(t->builder.phase()))
    builders.erase(id);
}

traced* trace_exporter::impl::builder_for(const journal_write& w) {
  const auto& id = workflow_of(w);
  auto first_seq = first_seq_of(w);
  auto i = builders.find(id);
  if (i != builders.end()) {
    const auto& b = i->second->builder;
    // records in between were skipped, or these need the kernel state it does not keep
    if (b.last_wf_seq() + 1 == first_seq && (is_applied(w) || !b.applied_only()))
      return i->second.get();
    builders.erase(i);
  }
  workflow_row row;
  if (first_seq == 1 && !w.workflow.empty()) { // a new workflow: its row comes with it
    row = w.workflow.front();
  } else {
    auto found = store->workflow(id);
    if (!found)
      return nullptr;
    row = std::move(*found);
  }
  auto t = rebuild(row, first_seq);
  if (!t)
    return nullptr;
  return builders.emplace(id, std::move(t)).first->second.get();
}

namespace {

/// Throws spans away: a rebuilt builder's spans were exported when their
/// records committed.
class discard final : public trace_builder::sink {
public:
  void take(const otlp::span_ref&) override {}
};

} // namespace

// A builder that has folded the workflow's records before `before_seq`
// (read from the journal; all_records: all of them), exporting nothing:
// what they ended was exported when they committed. Null if the journal or
// the definition does not do.
std::unique_ptr<traced> trace_exporter::impl::rebuild(const workflow_row& row,
                                                      uint64_t before_seq) {
  auto def = defs(row.definition);
  if (!def || def->version != row.version)
    return nullptr;
  auto t = std::make_unique<traced>(std::move(def), row);
  if (before_seq <= 1)
    return t;
  auto records = store->read(row.id);
  if (!records)
    return nullptr;
  discard discarded;
  for (const auto& r : *records) {
    if (r.wf_seq >= before_seq)
      break;
    if (t->builder.add(r, discarded))
      return nullptr;
  }
  if (before_seq != all_records && t->builder.last_wf_seq() + 1 != before_seq)
    return nullptr; // the journal lacks records the caller has seen committed
  return t;
}

void trace_exporter::impl::place_effect(const effect_record& e) {
  if (auto i = builders.find(e.workflow_id); i != builders.end()) {
    i->second->builder.add_effect(e, *this);
    return;
  }
  // its workflow moved on (parked, finished): place it by the journal
  auto row = store->workflow(e.workflow_id);
  auto t = row ? rebuild(*row, all_records) : nullptr;
  if (!t) {
    ++skipped;
    return;
  }
  t->builder.add_effect(e, *this);
}

void trace_exporter::impl::take(const otlp::span_ref& s) {
  ++produced;
  if (waiting_spans + batch.spans >= cfg.buffer_max) {
    ++dropped;
    ++resolved;
    return;
  }
  if (waiting.empty() || waiting.back().spans >= cfg.batch_max) {
    auto& b = waiting.emplace_back();
    if (!spare.empty()) {
      b.body = std::move(spare.back());
      spare.pop_back();
    }
    otlp::append_body_head(b.body, cfg.service_name);
    b.first_at = steady::now();
  }
  auto& b = waiting.back();
  if (b.spans > 0)
    b.body += ',';
  otlp::append_span(b.body, s);
  ++b.spans;
  ++waiting_spans;
  count_queued();
}

void trace_exporter::impl::maybe_post() {
  if (posting)
    return;
  auto now = steady::now();
  if (batch.spans > 0) { // waiting to be tried again
    if (now >= retry_at)
      post();
    return;
  }
  if (waiting.empty())
    return;
  const auto& next = waiting.front();
  bool due = next.spans >= cfg.batch_max || flush_done < flush_seen
             || now >= next.first_at + cfg.flush_interval;
  if (!due)
    return;
  batch = std::move(waiting.front());
  waiting.pop_front();
  waiting_spans -= batch.spans;
  batch.body += otlp::body_tail;
  tries = 0;
  ++batches;
  post();
}

void trace_exporter::impl::post() {
  posting = true;
  ++tries;
  if (!transport)
    transport = std::make_unique<http_transport>();
  gateway::http_request req;
  req.url = cfg.otlp_endpoint;
  req.headers = {{"Content-Type", "application/json"}};
  req.body = batch.body; // kept for another try
  transport->submit(std::move(req), cfg.post_timeout,
                    [this](caf::expected<gateway::http_response> r) {
                      auto verdict = judge(r);
                      std::lock_guard<std::mutex> guard{mtx};
                      result = std::move(verdict);
                      work.notify_one();
                    });
}

void trace_exporter::impl::finished_post(const post_result& r) {
  posting = false;
  auto n = batch.spans;
  if (r.ok) {
    exported += n;
    ++posts;
    resolved += n;
    done_with_batch();
  } else {
    ++posts_failed;
    if (!r.retry || tries >= cfg.retry.max_attempts) {
      spdlog::warn("trace export: gave up on {} spans after {} tries to {}: {}", n, tries,
                   cfg.otlp_endpoint.substr(0, cfg.otlp_endpoint.find('?')), r.why);
      dropped += n;
      resolved += n;
      done_with_batch();
    } else {
      retry_at = steady::now() + kernel::backoff_delay(cfg.retry, batches, "otlp", tries);
    }
  }
  count_queued();
}

trace_exporter::trace_exporter(tracing_config cfg, std::shared_ptr<journal_store> store,
                               definition_lookup defs)
  : impl_(std::make_unique<impl>(std::move(cfg), std::move(store), std::move(defs))) {
  impl_->thread = std::thread{[i = impl_.get()] { i->run(); }};
}

trace_exporter::~trace_exporter() {
  stop();
}

void trace_exporter::committed(std::vector<journal_write>& batch) {
  auto& i = *impl_;
  std::lock_guard<std::mutex> guard{i.mtx};
  if (i.stopping)
    return;
  bool added = false;
  for (auto& w : batch) {
    auto n = w.events.size() + w.effect.size();
    if (n == 0)
      continue; // a row or snapshot alone: nothing to trace
    if (i.inbox_records + n > inbox_max) { // the thread is behind: skip, keep memory bounded
      i.skipped += n;
      i.stale.insert(w.events.empty() ? w.effect.front().workflow_id
                                      : w.events.front().workflow_id);
      continue;
    }
    i.inbox_records += n;
    added = true;
    if (w.applied && !w.events.empty() && w.applied->size() == w.events.size()
        && w.applied->first_seq() == w.events.front().wf_seq) {
      // the events as applied are all it needs: the records stay with the
      // writer, which frees them where they were made, as without tracing
      journal_write taken;
      taken.workflow = std::move(w.workflow);
      taken.effect = std::move(w.effect);
      taken.applied = std::move(w.applied);
      i.inbox.push_back(std::move(taken));
      continue;
    }
    w.applied = nullptr;
    i.inbox.push_back(std::move(w));
  }
  if (added && (i.idle || i.inbox_records >= inbox_max / 4))
    i.work.notify_one();
}

bool trace_exporter::flush(std::chrono::milliseconds timeout) {
  auto& i = *impl_;
  std::unique_lock<std::mutex> lk{i.mtx};
  if (!i.running)
    return false;
  auto gen = ++i.flush_asked;
  i.work.notify_one();
  i.flushed.wait_for(lk, timeout, [&] { return i.flush_done >= gen || !i.running; });
  return i.flush_done >= gen;
}

void trace_exporter::stop() {
  if (!impl_)
    return;
  auto& i = *impl_;
  {
    std::lock_guard<std::mutex> guard{i.mtx};
    if (i.stop_called)
      return;
    i.stop_called = true;
  }
  flush(i.cfg.shutdown_timeout);
  {
    std::lock_guard<std::mutex> guard{i.mtx};
    i.stopping = true;
    i.work.notify_one();
  }
  if (i.thread.joinable())
    i.thread.join();
}

trace_stats trace_exporter::stats() const {
  auto& i = *impl_;
  trace_stats s;
  s.spans_exported = i.exported;
  s.spans_dropped = i.dropped;
  s.spans_queued = i.queued;
  s.posts = i.posts;
  s.posts_failed = i.posts_failed;
  s.records_skipped = i.skipped;
  return s;
}

} // namespace troupe
