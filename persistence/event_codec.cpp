// The journal's record format (specified in event_codec.hpp): encoding of
// kernel events as JSON payloads and strict decoding back. Pure; any thread.
#include "persistence/event_codec.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "runtime/json_text.hpp"
#include "troupe/errors.hpp"

namespace troupe::persistence {

namespace {

using json = nlohmann::json;

/// The payload version this build writes for each kind (invariant 3): 2 for
/// step_completed and step_failed (which gained cost_nusd) and for a
/// workflow_started with a traceparent, 1 for the rest. It reads every
/// version up to these.
constexpr uint64_t v1 = 1;
constexpr uint64_t v2 = 2;
constexpr uint64_t v3 = 3;


// -- encoding -----------------------------------------------------------------

// Writes a payload object straight into a string, keys in the alphabetical
// order json::dump uses (callers list them so), without first building a
// json object: this runs twice per step. Output is byte for byte what
// dump(-1, ' ', false, error_handler_t::replace) gives.
class payload_writer {
public:
  payload_writer& field(const char* key, std::string_view s) {
    begin(key);
    append_json_string(out_, s);
    return *this;
  }
  payload_writer& field(const char* key, const std::string& s) {
    return field(key, std::string_view{s});
  }
  payload_writer& field(const char* key, const char* s) {
    return field(key, std::string_view{s});
  }
  payload_writer& field(const char* key, uint64_t x) {
    begin(key);
    append_decimal(out_, x);
    return *this;
  }
  payload_writer& field(const char* key, const json& j) {
    begin(key);
    out_ += j.dump(-1, ' ', false, json::error_handler_t::replace);
    return *this;
  }
  std::string done() {
    out_ += '}';
    return std::move(out_);
  }

private:
  void begin(const char* key) {
    out_ += out_.empty() ? '{' : ',';
    out_ += '"';
    out_ += key;
    out_ += "\":";
  }
  std::string out_;
};

std::string encode(const kernel::workflow_started& e) {
  payload_writer out;
  if (!e.start_node.empty() || !e.model.empty() || !e.forked_from.empty())
    return out.field("forked_at", e.forked_at).field("forked_from", e.forked_from)
      .field("input", e.input).field("model", e.model).field("seed", e.seed)
      .field("start_node", e.start_node).field("traceparent", e.traceparent)
      .field("v", v3).done();
  out.field("input", e.input).field("seed", e.seed);
  if (e.traceparent.empty()) // v1: what a build without traces reads too
    return out.field("v", v1).done();
  return out.field("traceparent", e.traceparent).field("v", v2).done();
}

std::string encode(const kernel::step_scheduled& e) {
  return payload_writer{}.field("attempt", uint64_t{e.attempt}).field("node", e.node)
    .field("v", v1).done();
}

std::string encode(const kernel::step_completed& e) {
  return payload_writer{}.field("attempt", uint64_t{e.attempt}).field("cost_nusd", e.cost_nusd)
    .field("label", e.label)
    .field("node", e.node).field("patch", e.patch).field("tokens", e.tokens)
    .field("v", v2).done();
}

std::string encode(const kernel::step_failed& e) {
  return payload_writer{}.field("attempt", uint64_t{e.attempt}).field("cost_nusd", e.cost_nusd)
    .field("kind", to_string(e.kind)).field("node", e.node).field("reason", e.reason)
    .field("tokens", e.tokens).field("v", v2).done();
}

std::string encode(const kernel::timer_fired& e) {
  return payload_writer{}.field("kind", kernel::to_string(e.kind)).field("timer", e.timer)
    .field("v", v1).done();
}

std::string encode(const kernel::signal_received& e) {
  return payload_writer{}.field("by", e.by).field("decision", e.decision).field("gate", e.gate)
    .field("patch", e.patch).field("v", v1).done();
}

std::string encode(const kernel::dlq_retried& e) {
  return payload_writer{}.field("by", e.by).field("grant_cost_nusd", e.grant.cost_nusd)
    .field("grant_steps", e.grant.steps)
    .field("grant_time_ns", static_cast<uint64_t>(std::max<int64_t>(e.grant.time.count(), 0)))
    .field("grant_tokens", e.grant.tokens).field("v", v1).done();
}

std::string encode(const kernel::workflow_cancelled& e) {
  return payload_writer{}.field("by", e.by).field("reason", e.reason).field("v", v1).done();
}

std::string encode(const kernel::workflow_crashed& e) {
  return payload_writer{}.field("reason", e.reason).field("v", v1).done();
}

std::string encode(const kernel::dlq_dropped& e) {
  return payload_writer{}.field("by", e.by).field("reason", e.reason).field("v", v1).done();
}

// -- decoding -----------------------------------------------------------------

/// Reads the fields of one payload object, remembering the first problem
/// (invariants 4-6) instead of throwing; callers check failed() at the end.
class field_reader {
public:
  explicit field_reader(const json& obj) : obj_(obj) {}

