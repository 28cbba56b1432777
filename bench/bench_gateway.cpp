// Benchmark (not a test): the model gateway's own cost per request over real
// HTTP, with 1, 100 and 10,000 requests in flight, and how many threads and
// how much memory it takes to hold them.
//
// The model is a fake OpenAI-compatible server (bench_http_server.hpp): one
// thread, one epoll loop, non-blocking sockets, HTTP/1.1 keep-alive, a fixed
// chat completion as the reply, optionally held back --delay-ms per request
// (a queue of due replies checked through epoll_wait's timeout, so 10,000
// delayed requests really are in flight at once). It runs on a thread of
// this process when the open-files limit holds both ends of every
// connection (2 descriptors per request in flight); otherwise, with
// --server auto (the default), in a forked child process, each side then
// needing one descriptor per request. The "server" column says which.
//
// Per level: a fresh caf::actor_system with --threads scheduler workers, the
// (unused) scripted model, and the gateway (actors/gateway_actor.hpp) with
// one openai provider at the fake server: max_concurrent = max_queue = the
// level, request_timeout 30 s, circuit breaker off. One event-based driver
// actor sends `level` requests (caf::infinite), sends the next one as each
// answer arrives until --seconds have passed, then waits for the rest.
//
// What is measured, over the driver's span:
//   requests     answers the driver got: replies + errors;
//   wall s       from the driver's first request to its last answer;
//   latency      driver's send to the reply, replies only (mean, p50, p99);
//   cpu us/req   total = the client's CPU + the server's, per request;
//                server = the fake server thread's CPU, taken with
//                CLOCK_THREAD_CPUTIME_ID inside that thread after every
//                epoll round;
//                client = the gateway's overhead per request: this
//                process's CPU (getrusage RUSAGE_SELF, user + system, every
//                thread: CAF's workers running the driver and the gateway,
//                the curl I/O thread, idle polling) minus the server
//                thread's (thread mode; in process mode it is not in
//                RUSAGE_SELF) and minus the main thread's (it only samples
//                /proc while it waits). System time includes the kernel's
//                loopback TCP work, charged to whichever thread made the
//                call, so the client/server split is approximate;
//   threads      the most threads /proc/self/status showed while running
//                (the server's thread included in thread mode only);
//   RSS MB       before = VmRSS after the server started and before the
//                actor system was built; peak = VmHWM at the end, reset
//                through /proc/self/clear_refs before the level ("*" when
//                it could not be: then peak since the process started);
//                growth = peak - before; KB/req = growth / level. Kernel
//                socket buffers are not in RSS; the fake server's buffers
//                are in thread mode (a few hundred bytes per connection);
//   conns        connections the server accepted (equal to the level when
//                the transport reuses them all), the most open at once, and
//                the most requests it held waiting for --delay-ms at once.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/gateway_actor.hpp"
#include "actors/scripted_model_actor.hpp"
#include "bench/bench_http_server.hpp"
#include "troupe/errors.hpp"

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;
using troupe::bench::fake_server;
using troupe::bench::server_mode;
using troupe::bench::thread_cpu_ns;

struct bench_options {
  std::vector<size_t> levels = {1, 100, 10'000};
  double seconds = 2.0;
  size_t threads = 2;
  int64_t delay_ms = 0;
  std::string server = "auto"; ///< auto | thread | process
};


/// User plus system CPU time of the whole process so far, in seconds.
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return s(u.ru_utime) + s(u.ru_stime);
}

/// A numeric field of /proc/self/status ("Threads", "VmRSS" in kB); -1 if absent.
long proc_status(const std::string& key) {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0)
      return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
  return -1;
}

/// Resets VmHWM to the current RSS (Linux >= 4.0); false if not possible.
bool reset_peak_rss() {
  std::ofstream out{"/proc/self/clear_refs"};
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

/// The first line of a file, such as a sysctl under /proc/sys; "?" if unreadable.
std::string first_line(const char* path) {
  std::ifstream in{path};
  std::string line;
  if (!std::getline(in, line))
    return "?";
  std::replace(line.begin(), line.end(), '\t', ' ');
  return line;
}

/// Raises the soft open-files limit to the hard limit; returns the soft
/// limit in force afterwards.
rlim_t raise_fd_limit() {
  rlimit l{};
  getrlimit(RLIMIT_NOFILE, &l);
  if (l.rlim_cur < l.rlim_max) {
    rlimit want = l;
    want.rlim_cur = l.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0)
      l = want;
  }
  return l.rlim_cur;
}

// -- the driver actor ----------------------------------------------------------

struct driver_result {
  uint64_t replies = 0;
  uint64_t errors = 0;
  std::string first_error;
  std::vector<int64_t> latency_ns; ///< of the replies
  double wall_s = 0;
};

