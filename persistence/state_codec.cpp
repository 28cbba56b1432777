// The snapshot format (specified in state_codec.hpp): a workflow_state as
// canonical JSON and strict decoding back. Pure; any thread.
#include "persistence/state_codec.hpp"

#include <limits>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "troupe/errors.hpp"

namespace troupe::persistence {

namespace {

using json = nlohmann::json;

/// The snapshot version this build writes; it reads 1 to this (invariant 3).
constexpr uint64_t format_version = 5;

// The reverse of kernel::to_string. A value missing here cannot be decoded;
// the tests round-trip every value to_string names.
constexpr kernel::phase all_phases[] = {
  kernel::phase::not_started, kernel::phase::scheduling, kernel::phase::running,
  kernel::phase::backoff,     kernel::phase::at_gate,    kernel::phase::completed,
  kernel::phase::failed,      kernel::phase::dead_lettered,
};
constexpr kernel::timer_kind all_timer_kinds[] = {
  kernel::timer_kind::step_timeout, kernel::timer_kind::retry_backoff,
  kernel::timer_kind::workflow_deadline, kernel::timer_kind::gate_deadline,
  kernel::timer_kind::gate_reminder};

// -- encoding -----------------------------------------------------------------

json encode_timers(const std::map<uint64_t, kernel::pending_timer>& timers) {
  auto out = json::array();
  for (const auto& [id, t] : timers) // map order: ascending ids (invariant 8)
    out.push_back({{"fire_at_ns", t.fire_at.count()},
                   {"id", id},
                   {"kind", kernel::to_string(t.kind)}});
  return out;
}

json encode_visits(const std::map<std::string, uint32_t>& visits) {
  auto out = json::object();
  for (const auto& [node, n] : visits)
    out[node] = n;
  return out;
}

// -- decoding -----------------------------------------------------------------

/// Parses `text`, noting in `problem` the first key an object repeats
/// (invariant 2): json::parse alone would silently keep the last one.
/// Throws json::exception when the text is not JSON (invariant 1).
json parse_without_duplicates(const std::string& text, std::string& problem) {
  std::vector<std::set<std::string>> keys; // of each object being parsed
  auto watch = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!keys.back().insert(key).second && problem.empty())
          problem = "duplicate key '" + key + "'";
        break;
      }
      case json::parse_event_t::object_end:
        keys.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  return json::parse(text, watch);
}

/// A JSON value for a message, cut to about 40 bytes on a UTF-8 boundary.
std::string shown(const json& value) {
  auto out = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (out.size() > 40) {
    size_t cut = 37;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80)
      --cut;
    out = out.substr(0, cut) + "...";
  }
  return out;
}

/// Reads the fields of one JSON object, noting the first problem (invariants
/// 4-7) in a string shared with the readers of nested objects instead of
/// throwing. Field names in messages carry `prefix`, e.g. "timers[2].".
class field_reader {
public:
  field_reader(const json& obj, std::string& problem, std::string prefix = {})
      : obj_(obj), problem_(problem), prefix_(std::move(prefix)) {}

  /// A reader of `obj`, nested in this one's object as `path`; it shares
  /// this reader's problem.
  field_reader nested(const json& obj, const std::string& path) {
    return field_reader{obj, problem_, prefix_ + path + "."};
  }

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

  uint64_t u64(const char* key) {
    return unsigned_value(key, field(key), std::numeric_limits<uint64_t>::max());
  }

  bool boolean(const char* key) {
    const json* f = field(key);
    if (f == nullptr)
      return false;
    if (!f->is_boolean()) {
      wrong_type(key, "a boolean", *f);
      return false;
    }
    return f->get<bool>();
  }

  uint32_t u32(const char* key) {
    return static_cast<uint32_t>(
      unsigned_value(key, field(key), std::numeric_limits<uint32_t>::max()));
  }

  kernel::instant nanoseconds(const char* key) {
    const json* f = field(key);
    if (f == nullptr)
      return {};
    if (!f->is_number_integer()) { // signed or unsigned, never a float
      wrong_type(key, "an integer", *f);
      return {};
    }
    if (f->is_number_unsigned()
        && f->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail("field '" + name(key) + "': " + f->dump() + " is out of range");
      return {};
    }
    return kernel::instant{f->get<int64_t>()};
  }

  /// The field if it has JSON type `type` (an object or an array), else null.
  const json* of_type(const char* key, json::value_t type) {
    const json* f = field(key);
    if (f == nullptr)
      return nullptr;
    if (f->type() != type) {
      wrong_type(key, type == json::value_t::object ? "an object" : "an array", *f);
      return nullptr;
    }
    return f;
  }