  std::string str(const char* key) {
    const json* f = field(key);
    if (f == nullptr)
      return {};
    if (!f->is_string()) {
      wrong_type(key, "a string", *f);
      return {};
    }
    return f->get_ref<const std::string&>();
  }

  uint64_t u64(const char* key) { return unsigned_field(key, std::numeric_limits<uint64_t>::max()); }

  uint32_t u32(const char* key) {
    return static_cast<uint32_t>(unsigned_field(key, std::numeric_limits<uint32_t>::max()));
  }

  duration nanos(const char* key) {
    return duration{static_cast<int64_t>(
      unsigned_field(key, static_cast<uint64_t>(std::numeric_limits<int64_t>::max())))};
  }

  json any(const char* key) {
    const json* f = field(key);
    return f != nullptr ? *f : json{};
  }

  /// Records the first problem found; later ones are consequences.
  void fail(std::string what) {
    if (problem_.empty())
      problem_ = std::move(what);
  }

  bool failed() const { return !problem_.empty(); }

  /// The first problem found, "" if none.
  const std::string& problem() const { return problem_; }

  /// Fails on the first field that was never read (invariant 5).
  void check_all_read() {
    if (failed() || seen_.size() == obj_.size())
      return;
    for (const auto& item : obj_.items()) {
      bool known = false;
      for (const auto& k : seen_)
        known = known || k == item.key();
      if (!known)
        return fail("unexpected field '" + item.key() + "'");
    }
  }

private:
  const json* field(const char* key) {
    auto it = obj_.find(key);
    if (it == obj_.end()) {
      fail(std::string{"missing field '"} + key + "'");
      return nullptr;
    }
    seen_.emplace_back(key);
    return &*it;
  }

  uint64_t unsigned_field(const char* key, uint64_t max) {
    const json* f = field(key);
    if (f == nullptr)
      return 0;
    if (!f->is_number_unsigned()) {
      wrong_type(key, "an unsigned integer", *f);
      return 0;
    }
    auto value = f->get<uint64_t>();
    if (value > max) {
      fail("field '" + std::string{key} + "': " + std::to_string(value) + " is out of range");
      return 0;
    }
    return value;
  }

  void wrong_type(const char* key, const char* expected, const json& got) {
    auto shown = got.dump(-1, ' ', false, json::error_handler_t::replace);
    if (shown.size() > 40) { // cut on a UTF-8 character boundary
      size_t cut = 37;
      while (cut > 0 && (static_cast<unsigned char>(shown[cut]) & 0xC0) == 0x80)
        --cut;
      shown = shown.substr(0, cut) + "...";
    }
    fail("field '" + std::string{key} + "': expected " + expected + ", got " + got.type_name() +
         " " + shown);
  }