struct driver_state {
  caf::actor gateway;
  troupe::llm_request req;
  size_t concurrency = 0;
  std::chrono::duration<double> span{};
  steady::time_point began;
  steady::time_point stop_at;
  size_t in_flight = 0;
  driver_result out;
  std::shared_ptr<std::promise<driver_result>> done;
};

using driver_ptr = caf::stateful_actor<driver_state>*;

void ask_one(driver_ptr self);

/// One answer: counts it, then asks again until the time is up; the last
/// answer after that hands the result over and ends the driver.
void answered(driver_ptr self, steady::time_point sent, const caf::error* err) {
  auto& st = self->state;
  auto now = steady::now();
  --st.in_flight;
  if (err) {
    if (st.out.errors++ == 0)
      st.out.first_error = troupe::describe(*err);
  } else {
    ++st.out.replies;
    st.out.latency_ns.push_back(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent).count());
  }
  if (now < st.stop_at)
    return ask_one(self);
  if (st.in_flight > 0)
    return;
  st.out.wall_s = std::chrono::duration<double>(now - st.began).count();
  st.done->set_value(std::move(st.out));
  self->quit();
}

void ask_one(driver_ptr self) {
  auto& st = self->state;
  ++st.in_flight;
  auto sent = steady::now();
  self->request(st.gateway, caf::infinite, troupe::ask_atom::value, st.req)
    .then([self, sent](troupe::llm_reply&) { answered(self, sent, nullptr); },
          [self, sent](caf::error& err) { answered(self, sent, &err); });
}

/// On (start_atom): keeps `concurrency` requests in flight at `gateway`
/// for `seconds`, then delivers its counts through `done`.
caf::behavior driver(driver_ptr self, caf::actor gateway, size_t concurrency, double seconds,
                     std::shared_ptr<std::promise<driver_result>> done) {
  auto& st = self->state;
  st.gateway = std::move(gateway);
  st.concurrency = concurrency;
  st.span = std::chrono::duration<double>(seconds);
  st.done = std::move(done);
  st.req.messages = {{"user", "hello"}};
  st.req.max_tokens = 16;
  st.out.latency_ns.reserve(1 << 20);
  return {
    [self](troupe::start_atom) {
      auto& st = self->state;
      st.began = steady::now();
      st.stop_at = st.began + std::chrono::duration_cast<steady::duration>(st.span);
      for (size_t i = 0; i < st.concurrency; ++i)
        ask_one(self);
    },
  };
}

// -- one level -------------------------------------------------------------------

/// Descriptors a level needs beyond its sockets: stdio, epoll, eventfd,
/// the listener, curl's wake-up pair, a few in flight being replaced.
constexpr size_t fd_reserve = 64;

struct level_result {
  size_t concurrency = 0;
  server_mode mode = server_mode::thread;
  std::string skipped; ///< why the level did not run
  std::string error;
  driver_result drv;
  double cpu_s = 0;        ///< the process, over the driver's span
  double server_cpu_s = 0; ///< the server thread, same span
  double main_cpu_s = 0;   ///< the main thread (sampling /proc), same span
  long threads = 0;
  long rss_before_kb = 0;
  long rss_peak_kb = 0;
  bool peak_reset = false;
  uint64_t accepted = 0, peak_open = 0, peak_pending = 0, server_failures = 0;
};

/// Where the server of a level with `level` requests in flight runs, given
/// the open-files limit; nullopt (and `why`) when it cannot run at all.
std::optional<server_mode> choose_mode(const std::string& choice, size_t level, rlim_t limit,
                                       std::string& why) {
  auto in_one = 2 * level + fd_reserve;
  auto in_two = level + fd_reserve;
  if (choice != "process" && in_one <= limit)
    return server_mode::thread;
  if (choice != "thread" && in_two <= limit)
    return server_mode::process;
  auto need = choice == "process" ? in_two : in_one;
  why = "needs about " + std::to_string(need) + " open files per process, the limit is "
        + std::to_string(limit)
        + (choice == "thread" ? " (try --server process: the server in its own process)" : "");
  return std::nullopt;
}

