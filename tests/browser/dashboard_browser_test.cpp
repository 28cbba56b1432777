// The dashboard end to end in a real browser:
//   dashboard_browser_test <troupe> <chromium> <chromedriver>
// (run by run_browser_test.sh, which installs Chromium if missing).
//
// It starts `troupe serve` on a fresh SQLite journal (port 0, a random
// token), parks a triage workflow at its review gate through the API,
// starts chromedriver (--port=0: it prints the port it took) and drives
// headless Chromium with the W3C WebDriver protocol, plain JSON over HTTP
// (cpp-httplib): a wrong token shows the token form with the server's
// message; the right one (in the URL fragment) shows the parked workflow in
// the pending gates; clicking Approve decides the gate. Then it checks
// through the API and, after SIGTERM, in the journal itself that the
// workflow completed with a signal_received approve event by "dashboard";
// and that the page followed live (status badge, timeline, latency).
//
// Waiting: chromedriver's implicit wait finds elements as they appear;
// where a value must change (a count), the driver polls with a bound, the
// one place the tests allow it. Exit 0 = passed, 1 = failed (with the page's
// text and where chromedriver's log is).
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "support/child_process.hpp"
#include "troupe/hash.hpp"
#include "troupe/journal.hpp"

using json = nlohmann::json;
using troupe::testing::child_process;

namespace {

struct failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int checks = 0;

void check(bool ok, const std::string& what) {
  ++checks;
  if (!ok)
    throw failure(what);
}

std::string random_token() {
  std::random_device rd;
  std::string t;
  const char* hex = "0123456789abcdef";
  for (int i = 0; i < 32; ++i)
    t += hex[rd() % 16];
  return t;
}

/// A ticket the scripted analyzer rates low (the workflow parks at review)
/// or not.
std::string ticket(bool parks) {
  for (int i = 0;; ++i) {
    auto t = "Ticket #" + std::to_string(i) + " from hooli about the dashboard: pages are slow.";
    if ((troupe::fnv1a(t) % 85 < 15) == parks)
      return t;
  }
}

/// The troupe admin API.
class admin_api {
public:
  admin_api(uint16_t port, const std::string& token) : cli_("127.0.0.1", port) {
    cli_.set_read_timeout(30, 0);
    headers_ = {{"Authorization", "Bearer " + token}};
  }
  json get(const std::string& path) {
    auto r = cli_.Get(path.c_str(), headers_);
    check(r && r->status == 200, "GET " + path + " failed: "
                                   + (r ? std::to_string(r->status) + " " + r->body : "no answer"));
    return json::parse(r->body);
  }
  json post(const std::string& path, const json& body) {
    auto r = cli_.Post(path.c_str(), headers_, body.dump(), "application/json");
    check(r && r->status == 200, "POST " + path + " failed: "
                                   + (r ? std::to_string(r->status) + " " + r->body : "no answer"));
    return json::parse(r->body);
  }
  /// Long polls until workflow `id` has `status`, for 30 s at most.
  void await_status(const std::string& id, const std::string& status) {
    using namespace std::chrono;
    auto deadline = steady_clock::now() + seconds{30};
    uint64_t version = 0;
    std::string now;
    while (steady_clock::now() < deadline) {
      now = get("/api/workflows/" + id)["status"].get<std::string>();
      if (now == status)
        return;
      auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
      version = get("/api/changes?after=" + std::to_string(version) + "&wait_ms="
                    + std::to_string(std::clamp<long long>(left, 0, 20000)))["version"]
                  .get<uint64_t>();
    }
    check(false, "workflow " + id + " is " + now + " after 30 s, not " + status);
  }

private:
  httplib::Client cli_;
  httplib::Headers headers_;
};

/// A W3C WebDriver session through chromedriver.
class webdriver {
public:
  explicit webdriver(uint16_t port) : cli_("127.0.0.1", port) { cli_.set_read_timeout(90, 0); }