  /// Checks a value that is not a field of this object, e.g. a visits count.
  uint64_t unsigned_value(const std::string& key, const json* f, uint64_t max) {
    if (f == nullptr)
      return 0;
    if (!f->is_number_unsigned()) {
      wrong_type(key, "an unsigned integer", *f);
      return 0;
    }
    auto value = f->get<uint64_t>();
    if (value > max) {
      fail("field '" + name(key) + "': " + std::to_string(value) + " is out of range");
      return 0;
    }
    return value;
  }

  void wrong_type(const std::string& key, const char* expected, const json& got) {
    fail("field '" + name(key) + "': expected " + expected + ", got " + got.type_name() + " "
         + shown(got));
  }

  /// Records the first problem found; later ones are consequences.
  void fail(std::string what) {
    if (problem_.empty())
      problem_ = std::move(what);
  }

  bool failed() const { return !problem_.empty(); }

  /// Fails on the first field that was never read (invariant 5).
  void check_all_read() {
    if (failed() || seen_.size() == obj_.size())
      return;
    for (const auto& item : obj_.items())
      if (seen_.count(item.key()) == 0)
        return fail("unexpected field '" + name(item.key()) + "'");
  }

  std::string name(const std::string& key) const { return prefix_ + key; }

private:
  const json* field(const char* key) {
    auto it = obj_.find(key);
    if (it == obj_.end()) {
      fail("missing field '" + name(key) + "'");
      return nullptr;
    }
    seen_.insert(key);
    return &*it;
  }

  const json& obj_;
  std::string& problem_;
  std::string prefix_;
  std::set<std::string> seen_;
};

kernel::phase read_phase(field_reader& in) { // invariant 7
  auto name = in.str("phase");
  for (auto p : all_phases)
    if (name == kernel::to_string(p))
      return p;
  in.fail("field 'phase': unknown phase '" + name + "'");
  return kernel::phase::not_started;
}

kernel::timer_kind read_timer_kind(field_reader& in) { // invariant 7
  auto name = in.str("kind");
  for (auto k : all_timer_kinds)
    if (name == kernel::to_string(k))
      return k;
  in.fail("field '" + in.name("kind") + "': unknown timer kind '" + name + "'");
  return kernel::timer_kind::step_timeout;
}

std::map<uint64_t, kernel::pending_timer> read_timers(field_reader& in) {
  std::map<uint64_t, kernel::pending_timer> out;
  const json* timers = in.of_type("timers", json::value_t::array);
  if (timers == nullptr)
    return out;
  for (size_t i = 0; i < timers->size() && !in.failed(); ++i) {
    const auto& item = (*timers)[i];
    auto where = "timers[" + std::to_string(i) + "]";
    if (!item.is_object()) {
      in.wrong_type(where, "an object", item);
      break;
    }
    auto t = in.nested(item, where);
    auto fire_at = t.nanoseconds("fire_at_ns");
    auto id = t.u64("id");
    auto kind = read_timer_kind(t);
    t.check_all_read();
    if (t.failed())
      break;
    if (!out.empty() && id <= out.rbegin()->first) { // invariant 8
      t.fail("field '" + t.name("id") + "': " + std::to_string(id) + " does not follow "
             + std::to_string(out.rbegin()->first) + " (timer ids must increase)");
      break;
    }
    out.emplace(id, kernel::pending_timer{kind, fire_at});
  }
  return out;
}

std::map<std::string, uint32_t> read_visits(field_reader& in) {
  std::map<std::string, uint32_t> out;
  const json* visits = in.of_type("visits", json::value_t::object);
  if (visits == nullptr)
    return out;
  for (const auto& item : visits->items()) {
    auto n = in.unsigned_value("visits." + item.key(), &item.value(),
                               std::numeric_limits<uint32_t>::max());
    if (in.failed())
      break;
    out.emplace(item.key(), static_cast<uint32_t>(n));
  }
  return out;
}

std::vector<std::pair<std::string, uint32_t>> read_undo(field_reader& in) {
  std::vector<std::pair<std::string, uint32_t>> out;
  const json* undo = in.of_type("undo", json::value_t::array);
  if (undo == nullptr)
    return out;
  for (size_t i = 0; i < undo->size() && !in.failed(); ++i) {
    const auto& item = (*undo)[i];
    auto where = "undo[" + std::to_string(i) + "]";
    if (!item.is_object()) {
      in.wrong_type(where, "an object", item);
      break;
    }
    auto u = in.nested(item, where);
    auto node = u.str("node");
    auto visit = u.u32("visit");
    u.check_all_read();
    out.emplace_back(std::move(node), visit);
  }
  return out;
}