level_result run_level(const bench_options& opt, size_t level, rlim_t fd_limit) {
  level_result r;
  r.concurrency = level;
  auto mode = choose_mode(opt.server, level, fd_limit, r.skipped);
  if (!mode)
    return r;
  r.mode = *mode;
  std::string why;
  auto server = fake_server::start(r.mode, milliseconds{opt.delay_ms}, why);
  if (!server) {
    r.error = "fake server: " + why;
    return r;
  }
  r.peak_reset = reset_peak_rss();
  r.rss_before_kb = proc_status("VmRSS");
  {
    caf::actor_system_config sys_cfg;
    sys_cfg.set("scheduler.max-threads", static_cast<caf::config_value::integer>(opt.threads));
    caf::actor_system sys{sys_cfg};
    auto scripted = troupe::spawn_scripted_model(sys, troupe::scripted_model_config{});
    troupe::provider_config p;
    p.name = "bench";
    p.protocol = troupe::wire_protocol::openai;
    p.base_url = "http://127.0.0.1:" + std::to_string(server->port()) + "/v1";
    p.model = "bench";
    p.request_timeout = std::chrono::seconds{30};
    p.max_concurrent = level;
    p.max_queue = level;
    p.breaker.consecutive_failures = 0;
    p.breaker.window = 0;
    troupe::gateway_config gw_cfg;
    gw_cfg.providers.push_back(p);
    auto gateway = troupe::spawn_gateway(sys, {gw_cfg, scripted, nullptr});
    if (!gateway) {
      r.error = "spawn_gateway: " + troupe::describe(gateway.error());
      caf::anon_send_exit(scripted, caf::exit_reason::user_shutdown);
      return r;
    }
    auto done = std::make_shared<std::promise<driver_result>>();
    auto result = done->get_future();
    auto drv = sys.spawn(driver, *gateway, level, opt.seconds, done);
    auto cpu0 = process_cpu_s();
    auto server0 = server->stats().cpu_ns.load();
    auto main0 = thread_cpu_ns();
    caf::anon_send(drv, troupe::start_atom::value);
    do
      r.threads = std::max(r.threads, proc_status("Threads"));
    while (result.wait_for(milliseconds{50}) != std::future_status::ready);
    r.drv = result.get();
    r.cpu_s = process_cpu_s() - cpu0;
    r.server_cpu_s = static_cast<double>(server->stats().cpu_ns.load() - server0) / 1e9;
    r.main_cpu_s = static_cast<double>(thread_cpu_ns() - main0) / 1e9;
    r.rss_peak_kb = proc_status("VmHWM");
    for (auto& a : {*gateway, scripted})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  } // the actor system waits for its actors; the gateway's transport closes its connections
  auto& st = server->stats();
  r.accepted = st.accepted.load();
  r.peak_open = st.peak_open.load();
  r.peak_pending = st.peak_pending.load();
  r.server_failures = st.failures.load();
  return r;
}

struct spread {
  double mean = 0, p50 = 0, p99 = 0;
};

/// Mean, p50 and p99 of `v` in milliseconds (v is reordered).
spread spread_of(std::vector<int64_t>& v) {
  spread s;
  if (v.empty())
    return s;
  double sum = 0;
  for (auto x : v)
    sum += static_cast<double>(x);
  s.mean = sum / static_cast<double>(v.size()) / 1e6;
  auto at = [&](double q) {
    auto k = static_cast<size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return static_cast<double>(v[k]) / 1e6;
  };
  s.p50 = at(0.50);
  s.p99 = at(0.99);
  return s;
}

void print_row(const level_result& r) {
  if (!r.skipped.empty()) {
    std::printf("%11zu  skipped: %s\n", r.concurrency, r.skipped.c_str());
    return;
  }
  if (r.drv.replies + r.drv.errors == 0 && !r.error.empty()) {
    std::printf("%11zu  error: %s\n", r.concurrency, r.error.c_str());
    return;
  }
  auto requests = r.drv.replies + r.drv.errors;
  auto n = static_cast<double>(std::max<uint64_t>(requests, 1));
  auto lat = r.drv.latency_ns;
  auto l = spread_of(lat);
  // RUSAGE_SELF holds the server thread only when it is a thread of ours
  auto client_s = r.cpu_s - r.main_cpu_s - (r.mode == server_mode::thread ? r.server_cpu_s : 0);
  auto growth_kb = std::max(r.rss_peak_kb - r.rss_before_kb, 0L);
  std::printf("%11zu %7s %9llu %6llu %6.2f %9.0f | %8.2f %8.2f %8.2f | %7.1f %7.1f %7.1f | %7ld | "
              "%6.1f %6.1f%1s %6.1f %7.1f | %7llu %7llu %7llu\n",
              r.concurrency, to_string(r.mode), static_cast<unsigned long long>(requests),
              static_cast<unsigned long long>(r.drv.errors), r.drv.wall_s,
              r.drv.wall_s > 0 ? static_cast<double>(requests) / r.drv.wall_s : 0.0, l.mean,
              l.p50, l.p99, (client_s + r.server_cpu_s) * 1e6 / n, r.server_cpu_s * 1e6 / n,
              client_s * 1e6 / n, r.threads, static_cast<double>(r.rss_before_kb) / 1024,
              static_cast<double>(r.rss_peak_kb) / 1024, r.peak_reset ? "" : "*",
              static_cast<double>(growth_kb) / 1024,
              static_cast<double>(growth_kb) / static_cast<double>(r.concurrency),
              static_cast<unsigned long long>(r.accepted),
              static_cast<unsigned long long>(r.peak_open),
              static_cast<unsigned long long>(r.peak_pending));
  if (r.drv.errors > 0)
    std::printf("  first error: %s\n", r.drv.first_error.c_str());
  if (r.server_failures > 0)
    std::printf("  the fake server failed %llu times (accept out of descriptors, or epoll)\n",
                static_cast<unsigned long long>(r.server_failures));
  if (!r.error.empty())
    std::printf("  error: %s\n", r.error.c_str());
}

} // namespace

