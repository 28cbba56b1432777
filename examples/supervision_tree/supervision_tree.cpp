// The supervision tree example (see the header).
#include "supervision_tree/supervision_tree.hpp"

#include <chrono>
#include <condition_variable>
#include <iomanip>
#include <mutex>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "troupe/errors.hpp"
#include "troupe/supervisor.hpp"

namespace troupe::examples {

namespace {

using namespace std::chrono_literals;
using crash_atom = caf::atom_constant<caf::atom("crash")>;

/// A worker that does nothing but crash when told to.
caf::behavior worker(caf::event_based_actor* self) {
  return {[self](crash_atom) { self->quit(caf::sec::runtime_error); }};
}

child_spec worker_spec(const std::string& id) {
  child_spec c;
  c.id = id;
  c.start = [](caf::actor_system& sys) { return sys.spawn(worker); };
  return c;
}

/// Every supervision event, printed as it happens; the scenario waits on it.
class journal_of_events {
public:
  explicit journal_of_events(std::ostream& out) : out_(out) {}

  supervision_observer observer() {
    return [this](const supervision_event& e) {
      std::lock_guard<std::mutex> guard{mtx_};
      out_ << "  " << std::left << std::setw(9) << e.supervisor << std::setw(10) << to_string(e.k)
           << e.child;
      if (!e.what.empty())
        out_ << (e.child.empty() ? "(" + e.what + ")" : ": " + e.what);
      out_ << '\n';
      seen_.push_back(e);
      cv_.notify_all();
    };
  }

  /// Waits for `supervisor` to report `k` of `child` after the events seen
  /// before the last mark(). False after 10 s (the scenario went wrong).
  bool wait_for(const std::string& supervisor, supervision_event::kind k,
                const std::string& child) {
    std::unique_lock<std::mutex> lock{mtx_};
    return cv_.wait_for(lock, 10s, [&] {
      for (size_t i = from_; i < seen_.size(); ++i)
        if (seen_[i].supervisor == supervisor && seen_[i].k == k && seen_[i].child == child)
          return true;
      return false;
    });
  }

  void mark() {
    std::lock_guard<std::mutex> guard{mtx_};
    from_ = seen_.size();
  }

  void say(const std::string& line) {
    std::lock_guard<std::mutex> guard{mtx_};
    out_ << line << '\n';
  }

  size_t count(supervision_event::kind k) {
    std::lock_guard<std::mutex> guard{mtx_};
    size_t n = 0;
    for (auto& e : seen_)
      n += e.k == k;
    return n;
  }

private:
  std::ostream& out_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<supervision_event> seen_;
  size_t from_ = 0;
};

supervisor_spec branch(const std::string& name, restart_strategy s,
                       std::vector<std::string> workers, journal_of_events& log) {
  supervisor_spec spec;
  spec.name = name;
  spec.flags.strategy = s;
  spec.flags.intensity = 3;
  spec.flags.period = 10s;
  spec.flags.base_backoff = 5ms;
  spec.flags.max_backoff = 50ms;
  for (auto& w : workers)
    spec.children.push_back(worker_spec(w));
  spec.observer = log.observer();
  return spec;
}

/// The current handle of `path` ("ingest/parser"), asked of the supervisors.
caf::actor find(caf::actor_system& sys, caf::actor root, const std::string& path) {
  caf::scoped_actor self{sys};
  caf::actor at = std::move(root);
  size_t start = 0;
  while (at && start <= path.size()) {
    auto slash = path.find('/', start);
    auto id = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    caf::actor next;
    self->request(at, 5s, children_atom::value)
      .receive(
        [&](std::vector<child_info>& kids) {
          for (auto& k : kids)
            if (k.id == id)
              next = k.actor;
        },
        [](caf::error&) {});
    at = next;
    if (slash == std::string::npos)
      break;
    start = slash + 1;
  }
  return at;
}

} // namespace

int run_supervision_tree(std::ostream& out) {
  auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err); // the events are printed here instead
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  caf::actor_system sys{cfg};
  journal_of_events log{out};
  using K = supervision_event::kind;
  int failures = 0;
  auto expect = [&](const std::string& sup, K k, const std::string& child) {
    if (!log.wait_for(sup, k, child)) {
      log.say("  !! expected '" + sup + " " + to_string(k) + " " + child + "', did not happen");
      ++failures;
    }
  };
  supervisor_spec root;
  root.name = "root";
  root.flags.strategy = restart_strategy::one_for_one;
  root.flags.intensity = 3;
  root.flags.period = 10s;
  root.flags.base_backoff = 5ms;
  root.flags.max_backoff = 50ms;
  root.observer = log.observer();
  root.children.push_back(
    supervisor_child(branch("ingest", restart_strategy::one_for_all,
                            {"reader", "parser", "writer"}, log)));
  root.children.push_back(
    supervisor_child(branch("pipeline", restart_strategy::rest_for_one,
                            {"fetch", "enrich", "store"}, log)));
  auto flaky = branch("flaky", restart_strategy::one_for_one, {"worker"}, log);
  flaky.flags.intensity = 2;
  flaky.flags.period = 60s;
  root.children.push_back(supervisor_child(flaky));

  out << "Starting the tree: root (one_for_one) over ingest (one_for_all), pipeline "
         "(rest_for_one) and flaky (one_for_one, at most 2 restarts a minute).\n";
  auto top = spawn_supervisor(sys, root);
  if (!top) {
    out << "could not start: " << describe(top.error()) << '\n';
    return 1;
  }
  expect("root", K::started, "flaky");
  expect("flaky", K::started, "worker");
  expect("ingest", K::started, "writer");
  expect("pipeline", K::started, "store");

  auto kill = [&](const std::string& path) {
    log.mark();
    if (auto h = find(sys, *top, path))
      caf::anon_send(h, crash_atom::value);
    else {
      log.say("  !! " + path + " is not running");
      ++failures;
    }
  };

  out << "\n1. ingest/parser crashes. one_for_all: ingest stops its other children, newest "
         "first, and starts all three again.\n";
  kill("ingest/parser");
  expect("ingest", K::started, "writer");

  out << "\n2. pipeline/enrich crashes. rest_for_one: store, started after it, goes down "
         "with it; fetch is left alone.\n";
  kill("pipeline/enrich");
  expect("pipeline", K::started, "store");

  out << "\n3. flaky/worker crashes three times. flaky allows 2 restarts a minute: at the "
         "third it stops and escalates to root, which starts flaky again (one_for_one: ingest "
         "and pipeline carry on).\n";
  for (int i = 1; i <= 3; ++i) {
    kill("flaky/worker");
    if (i < 3)
      expect("flaky", K::started, "worker");
  }
  expect("flaky", K::escalated, "");
  expect("root", K::started, "flaky");
  expect("flaky", K::started, "worker");

  out << "\n4. Shutting the tree down: each supervisor stops its children newest first.\n";
  log.mark();
  caf::anon_send_exit(*top, caf::exit_reason::user_shutdown);
  expect("root", K::stopped, "");

  out << "\n" << log.count(K::started) << " starts, " << log.count(K::exited) << " exits, "
      << log.count(K::escalated) << " escalation"
      << (failures == 0 ? "; every step happened as described.\n"
                        : "; " + std::to_string(failures) + " step(s) did not happen.\n");
  spdlog::set_level(level);
  return failures == 0 ? 0 : 1;
}

} // namespace troupe::examples