  const json& obj_;
  std::vector<std::string> seen_;
  std::string problem_;
};

caf::error corrupt(const journal_record& r, const std::string& what) {
  return make_error(errc::journal_corrupt, r.workflow_id + " #" + std::to_string(r.wf_seq) +
                                               " (" + r.kind + "): " + what);
}

failure_kind read_failure_kind(field_reader& in) {
  auto name = in.str("kind");
  for (auto k : all_failure_kinds)
    if (name == to_string(k))
      return k;
  in.fail("field 'kind': unknown failure kind '" + name + "'");
  return failure_kind::crashed;
}

kernel::timer_kind read_timer_kind(field_reader& in) {
  auto name = in.str("kind");
  for (auto k : {kernel::timer_kind::step_timeout, kernel::timer_kind::retry_backoff,
                 kernel::timer_kind::workflow_deadline, kernel::timer_kind::gate_deadline,
                 kernel::timer_kind::gate_reminder})
    if (name == kernel::to_string(k))
      return k;
  in.fail("field 'kind': unknown timer kind '" + name + "'");
  return kernel::timer_kind::step_timeout;
}

/// Reads one kind's fields of payload version `v` (invariants 4-7);
/// problems stay in the reader.
using field_decoder = kernel::event (*)(kernel::instant at, uint64_t v, field_reader& in);

struct kind_entry {
  const char* name;
  uint64_t version; ///< the newest version: written, and read with all older ones
  field_decoder decode;
};

// Braced initializers evaluate left to right, so fields are read in order.
const kind_entry kinds[] = {
  {"workflow_started", v3,
   [](kernel::instant at, uint64_t v, field_reader& in) -> kernel::event {
     kernel::workflow_started e{at, in.any("input"), in.u64("seed")};
     if (v >= v2)
       e.traceparent = in.str("traceparent");
     if (v >= v3) {
       e.forked_at = in.u64("forked_at");
       e.forked_from = in.str("forked_from");
       e.model = in.str("model");
       e.start_node = in.str("start_node");
     }
     return e;
   }},
  {"step_scheduled", v1,
   [](kernel::instant at, uint64_t, field_reader& in) -> kernel::event {
     return kernel::step_scheduled{at, in.str("node"), in.u32("attempt")};
   }},
  {"step_completed", v2,
   [](kernel::instant at, uint64_t v, field_reader& in) -> kernel::event {
     kernel::step_completed e{at,              in.str("node"),  in.u32("attempt"),
                              in.str("label"), in.any("patch"), in.u64("tokens")};
     e.cost_nusd = v >= v2 ? in.u64("cost_nusd") : 0;
     return e;
   }},
  {"step_failed", v2,
   [](kernel::instant at, uint64_t v, field_reader& in) -> kernel::event {
     kernel::step_failed e{at,                    in.str("node"),   in.u32("attempt"),
                           read_failure_kind(in), in.str("reason"), in.u64("tokens")};
     e.cost_nusd = v >= v2 ? in.u64("cost_nusd") : 0;
     return e;
   }},
  {"timer_fired", v1,
   [](kernel::instant at, uint64_t, field_reader& in) -> kernel::event {
     return kernel::timer_fired{at, in.u64("timer"), read_timer_kind(in)};
   }},
  {"signal_received", v1,
   [](kernel::instant at, uint64_t, field_reader& in) -> kernel::event {
     return kernel::signal_received{at, in.str("gate"), in.str("decision"), in.any("patch"),
                                    in.str("by")};
   }},
  {"dlq_retried", v1,
   [](kernel::instant at, uint64_t, field_reader& in) -> kernel::event {
     kernel::dlq_retried e{at, in.str("by"), {}};
     e.grant.steps = in.u64("grant_steps");
     e.grant.tokens = in.u64("grant_tokens");
     e.grant.cost_nusd = in.u64("grant_cost_nusd");
     e.grant.time = in.nanos("grant_time_ns");
     return e;
   }},
  {"dlq_dropped", v1,
   [](kernel::instant at, uint64_t, field_reader& in) -> kernel::event {
     return kernel::dlq_dropped{at, in.str("by"), in.str("reason")};
   }},
  {"workflow_crashed", v1,
   [](kernel::instant at, uint64_t, field_reader& in) -> kernel::event {
     return kernel::workflow_crashed{at, in.str("reason")};
   }},
  {"workflow_cancelled", v1,
   [](kernel::instant at, uint64_t, field_reader& in) -> kernel::event {
     return kernel::workflow_cancelled{at, in.str("by"), in.str("reason")};
   }},
};

} // namespace

journal_record to_record(const std::string& workflow_id, uint64_t wf_seq,
                         const kernel::event& e) {
  journal_record r;
  r.workflow_id = workflow_id;
  r.wf_seq = wf_seq;
  r.kind = kernel::kind_of(e);
  r.at_ns = static_cast<int64_t>(kernel::time_of(e).count());
  r.payload = std::visit([](const auto& x) { return encode(x); }, e);
  return r;
}

caf::expected<kernel::event> from_record(const journal_record& r) {
  const kind_entry* entry = nullptr;
  for (const auto& k : kinds)
    if (r.kind == k.name)
      entry = &k;
  if (entry == nullptr) // invariant 1
    return corrupt(r, "unknown event kind");
  json payload;
  try { // invariant 2
    payload = json::parse(r.payload);
  } catch (const json::exception& ex) {
    return corrupt(r, std::string{"payload is not JSON: "} + ex.what());
  }
  if (!payload.is_object())
    return corrupt(r, std::string{"payload is a JSON "} + payload.type_name() + ", not an object");
  field_reader in{payload};
  auto version = in.u64("v"); // invariant 3
  if (in.failed())
    return corrupt(r, in.problem());
  if (version < v1 || version > entry->version)
    return corrupt(r, "unknown version " + std::to_string(version) + " (this build reads " +
                          (entry->version == v1 ? std::string{"1"}
                                                : "1 to " + std::to_string(entry->version)) +
                          ")");
  auto out = entry->decode(kernel::instant{r.at_ns}, version, in);
  in.check_all_read();
  if (in.failed())
    return corrupt(r, in.problem());
  return out;
}

namespace {

// -- the fast path of from_record_without_state ----------------------------

/// Reads the compact objects payload_writer writes: `"key":value` pairs in
/// the order the caller asks for them. Any surprise makes ok() false and
/// the caller falls back to the strict decoder.
class payload_scanner {
public:
  explicit payload_scanner(const std::string& text) : s_(text) { expect('{'); }

