#include "actors/http_transport.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "troupe/errors.hpp"

namespace troupe {

namespace {

// One request on its way: owns everything curl points into.
struct transfer {
  gateway::http_request req;
  gateway::http_response resp;
  std::chrono::milliseconds timeout{0};
  http_transport::callback done;
  curl_slist* headers = nullptr;
  CURL* easy = nullptr;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  static_cast<transfer*>(user)->resp.body.append(data, size * n);
  return size * n;
}

// Header lines, one per call; a new status line (a redirect, a 100
// Continue) starts the set over.
size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto& t = *static_cast<transfer*>(user);
  std::string line{data, size * n};
  if (line.rfind("HTTP/", 0) == 0) {
    t.resp.headers.clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon == std::string::npos)
    return size * n;
  auto name = line.substr(0, colon);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto value = line.substr(colon + 1);
  auto first = value.find_first_not_of(" \t");
  auto last = value.find_last_not_of(" \t\r\n");
  t.resp.headers[name] = first == std::string::npos ? "" : value.substr(first, last - first + 1);
  return size * n;
}

std::string without_query(const std::string& url) {
  return url.substr(0, url.find('?'));
}

// The one place curl's result codes become troupe errors.
caf::error translate(CURLcode rc, const transfer& t) {
  auto what = std::string{curl_easy_strerror(rc)} + " (" + without_query(t.req.url) + ")";
  if (rc == CURLE_OPERATION_TIMEDOUT)
    return make_error(errc::llm_timeout, "no complete reply within "
                                           + std::to_string(t.timeout.count()) + " ms: " + what);
  return make_error(errc::llm_unavailable, what);
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

} // namespace

struct http_transport::impl {
  explicit impl(std::atomic<size_t>& in_flight) : in_flight(in_flight) {
    global_init();
    multi = curl_multi_init();
    // Keep idle connections for reuse: enough for many hosts and lanes.
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 1024L);
    io = std::thread{[this] { run(); }};
  }

  ~impl() {
    {
      std::lock_guard<std::mutex> guard{mtx};
      stopping = true;
    }
    curl_multi_wakeup(multi);
    io.join();
    curl_multi_cleanup(multi);
  }

  void submit(std::unique_ptr<transfer> t) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (!stopping)
        incoming.push_back(std::move(t)); // leaves t empty
    }
    if (t) {
      finish(std::move(t), make_error(errc::shutting_down, "the HTTP transport has stopped"));
      return;
    }
    curl_multi_wakeup(multi);
  }

  // The I/O thread: add new transfers, let curl work, hand out results.
  void run() {
    for (;;) {
      std::vector<std::unique_ptr<transfer>> fresh;
      bool stop;
      {
        std::lock_guard<std::mutex> guard{mtx};
        fresh.swap(incoming);
        stop = stopping;
      }
      for (auto& t : fresh)
        start(std::move(t));
      if (stop)
        break;
      int running = 0;
      curl_multi_perform(multi, &running);
      collect();
      curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
    }
    // Stopping: everything still in flight ends now.
    for (auto& [easy, t] : active) {
      curl_multi_remove_handle(multi, easy);
      finish(std::move(t), make_error(errc::shutting_down, "the HTTP transport has stopped"));
    }
    active.clear();
  }

  void start(std::unique_ptr<transfer> t) {
    auto* easy = curl_easy_init();
    if (!easy) {
      finish(std::move(t), make_error(errc::llm_unavailable, "curl_easy_init failed"));
      return;
    }
    t->easy = easy;
    for (auto& [name, value] : t->req.headers)
      t->headers = curl_slist_append(t->headers, (name + ": " + value).c_str());
    // No "Expect: 100-continue" round trip for large bodies.
    t->headers = curl_slist_append(t->headers, "Expect:");
    curl_easy_setopt(easy, CURLOPT_URL, t->req.url.c_str());
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, t->req.body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->req.body.size()));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(t->timeout.count()));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, ""); // whatever curl can decode
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t.get());
    if (auto rc = curl_multi_add_handle(multi, easy); rc != CURLM_OK) {
      finish(std::move(t), make_error(errc::llm_unavailable,
                                      std::string{"curl_multi_add_handle: "}
                                        + curl_multi_strerror(rc)));
      return;
    }
    active.emplace(easy, std::move(t));
  }

  void collect() {
    int left = 0;
    while (auto* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE)
        continue;
      auto* easy = msg->easy_handle;
      auto rc = msg->data.result;
      curl_multi_remove_handle(multi, easy);
      auto i = active.find(easy);
      if (i == active.end())
        continue;
      auto t = std::move(i->second);
      active.erase(i);
      if (rc != CURLE_OK) {
        auto err = translate(rc, *t);
        finish(std::move(t), std::move(err));
        continue;
      }
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      t->resp.status = status;
      auto resp = std::move(t->resp);
      finish(std::move(t), std::move(resp));
    }
  }

  void finish(std::unique_ptr<transfer> t, caf::expected<gateway::http_response> result) {
    if (t->easy)
      curl_easy_cleanup(t->easy);
    if (t->headers)
      curl_slist_free_all(t->headers);
    auto done = std::move(t->done);
    t.reset();
    --in_flight;
    done(std::move(result));
  }

  std::atomic<size_t>& in_flight;
  CURLM* multi = nullptr;
  std::mutex mtx;
  bool stopping = false;
  std::vector<std::unique_ptr<transfer>> incoming;           ///< guarded by mtx
  std::unordered_map<CURL*, std::unique_ptr<transfer>> active; ///< I/O thread only
  std::thread io;
};

http_transport::http_transport() : impl_(std::make_unique<impl>(in_flight_)) {
}

http_transport::~http_transport() = default;

void http_transport::submit(gateway::http_request req, std::chrono::milliseconds timeout,
                            callback done) {
  auto t = std::make_unique<transfer>();
  t->req = std::move(req);
  t->timeout = timeout;
  t->done = std::move(done);
  ++in_flight_;
  impl_->submit(std::move(t));
}

} // namespace troupe