  void start(const std::string& chromium, const std::string& profile) {
    json caps = {{"capabilities",
                  {{"alwaysMatch",
                    {{"browserName", "chrome"},
                     {"goog:chromeOptions",
                      {{"binary", chromium},
                       {"args",
                        {"--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run", "--window-size=1400,1000",
                         "--user-data-dir=" + profile}}}}}}}}};
    auto v = call("POST", "/session", caps);
    session_ = v["sessionId"].get<std::string>();
    // Every element lookup waits up to 15 s for the element to appear.
    call("POST", path("/timeouts"), {{"implicit", 15000}});
  }
  void quit() {
    if (!session_.empty())
      call("DELETE", "/session/" + session_, nullptr);
    session_.clear();
  }
  void go(const std::string& url) { call("POST", path("/url"), {{"url", url}}); }
  std::string url() { return call("GET", path("/url"), nullptr).get<std::string>(); }
  std::string find(const std::string& css) {
    auto v = call("POST", path("/element"), {{"using", "css selector"}, {"value", css}});
    return v[element_key].get<std::string>();
  }
  std::vector<std::string> find_all(const std::string& css) {
    auto v = call("POST", path("/elements"), {{"using", "css selector"}, {"value", css}});
    std::vector<std::string> out;
    for (const auto& e : v)
      out.push_back(e[element_key].get<std::string>());
    return out;
  }
  void click(const std::string& element) {
    call("POST", path("/element/" + element + "/click"), json::object());
  }
  /// Finds and clicks `css`, again if a redraw replaced the element in
  /// between (bounded: 20 tries).
  void click_css(const std::string& css) {
    retry_stale([&] { click(find(css)); });
  }
  /// The text of `css`, found again if a redraw replaced it meanwhile.
  std::string text_css(const std::string& css) {
    std::string out;
    retry_stale([&] { out = text(find(css)); });
    return out;
  }
  std::string text(const std::string& element) {
    return call("GET", path("/element/" + element + "/text"), nullptr).get<std::string>();
  }
  void type(const std::string& element, const std::string& keys) {
    call("POST", path("/element/" + element + "/value"), {{"text", keys}});
  }
  /// The page's visible text, for a failure report.
  std::string page_text() {
    auto v = call("POST", path("/execute/sync"),
                  {{"script", "return document.body.innerText;"}, {"args", json::array()}});
    return v.is_string() ? v.get<std::string>() : v.dump();
  }
  /// Polls `css`'s text until `want` (bounded: 100 x 100 ms); the last text.
  std::string text_becomes(const std::string& css, const std::string& want) {
    std::string got;
    for (int i = 0; i < 100; ++i) {
      got = text_css(css);
      if (got == want)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
    }
    return got;
  }

private:
  template <class F>
  static void retry_stale(F f) {
    for (int i = 0;; ++i) {
      try {
        return f();
      } catch (const failure& e) {
        if (i == 20 || std::string{e.what()}.find("stale element") == std::string::npos)
          throw;
      }
    }
  }

  static constexpr const char* element_key = "element-6066-11e4-a52e-4f735466cecf";

  std::string path(const std::string& rest) const { return "/session/" + session_ + rest; }

  json call(const std::string& method, const std::string& p, const json& body) {
    httplib::Result r{nullptr, httplib::Error::Unknown};
    if (method == "GET")
      r = cli_.Get(p.c_str());
    else if (method == "DELETE")
      r = cli_.Delete(p.c_str());
    else
      r = cli_.Post(p.c_str(), body.dump(), "application/json");
    if (!r)
      throw failure("webdriver " + method + " " + p + ": no answer from chromedriver");
    auto j = json::parse(r->body, nullptr, false);
    if (r->status != 200 || j.is_discarded() || !j.contains("value"))
      throw failure("webdriver " + method + " " + p + " " + body.dump() + " -> "
                    + std::to_string(r->status) + " " + r->body.substr(0, 600));
    return j["value"];
  }