  bool ok() const { return ok_; }

  uint64_t u64(const char* key) {
    if (!key_is(key))
      return 0;
    uint64_t x = 0;
    size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (x > (UINT64_MAX - 9) / 10) // near the top: leave it to the strict path
        ok_ = false;
      x = x * 10 + static_cast<uint64_t>(s_[i_++] - '0');
    }
    ok_ = ok_ && i_ > start && i_ - start < 20;
    next();
    return x;
  }

  std::string str(const char* key) {
    if (!key_is(key) || !expect('"'))
      return {};
    auto end = s_.find_first_of("\\\"", i_);
    if (end == std::string::npos || s_[end] != '"') { // an escape: strict path
      ok_ = false;
      return {};
    }
    std::string out = s_.substr(i_, end - i_);
    i_ = end + 1;
    next();
    return out;
  }

  /// Skips a JSON object (the patch); anything else is left to the
  /// strict path, which keeps a patch that is not an object.
  void object(const char* key) {
    if (!key_is(key) || i_ >= s_.size() || s_[i_] != '{') {
      ok_ = false;
      return;
    }
    int depth = 0;
    for (; i_ < s_.size(); ++i_) {
      char c = s_[i_];
      if (c == '"') { // a string, escapes included
        for (++i_; i_ < s_.size() && s_[i_] != '"'; ++i_)
          if (s_[i_] == '\\')
            ++i_;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if ((c == '}' || c == ']') && --depth == 0) {
        ++i_;
        break;
      }
    }
    ok_ = ok_ && depth == 0;
    next();
  }

  /// True if the whole payload was read.
  bool done() const { return ok_ && last_ && i_ == s_.size(); }

private:
  bool expect(char c) {
    ok_ = ok_ && i_ < s_.size() && s_[i_] == c;
    ++i_;
    return ok_;
  }
  bool key_is(const char* key) {
    if (!ok_ || !expect('"'))
      return false;
    size_t n = std::char_traits<char>::length(key);
    ok_ = s_.compare(i_, n, key) == 0 && i_ + n + 1 < s_.size() && s_[i_ + n] == '"'
          && s_[i_ + n + 1] == ':';
    i_ += n + 2;
    return ok_;
  }
  /// After a value: a ',' before the next key, or the closing '}'.
  void next() {
    if (!ok_ || i_ >= s_.size()) {
      ok_ = false;
      return;
    }
    last_ = s_[i_] == '}';
    ok_ = s_[i_] == ',' || last_;
    ++i_;
  }

  const std::string& s_;
  size_t i_ = 0;
  bool ok_ = true;
  bool last_ = false;
};

/// The step records, scanned; nothing if the scan does not go through.
std::optional<kernel::event> scan_step_record(const journal_record& r) {
  payload_scanner in{r.payload};
  kernel::instant at{r.at_ns};
  std::optional<kernel::event> out;
  if (r.kind == "step_scheduled") {
    auto attempt = in.u64("attempt");
    auto node = in.str("node");
    if (in.u64("v") == v1 && attempt <= UINT32_MAX)
      out = kernel::step_scheduled{at, std::move(node), static_cast<uint32_t>(attempt)};
  } else if (r.kind == "step_completed") {
    auto attempt = in.u64("attempt");
    auto cost = in.u64("cost_nusd");
    auto label = in.str("label");
    auto node = in.str("node");
    in.object("patch");
    auto tokens = in.u64("tokens");
    if (in.u64("v") == v2 && attempt <= UINT32_MAX) {
      kernel::step_completed e{at, std::move(node), static_cast<uint32_t>(attempt),
                               std::move(label), json::object(), tokens};
      e.cost_nusd = cost;
      out = std::move(e);
    }
  } else if (r.kind == "step_failed") {
    auto attempt = in.u64("attempt");
    auto cost = in.u64("cost_nusd");
    auto kind = in.str("kind");
    auto node = in.str("node");
    auto reason = in.str("reason");
    auto tokens = in.u64("tokens");
    std::optional<failure_kind> k;
    for (auto x : all_failure_kinds)
      if (kind == to_string(x))
        k = x;
    if (in.u64("v") == v2 && attempt <= UINT32_MAX && k) {
      kernel::step_failed e{at, std::move(node), static_cast<uint32_t>(attempt), *k,
                            std::move(reason), tokens};
      e.cost_nusd = cost;
      out = std::move(e);
    }
  }
  if (!in.done())
    return std::nullopt;
  return out;
}

} // namespace

caf::expected<kernel::event> from_record_without_state(const journal_record& r) {
  if (auto fast = scan_step_record(r))
    return std::move(*fast);
  auto e = from_record(r);
  if (!e)
    return e;
  if (auto s = std::get_if<kernel::workflow_started>(&*e))
    s->input = json::object();
  else if (auto c = std::get_if<kernel::step_completed>(&*e); c && c->patch.is_object())
    c->patch = json::object();
  return e;
}

caf::expected<std::vector<kernel::event>>
decode_history(const std::vector<journal_record>& records) {
  std::vector<kernel::event> out;
  out.reserve(records.size());
  for (const auto& r : records) { // invariant 8
    uint64_t expected = out.size() + 1;
    const auto& first = records.front().workflow_id;
    if (r.workflow_id != first)
      return corrupt(r, "record of another workflow in the history of '" + first + "'");
    if (r.wf_seq == 0)
      return corrupt(r, "wf_seq 0 is invalid (the first record is #1)");
    if (r.wf_seq < expected)
      return corrupt(r, "duplicate wf_seq (expected #" + std::to_string(expected) + ")");
    if (r.wf_seq > expected) {
      auto missing = r.wf_seq == expected + 1
                       ? "#" + std::to_string(expected) + " is missing"
                       : "#" + std::to_string(expected) + " to #" +
                           std::to_string(r.wf_seq - 1) + " are missing";
      return corrupt(r, "gap in wf_seq: " + missing);
    }
    auto e = from_record(r);
    if (!e)
      return std::move(e.error());
    out.emplace_back(std::move(*e));
  }
  return out;
}

} // namespace troupe::persistence
