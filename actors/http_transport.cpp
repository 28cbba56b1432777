#include "actors/http_transport.hpp"

#include <curl/curl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "troupe/errors.hpp"

namespace troupe {

namespace {

using steady = std::chrono::steady_clock;

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

// The I/O loop is curl's event-driven interface over epoll: curl tells us
// which sockets to watch (on_socket) and when to call it back (on_timer),
// and only the sockets that are ready are handed to curl. The simpler
// curl_multi_perform walks every transfer on every wake-up, which at 10,000
// in flight cost more than the requests themselves.
struct http_transport::impl {
  explicit impl(std::atomic<size_t>& in_flight) : in_flight(in_flight) {
    global_init();
    epoll = epoll_create1(EPOLL_CLOEXEC);
    wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll < 0 || wake < 0)
      throw std::runtime_error("http transport: cannot create epoll or eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake;
    epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &ev);
    multi = curl_multi_init();
    // Keep idle connections for reuse: enough for many hosts and lanes.
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 1024L);
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    io = std::thread{[this] { run(); }};
  }

  ~impl() {
    {
      std::lock_guard<std::mutex> guard{mtx};
      stopping = true;
    }
    poke();
    io.join();
    curl_multi_cleanup(multi);
    close(wake);
    close(epoll);
  }

  void poke() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = write(wake, &one, sizeof one);
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
    poke();
  }

  // curl: watch `s` for `what` (or stop watching it).
  static int on_socket(CURL*, curl_socket_t s, int what, void* user, void*) {
    auto* self = static_cast<impl*>(user);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(self->epoll, EPOLL_CTL_DEL, s, nullptr);
      self->watched.erase(s);
      return 0;
    }
    epoll_event ev{};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    ev.data.fd = s;
    // Our set and epoll's can disagree when a socket was closed and its
    // number reused: try the other operation then.
    auto op = self->watched.insert(s).second ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(self->epoll, op, s, &ev) != 0)
      epoll_ctl(self->epoll, op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    return 0;
  }

  // curl: call curl_multi_socket_action(TIMEOUT) in `ms` (-1: no timer).
  static int on_timer(CURLM*, long ms, void* user) {
    auto* self = static_cast<impl*>(user);
    self->timer_due = ms < 0 ? std::optional<steady::time_point>{}
                             : steady::now() + std::chrono::milliseconds{ms};
    return 0;
  }

  int wait_ms() const {
    if (!timer_due)
      return 1000; // nothing due: wake up now and then anyway
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*timer_due - steady::now());
    return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1000));
  }

  // The I/O thread: add new transfers, hand ready sockets and due timers to
  // curl, hand out results.
  void run() {
    std::vector<epoll_event> events(256);
    int running = 0;
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
      int n = epoll_wait(epoll, events.data(), static_cast<int>(events.size()), wait_ms());
      for (int i = 0; i < n; ++i) {
        auto fd = events[i].data.fd;
        if (fd == wake) {
          uint64_t count;
          [[maybe_unused]] auto r = read(wake, &count, sizeof count);
          continue;
        }
        int flags = (events[i].events & EPOLLIN ? CURL_CSELECT_IN : 0)
                    | (events[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0)
                    | (events[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(multi, fd, flags, &running);
      }
      if (timer_due && steady::now() >= *timer_due) {
        timer_due.reset();
        curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
      }
      collect();
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
  int epoll = -1;
  int wake = -1; ///< an eventfd: submit() and the destructor wake the loop
  std::unordered_set<curl_socket_t> watched; ///< I/O thread only
  std::optional<steady::time_point> timer_due; ///< I/O thread only
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
