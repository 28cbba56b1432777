// `troupe serve` (see serve.hpp).
#include "serve.hpp"
#include "cli.hpp"

#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <ostream>
#include <string>

#include "troupe/admin.hpp"
#include "troupe/errors.hpp"
#include "troupe/journal.hpp"
#include "troupe/runtime.hpp"

#include "triage/triage.hpp"

namespace troupe::cli {

namespace {

/// The variable the admin token comes from.
constexpr const char* token_variable = "TROUPE_ADMIN_TOKEN";

/// A step may take this long: the scripted model answers at once, so only
/// a badly overloaded machine gets near it.
constexpr std::chrono::milliseconds step_timeout{5000};

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts)
/// until destroyed, so that wait() can take them with sigwait().
class signal_block {
public:
  signal_block() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~signal_block() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  signal_block(const signal_block&) = delete;
  signal_block& operator=(const signal_block&) = delete;
  /// Waits for SIGINT or SIGTERM; its name.
  const char* wait() {
    int sig = 0;
    sigwait(&set_, &sig);
    return sig == SIGINT ? "SIGINT" : "SIGTERM";
  }

private:
  sigset_t set_;
  sigset_t old_;
};

} // namespace

std::vector<std::string> serve_example_names() {
  return {"triage"};
}

caf::error register_serve_example(runtime& rt, const std::string& name) {
  if (name == "triage")
    return examples::register_triage(rt, step_timeout);
  return make_error(errc::invalid_config, "no such example (known: triage)");
}

std::string parse_listen(const std::string& text, std::string& host, uint16_t& port) {
  auto bad = [&](const std::string& why) {
    return "expected HOST:PORT like 127.0.0.1:8080 (" + why + "), got '" + text + "'";
  };
  auto colon = text.rfind(':');
  if (colon == std::string::npos)
    return bad("no port");
  auto h = text.substr(0, colon);
  auto p = text.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  else if (h.find(':') != std::string::npos)
    return bad("write an IPv6 address in brackets, [::1]:8080");
  if (h.empty())
    return bad("no host");
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos
      || std::stoul(p) > 65535)
    return bad("the port must be a whole number from 0 to 65535");
  host = h;
  port = static_cast<uint16_t>(std::stoul(p));
  return {};
}

int serve(serve_options opt, std::ostream& out, std::ostream& err) {
  if (opt.token.empty()) {
    const char* env = std::getenv(token_variable);
    opt.token = env != nullptr ? env : "";
  }
  if (opt.token.empty()) {
    err << "troupe serve: " << token_variable << " is not set: export it with a secret token "
        << "(every API call must send it as 'Authorization: Bearer <token>')\n";
    return exit_usage;
  }
  std::unique_ptr<signal_block> signals;
  if (!opt.wait) // before any thread starts: they all inherit the mask
    signals = std::make_unique<signal_block>();

  sqlite_journal_options jo;
  jo.path = opt.journal;
  auto journal = open_sqlite_journal(jo);
  if (!journal) {
    err << "troupe serve: " << describe(journal.error()) << '\n';
    return exit_failed;
  }
  examples::triage_options to;
  to.fail_rate = to.timeout_rate = to.malformed_rate = 0; // a server, not a fault demo
  to.threads = opt.threads;
  auto cfg = examples::triage_config(to);
  cfg.journal = *journal;
  std::unique_ptr<runtime> rt;
  try {
    rt = std::make_unique<runtime>(std::move(cfg));
  } catch (const std::invalid_argument& e) {
    err << "troupe serve: " << e.what() << '\n';
    return exit_failed;
  }
  for (const auto& name : opt.examples) {
    if (auto failed = register_serve_example(*rt, name)) {
      err << "troupe serve: example " << name << ": " << describe(failed) << '\n';
      return exit_failed;
    }
  }
  auto recovered = rt->recover();
  if (!recovered) {
    err << "troupe serve: recovering " << opt.journal << ": " << describe(recovered.error())
        << '\n';
    return exit_failed;
  }
  out << "troupe serve: journal " << opt.journal << ": " << recovered->resumed << " resumed, "
      << recovered->parked << " parked at a gate, " << recovered->quarantined.size()
      << " quarantined\n";
  for (const auto& q : recovered->quarantined)
    out << "  quarantined " << q << '\n';

  admin_config ac;
  ac.bind_address = opt.host;
  ac.port = opt.port;
  ac.token = opt.token;
  ac.metrics = [&rt = *rt] { return rt.metrics_text(); };
  auto server = admin_server::start(*rt, std::move(ac));
  if (!server) {
    err << "troupe serve: " << describe(server.error()) << '\n';
    return exit_failed;
  }
  std::string examples_list;
  for (const auto& name : opt.examples)
    examples_list += (examples_list.empty() ? "" : ", ") + name;
  auto url = (*server)->url();
  out << "troupe serve: examples " << examples_list << '\n'
      << "troupe serve: dashboard and API on " << url << " (open " << url << "#token=<"
      << token_variable << ">)\n"
      << "troupe serve: stop with Ctrl-C or SIGTERM" << std::endl;
  if (opt.wait) {
    opt.wait(url);
  } else {
    auto sig = signals->wait();
    out << "troupe serve: " << sig << ": stopping" << std::endl;
  }
  (*server)->stop();
  rt->shutdown();
  out << "troupe serve: stopped" << std::endl;
  return exit_ok;
}

} // namespace troupe::cli
