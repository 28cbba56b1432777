// The trace exporter: turns committed journal writes into spans and posts
// them as OTLP/HTTP JSON to a collector (config::tracing). The runtime
// makes one when tracing_config::otlp_endpoint is set; the journal writer
// hands it each batch right after the commit, before answering the
// appends, so whatever a caller has seen committed is in its inbox.
//
// It owns one thread, which folds the writes through a trace_builder per
// workflow in flight (exporting a span once the record that ends it is in;
// a live workflow's writes carry their events as its actor applied them,
// journal_write::applied, so they are neither decoded nor replayed here),
// batches the spans (batch_max, or flush_interval), and POSTs one batch at
// a time through the libcurl transport, retrying with full-jitter backoff.
// Never in the workflows' way: committed() only moves writes into the inbox
// under a mutex; past buffer_max spans waiting new ones are dropped, and
// past inbox_max records waiting new writes are skipped, both counted.
//
// A workflow that parks, dead-letters or finishes gives its builder up;
// its next record (a signal, a retry, a recovery after a restart) rebuilds
// it from the journal, read on this thread, without exporting twice what
// was exported. Spans that a crash kept from being exported are lost.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "troupe/definition.hpp"
#include "troupe/journal.hpp"
#include "troupe/trace.hpp"

namespace troupe {

class trace_exporter {
public:
  /// The registered definition named `name`, or null.
  using definition_lookup = std::function<std::shared_ptr<const definition>(const std::string&)>;

  /// Committed records waiting in the inbox at most (writes past it are skipped).
  static constexpr size_t inbox_max = 1 << 16;

  /// Starts the thread. `cfg.otlp_endpoint` must not be empty; `store` is
  /// read to rebuild a workflow's builder; `defs` must be thread-safe.
  trace_exporter(tracing_config cfg, std::shared_ptr<journal_store> store,
                 definition_lookup defs);
  /// stop()
  ~trace_exporter();
  trace_exporter(const trace_exporter&) = delete;
  trace_exporter& operator=(const trace_exporter&) = delete;

  /// Takes what it needs of the writes of a committed batch (moved from;
  /// the writer is done with them): of a write with its events as applied,
  /// those, its row and effects; of any other, all of it. Called by the
  /// journal writer; never waits for I/O.
  void committed(std::vector<journal_write>& batch);

  /// Waits until every span of the writes committed before the call has
  /// been exported or dropped, at most `timeout`; false if time ran out.
  bool flush(std::chrono::milliseconds timeout);

  /// Flushes within cfg.shutdown_timeout, then ends the thread (a POST in
  /// flight is abandoned). Idempotent; committed() does nothing afterwards.
  void stop();

  trace_stats stats() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace troupe