int main(int argc, char** argv) {
  bench_options opt;
  CLI::App app{"troupe_bench_gateway: the model gateway's cost per request over HTTP, against "
               "an in-process fake OpenAI server"};
  app.add_option("--levels", opt.levels, "Requests in flight, one run each")
      ->delimiter(',')
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}))
      ->capture_default_str();
  app.add_option("--seconds", opt.seconds, "How long each level keeps its requests in flight")
      ->check(CLI::Range(0.01, 600.0))
      ->capture_default_str();
  app.add_option("--threads", opt.threads, "CAF scheduler worker threads")
      ->check(CLI::Range(size_t{1}, size_t{256}))
      ->capture_default_str();
  app.add_option("--delay-ms", opt.delay_ms, "The fake server holds every reply this long")
      ->check(CLI::Range(int64_t{0}, int64_t{60'000}))
      ->capture_default_str();
  app.add_option("--server", opt.server,
                 "Where the fake server runs: thread (of this process), process (a forked "
                 "child), auto (a thread when the open-files limit holds both ends)")
      ->check(CLI::IsMember({"auto", "thread", "process"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::string cmd;
  for (int i = 0; i < argc; ++i)
    cmd += (i > 0 ? " " : "") + std::string{argv[i]};
  auto fd_limit = raise_fd_limit();
  std::printf("troupe_bench_gateway: one openai provider at a fake epoll HTTP/1.1 server on "
              "127.0.0.1 (reply delay %lld ms), %zu CAF scheduler threads, %.2f s per level\n",
              static_cast<long long>(opt.delay_ms), opt.threads, opt.seconds);
  std::printf("open files limit %llu (soft raised to hard), net.core.somaxconn %s, "
              "ip_local_port_range %s, %u cores\n",
              static_cast<unsigned long long>(fd_limit),
              first_line("/proc/sys/net/core/somaxconn").c_str(),
              first_line("/proc/sys/net/ipv4/ip_local_port_range").c_str(),
              std::thread::hardware_concurrency());
  std::printf("command: %s\n\n", cmd.c_str());
  std::printf("%11s %7s %9s %6s %6s %9s | %26s | %23s | %7s | %29s | %23s\n", "", "", "", "", "",
              "", "latency ms", "cpu us/req", "", "RSS MB", "server conns");
  std::printf("%11s %7s %9s %6s %6s %9s | %8s %8s %8s | %7s %7s %7s | %7s | %6s %7s %6s %7s | "
              "%7s %7s %7s\n",
              "concurrency", "server", "requests", "errors", "wall s", "req/s", "mean", "p50",
              "p99", "total", "server", "client", "threads", "before", "peak", "growth",
              "KB/req", "accept", "open", "pending");
  std::fflush(stdout);

  int rc = 0;
  for (auto level : opt.levels) {
    auto r = run_level(opt, level, fd_limit);
    print_row(r);
    if (!r.error.empty() || r.drv.errors > 0 || r.server_failures > 0)
      rc = 1;
    std::fflush(stdout);
  }
  std::printf(
    "\nrequests = answers in the span (replies + errors); wall = first request to last answer "
    "(the last --seconds' requests drain); latency = the driver's send to the reply.\n"
    "cpu us/req: server = the fake server thread (CLOCK_THREAD_CPUTIME_ID); client = the "
    "gateway's overhead: this process's CPU (getrusage, every thread: CAF workers with the "
    "driver and the gateway, the curl I/O thread, idle polling) minus the server thread's "
    "(when it is ours) and the main thread's /proc sampling; total = client + server.\n"
    "threads = the most /proc/self/status showed during the run (the server's included when "
    "server = thread). RSS: before = VmRSS with the server up and no actor system; peak = "
    "VmHWM after the run (* = could not be reset, peak since start); KB/req = growth per "
    "request in flight. server conns: connections accepted, most open at once, most requests "
    "held for the delay at once.\n");
  return rc;
}