  httplib::Client cli_;
  std::string session_;
};

uint16_t port_after(const std::string& line, const std::string& marker) {
  auto at = line.find(marker);
  if (at == std::string::npos)
    throw failure("no port in: " + line);
  return static_cast<uint16_t>(std::stoul(line.substr(at + marker.size())));
}

int run(const std::string& troupe, const std::string& chromium, const std::string& chromedriver) {
  auto tmp_pattern = (std::filesystem::temp_directory_path() / "troupe-browser-XXXXXX").string();
  if (mkdtemp(tmp_pattern.data()) == nullptr)
    throw failure("mkdtemp failed");
  const std::string dir = tmp_pattern;
  struct cleanup {
    std::string dir;
    ~cleanup() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } remove_dir{dir};
  const auto token = random_token();
  const auto journal = dir + "/journal.db";

  // -- troupe serve, with a workflow parked at review ---------------------------
  child_process serve{{troupe, "serve", "--journal", journal, "--listen", "127.0.0.1:0"},
                      {"TROUPE_ADMIN_TOKEN=" + token}};
  std::string serve_out;
  auto line = serve.read_until("dashboard and API on", serve_out);
  check(!line.empty(), "troupe serve did not start:\n" + serve_out);
  auto port = port_after(line, "http://127.0.0.1:");
  const auto base = "http://127.0.0.1:" + std::to_string(port) + "/";
  admin_api api{port, token};
  auto done = api.post("/api/workflows", {{"definition", "triage"},
                                          {"input", {{"ticket", ticket(false)}}}})["id"]
                .get<std::string>();
  auto id = api.post("/api/workflows", {{"definition", "triage"},
                                        {"input", {{"ticket", ticket(true)}}}})["id"]
              .get<std::string>();
  api.await_status(done, "completed");
  api.await_status(id, "parked");

  // -- chromedriver and a headless Chromium --------------------------------------
  // Its own process group: whatever happens, the destructor kills it and
  // the browser it started.
  child_process driver{{chromedriver, "--port=0"}, {}, dir + "/chromedriver.log", true};
  std::string driver_out;
  line = driver.read_until("was started successfully on port", driver_out);
  check(!line.empty(), "chromedriver did not start:\n" + driver_out);
  webdriver wd{port_after(line, "on port ")};
  wd.start(chromium, dir + "/profile");
  try {
    // A wrong token: the token form, with the server's reason.
    wd.go(base + "#token=not-the-token");
    check(wd.text_becomes("#login-error", "the bearer token is wrong")
            == "the bearer token is wrong",
          "a wrong token does not show the server's message in the token form");
    check(wd.url().find("token=") == std::string::npos, "the token stays in the URL");

    // The right token, typed into the form: the dashboard.
    wd.type(wd.find("[data-testid='token-input']"), token);
    wd.click_css("[data-testid='token-submit']");
    auto gate_button = "button[data-testid='gate-approve'][data-workflow='" + id + "']";
    check(wd.text_css(gate_button) == "Approve", "the gate's button does not say Approve");
    wd.find("#live.on"); // the long poll is answering
    wd.find("tr[data-testid='workflow-row'][data-workflow='" + id + "'] .s-parked");
    check(wd.text_becomes("[data-testid='count-parked'] .v", "1") == "1",
          "the parked count is not 1");

    // Approve in the page.
    wd.click_css(gate_button);
    api.await_status(id, "completed");
    auto history = api.get("/api/workflows/" + id + "/history");
    int approvals = 0;
    for (const auto& e : history["events"])
      if (e["kind"] == "signal_received" && e["data"]["decision"] == "approve"
          && e["data"]["gate"] == "review" && e["data"]["by"] == "dashboard")
        ++approvals;
    check(approvals == 1, "the history has no signal_received approve by dashboard: "
                            + history["events"].dump());

    // The page follows live: the gate leaves, the status turns, the timeline.
    wd.find("tr[data-testid='workflow-row'][data-workflow='" + id + "'] .s-completed");
    check(wd.text_becomes("[data-testid='count-completed'] .v", "2") == "2",
          "the completed count did not become 2");
    check(wd.text_becomes("#gates-n", "").empty(), "the pending gate is still listed");
    wd.click_css("tr[data-testid='workflow-row'][data-workflow='" + id + "'] a");
    wd.find("#detail-id");
    check(wd.text_becomes("#detail-id", id) == id, "the detail does not show the workflow");
    wd.find("#timeline tr[data-testid='attempt-row']");
    // extract, analyze (low confidence), analyze again after the approval, report
    auto attempts = wd.find_all("#timeline tr[data-testid='attempt-row']");
    check(attempts.size() == 4, "the timeline has " + std::to_string(attempts.size())
                                  + " attempts, not 4");
    // the runtime's histogram: percentiles from its buckets, a bar per bucket
    const std::string analyzer = "[data-testid='latency-agent'][data-agent='analyzer']";
    wd.find(analyzer);
    auto latency = wd.text_css(analyzer + " [data-testid='latency-summary']");
    check(latency.find(" timed (") != std::string::npos && latency.find("p99") != std::string::npos,
          "the analyzer's latency reads '" + latency + "'");
    check(wd.find_all(analyzer + " .hist div").size() >= 4, "the analyzer's histogram has no bars");
    wd.find("[data-testid='lane-row'] .b-closed");
  } catch (const failure&) {
    std::cerr << "-- page text --\n";
    try {
      std::cerr << wd.page_text() << '\n';
    } catch (const std::exception& e) {
      std::cerr << "(cannot read the page: " << e.what() << ")\n";
    }
    std::cerr << "-- chromedriver log: " << dir << "/chromedriver.log (kept) --\n";
    remove_dir.dir = dir + "/profile";
    try {
      wd.quit(); // closes the browser; the driver's group is killed anyway
    } catch (const std::exception&) {
    }
    throw;
  }
  wd.quit();
  driver.signal(SIGTERM);
  driver.wait();

  // -- the journal, after troupe serve stopped -------------------------------------
  serve.signal(SIGTERM);
  check(!serve.read_until("stopped", serve_out).empty(), "serve did not stop:\n" + serve_out);
  check(serve.wait() == 0, "serve did not exit 0");
  troupe::sqlite_journal_options jo;
  jo.path = journal;
  auto store = troupe::open_sqlite_journal(jo);
  check(static_cast<bool>(store), "the journal cannot be opened after serve");
  auto row = (*store)->workflow(id);
  check(row && row->status == "completed", "the journal's row is not completed");
  auto events = (*store)->read(id);
  bool approved = false;
  for (const auto& e : *events)
    approved = approved
               || (e.kind == "signal_received"
                   && json::parse(e.payload)["decision"] == "approve");
  check(approved, "the journal has no signal_received approve event");
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: dashboard_browser_test <troupe> <chromium> <chromedriver>\n";
    return 2;
  }
  auto t0 = std::chrono::steady_clock::now();
  try {
    run(argv[1], argv[2], argv[3]);
  } catch (const std::exception& e) {
    std::cerr << "dashboard_browser: FAILED after " << checks << " checks: " << e.what() << '\n';
    return 1;
  }
  auto s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "dashboard_browser: passed " << checks << " checks in " << s << " s\n";
  return 0;
}