kernel::budget_grant read_grant(field_reader& in) {
  kernel::budget_grant g;
  const json* obj = in.of_type("granted", json::value_t::object);
  if (obj == nullptr)
    return g;
  auto f = in.nested(*obj, "granted");
  g.cost_nusd = f.u64("cost_nusd");
  g.steps = f.u64("steps");
  auto time = f.nanoseconds("time_ns");
  if (time < duration::zero())
    f.fail("field 'granted.time_ns': " + std::to_string(time.count()) + " is negative");
  g.time = time;
  g.tokens = f.u64("tokens");
  f.check_all_read();
  return g;
}

} // namespace

std::string encode_state(const kernel::workflow_state& s) {
  auto undo = json::array();
  for (const auto& [node, visit] : s.undo)
    undo.push_back({{"node", node}, {"visit", visit}});
  json out = {
    {"attempt", s.attempt},
    {"compensating", s.compensating},
    {"cost_nusd", s.cost_nusd},
    {"data", s.data},
    {"deadline_ns", s.deadline.count()},
    {"events", s.events},
    {"granted", {{"cost_nusd", s.granted.cost_nusd},
                 {"steps", s.granted.steps},
                 {"time_ns", s.granted.time.count()},
                 {"tokens", s.granted.tokens}}},
    {"model", s.model},
    {"next_timer", s.next_timer},
    {"node", s.node},
    {"outcome", s.outcome},
    {"phase", kernel::to_string(s.at)},
    {"reason", s.reason},
    {"resume_attempt", s.resume_attempt},
    {"resume_node", s.resume_node},
    {"seed", s.seed},
    {"soft_passed", s.soft_passed},
    {"started_at_ns", s.started_at.count()},
    {"steps", s.steps},
    {"timers", encode_timers(s.timers)},
    {"tokens", s.tokens},
    {"traceparent", s.traceparent},
    {"undo", std::move(undo)},
    {"undo_reason", s.undo_reason},
    {"undo_terminal", s.undo_terminal},
    {"v", format_version},
    {"visits", encode_visits(s.visits)},
  };
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

caf::expected<kernel::workflow_state> decode_state(const std::string& text,
                                                   const std::string& workflow_id,
                                                   uint64_t wf_seq) {
  auto corrupt = [&](const std::string& what) {
    return make_error(errc::journal_corrupt,
                      workflow_id + " snapshot @" + std::to_string(wf_seq) + ": " + what);
  };
  std::string problem;
  json obj;
  try { // invariant 1
    obj = parse_without_duplicates(text, problem);
  } catch (const json::exception& ex) {
    return corrupt(std::string{"not JSON: "} + ex.what());
  }
  if (!problem.empty()) // invariant 2
    return corrupt(problem);
  if (!obj.is_object())
    return corrupt(std::string{"a JSON "} + obj.type_name() + ", not an object");
  field_reader in{obj, problem};
  auto version = in.u64("v"); // invariant 3
  if (in.failed())
    return corrupt(problem);
  if (version < 1 || version > format_version)
    return corrupt("unknown version " + std::to_string(version) + " (this build reads 1 to "
                   + std::to_string(format_version) + ")");
  kernel::workflow_state s;
  s.attempt = in.u32("attempt");
  if (version >= 3)
    s.compensating = in.boolean("compensating");
  if (version >= 2)
    s.cost_nusd = in.u64("cost_nusd");
  if (const json* data = in.of_type("data", json::value_t::object)) // invariant 9
    s.data = *data;
  s.deadline = in.nanoseconds("deadline_ns");
  s.events = in.u64("events");
  if (version >= 3)
    s.granted = read_grant(in);
  if (version >= 5)
    s.model = in.str("model");
  s.next_timer = in.u64("next_timer");
  s.node = in.str("node");
  s.outcome = in.str("outcome");
  s.at = read_phase(in);
  s.reason = in.str("reason");
  if (version >= 3) {
    s.resume_attempt = in.u32("resume_attempt");
    s.resume_node = in.str("resume_node");
  }
  s.seed = in.u64("seed");
  if (version >= 3)
    s.soft_passed = in.boolean("soft_passed");
  s.started_at = in.nanoseconds("started_at_ns");
  s.steps = in.u64("steps");
  s.timers = read_timers(in);
  s.tokens = in.u64("tokens");
  if (version >= 4)
    s.traceparent = in.str("traceparent");
  if (version >= 3) {
    s.undo = read_undo(in);
    s.undo_reason = in.str("undo_reason");
    s.undo_terminal = in.str("undo_terminal");
  }
  s.visits = read_visits(in);
  in.check_all_read();
  if (in.failed())
    return corrupt(problem);
  return s;
}

} // namespace troupe::persistence
