// The fake model server (what it serves: see the header). cpp-httplib runs
// the HTTP side: one listening thread, a pool of 64 workers so that dozens
// of held replies can wait at once, one request per connection. Every
// handler records its request, takes the next scripted response and renders
// it in the protocol of its path; faults are rendered here too.
//
// Two things httplib 0.11.4 does not offer are done around it:
//   1. A listen backlog wider than its fixed 5 (http_server below).
//   2. Dropping a connection without a response, for fault::reset
//      (reset_connection below).
#include "support/fake_model_server.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace troupe::testing {

namespace {

// Fields in the order the providers document them, which makes a captured
// body easy to compare with their docs.
using json = nlohmann::ordered_json;

enum class protocol : uint8_t {
  openai,    ///< POST /v1/chat/completions
  anthropic, ///< POST /v1/messages
};

constexpr size_t worker_threads = 64;
constexpr int listen_backlog = 128;
constexpr int64_t created_at = 1700000000; ///< every reply's "created"

// -- rendering ------------------------------------------------------------

bool is_success(int status) {
  return status >= 200 && status < 300;
}

// The "model" the request names, or "fake-model" when it names none.
std::string requested_model(const std::string& body) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("model") && j["model"].is_string())
    return j["model"].get<std::string>();
  return "fake-model";
}

std::string anthropic_stop_reason(const std::string& finish_reason) {
  if (finish_reason == "stop")
    return "end_turn";
  if (finish_reason == "length")
    return "max_tokens";
  return finish_reason;
}

std::string anthropic_error_type(int status) {
  if (status == 529)
    return "overloaded_error";
  if (status == 429)
    return "rate_limit_error";
  if (status == 401)
    return "authentication_error";
  if (status >= 400 && status < 500)
    return "invalid_request_error";
  return "api_error";
}

json openai_error(int status, const std::string& message) {
  bool client_error = status >= 400 && status < 500;
  return {{"error",
           {{"message", message},
            {"type", client_error ? "invalid_request_error" : "server_error"},
            {"param", nullptr},
            {"code", nullptr}}}};
}

// The success body for request number `seq` (1-based, in arrival order).
std::string success_body(protocol p, const fake_response& r, size_t seq,
                         const std::string& model) {
  auto n = std::to_string(seq);
  if (p == protocol::openai)
    return json{{"id", "chatcmpl-fake-" + n},
                {"object", "chat.completion"},
                {"created", created_at},
                {"model", model},
                {"choices",
                 json::array({{{"index", 0},
                               {"message", {{"role", "assistant"}, {"content", r.text}}},
                               {"finish_reason", r.finish_reason}}})},
                {"usage",
                 {{"prompt_tokens", r.prompt_tokens},
                  {"completion_tokens", r.completion_tokens},
                  {"total_tokens", r.prompt_tokens + r.completion_tokens}}}}
        .dump();
  return json{{"id", "msg_fake_" + n},
              {"type", "message"},
              {"role", "assistant"},
              {"model", model},
              {"content", json::array({{{"type", "text"}, {"text", r.text}}})},
              {"stop_reason", anthropic_stop_reason(r.finish_reason)},
              {"stop_sequence", nullptr},
              {"usage", {{"input_tokens", r.prompt_tokens}, {"output_tokens", r.completion_tokens}}}}
      .dump();
}

std::string error_body(protocol p, const fake_response& r) {
  if (p == protocol::openai)
    return openai_error(r.status, r.error_message).dump();
  return json{{"type", "error"},
              {"error", {{"type", anthropic_error_type(r.status)}, {"message", r.error_message}}}}
      .dump();
}

// -- the connection -------------------------------------------------------

int port_of(int (*name_of)(int, sockaddr*, socklen_t*), int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (name_of(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.sin_family != AF_INET)
    return -1;
  return ntohs(addr.sin_port);
}

// The descriptor of this process's socket from `local_port` to
// `remote_port` (both on 127.0.0.1), or -1.
int socket_between(int local_port, int remote_port) {
  std::unique_ptr<DIR, int (*)(DIR*)> fds{opendir("/proc/self/fd"), closedir};
  if (!fds)
    return -1;
  while (auto* entry = readdir(fds.get())) {
    if (!std::isdigit(static_cast<unsigned char>(entry->d_name[0])))
      continue;
    int fd = std::atoi(entry->d_name);
    if (port_of(getsockname, fd) == local_port && port_of(getpeername, fd) == remote_port)
      return fd;
  }
  return -1;
}

// Drops the connection `req` arrived on with a TCP reset, before any byte
// of a response has been sent. httplib 0.11.4 gives a handler no handle on
// its connection, so this finds the socket among the process's descriptors
// by its two ports (a connection's pair is unique) and puts /dev/null in its
// place with dup2: the socket's last descriptor closes at once, and with
// SO_LINGER 0 that sends RST. httplib then writes its reply to /dev/null
// with send(), which fails (not a socket), and closes the descriptor, which
// stayed its own throughout. Runs on the connection's worker thread, the
// only thread that touches the descriptor.
void reset_connection(int server_port, const httplib::Request& req) {
  int fd = socket_between(server_port, req.remote_port);
  if (fd < 0)
    throw std::runtime_error("fake_model_server: cannot find the socket to reset");
  linger abort_on_close{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0 || dup2(null, fd) < 0)
    throw std::runtime_error("fake_model_server: cannot reset the connection");
  close(null);
}

// Headers as the client sent them, names lower-cased. httplib adds the
// peer's and its own address as pseudo-headers; those are left out.
std::map<std::string, std::string> client_headers(const httplib::Headers& headers) {
  std::map<std::string, std::string> out;
  for (const auto& [name, value] : headers) {
    auto lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == "remote_addr" || lower == "remote_port" || lower == "local_addr"
        || lower == "local_port")
      continue;
    auto [it, fresh] = out.emplace(lower, value);
    if (!fresh)
      it->second += ", " + value; // a repeated header, folded as HTTP allows
  }
  return out;
}

/// httplib::Server, listening with a wider backlog: 0.11.4 listens with a
/// fixed backlog of 5, and dozens of clients connecting at once would
/// overflow it and wait a second for their SYN to be sent again.
class http_server : public httplib::Server {
public:
  /// Call after binding, before clients connect.
  void widen_backlog(int backlog) { ::listen(svr_sock_, backlog); }
};

} // namespace

struct fake_model_server::impl {
  http_server http;
  std::thread listener;
  std::atomic<bool> listen_returned{false};
  int port = -1;

  // Guarded by `mutex`; `changed` signals a request's arrival and release().
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::deque<fake_response> queue;
  fake_response fallback;
  std::vector<received_request> requests;
  bool released = false;

  /// Records `req` and wakes wait_for(); returns its number (1-based) and,
  /// when `scripted`, the response it takes from the queue or the default.
  std::pair<size_t, fake_response> arrive(const httplib::Request& req, bool scripted) {
    std::lock_guard lock{mutex};
    requests.push_back({req.path, client_headers(req.headers), req.body});
    changed.notify_all();
    fake_response r = fallback;
    if (scripted && !queue.empty()) {
      r = std::move(queue.front());
      queue.pop_front();
    }
    return {requests.size(), std::move(r)};
  }

  void wait_until_released() {
    std::unique_lock lock{mutex};
    changed.wait(lock, [this] { return released; });
  }

  /// Answers a request on a protocol's path. The faults other than none
  /// ignore r.status: malformed, truncated and cut_off answer 200.
  void serve(protocol p, const httplib::Request& req, httplib::Response& res) {
    auto [seq, r] = arrive(req, true);
    if (r.hold)
      wait_until_released();
    if (!r.retry_after.empty())
      res.set_header("Retry-After", r.retry_after);
    auto model = r.model.empty() ? requested_model(req.body) : r.model;
    switch (r.kind) {
    case fake_response::fault::none:
      res.status = r.status;
      res.set_content(is_success(r.status) ? success_body(p, r, seq, model) : error_body(p, r),
                      "application/json");
      return;
    case fake_response::fault::malformed:
      res.status = 200;
      res.set_content("{not json", "application/json");
      return;
    case fake_response::fault::truncated: {
      auto body = success_body(p, r, seq, model);
      body.resize(body.size() / 2);
      res.status = 200;
      res.set_content(body, "application/json");
      return;
    }
    case fake_response::fault::cut_off: {
      // Content-Length announces the whole body; the provider sends half
      // and fails, and httplib closes the connection.
      auto body = success_body(p, r, seq, model);
      res.status = 200;
      res.set_content_provider(body.size(), "application/json",
                               [body](size_t, size_t, httplib::DataSink& sink) {
                                 sink.write(body.data(), body.size() / 2);
                                 return false;
                               });
      return;
    }
    case fake_response::fault::reset:
      reset_connection(port, req);
      return;
    }
  }

  void not_found(const httplib::Request& req, httplib::Response& res) {
    arrive(req, false);
    res.status = 404;
    res.set_content(openai_error(404, "no such path: " + req.method + " " + req.path).dump(),
                    "application/json");
  }
};

fake_model_server::fake_model_server() : impl_{std::make_unique<impl>()} {
  auto& http = impl_->http;
  http.new_task_queue = [] { return new httplib::ThreadPool(worker_threads); };
  // One request per connection: no idle keep-alive connection keeps a
  // worker (and so the destructor) waiting, and no client retries a
  // request on a reused connection that a fault dropped.
  http.set_keep_alive_max_count(1);
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    impl_->serve(protocol::openai, req, res);
  });
  http.Post("/v1/messages", [this](const httplib::Request& req, httplib::Response& res) {
    impl_->serve(protocol::anthropic, req, res);
  });
  auto not_found = [this](const httplib::Request& req, httplib::Response& res) {
    impl_->not_found(req, res);
  };
  http.Get(".*", not_found);
  http.Post(".*", not_found);
  http.Put(".*", not_found);
  http.Delete(".*", not_found);

  impl_->port = http.bind_to_any_port("127.0.0.1");
  if (impl_->port < 0)
    throw std::runtime_error("fake_model_server: cannot bind 127.0.0.1");
  http.widen_backlog(listen_backlog);
  impl_->listener = std::thread{[this] {
    impl_->http.listen_after_bind();
    impl_->listen_returned = true;
  }};
  // stop() does nothing until the listener runs, so wait for it (0.11.4 has
  // no wait_until_ready()); this takes as long as starting a thread.
  while (!http.is_running() && !impl_->listen_returned)
    std::this_thread::yield();
  if (!http.is_running()) {
    impl_->listener.join();
    throw std::runtime_error("fake_model_server: cannot listen on 127.0.0.1");
  }
}

fake_model_server::~fake_model_server() {
  release();
  impl_->http.stop();
  impl_->listener.join();
}

int fake_model_server::port() const {
  return impl_->port;
}

std::string fake_model_server::base_url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port) + "/v1";
}

void fake_model_server::push(fake_response r, size_t times) {
  std::lock_guard lock{impl_->mutex};
  for (size_t i = 0; i < times; ++i)
    impl_->queue.push_back(r);
}

void fake_model_server::set_default(fake_response r) {
  std::lock_guard lock{impl_->mutex};
  impl_->fallback = std::move(r);
}

std::vector<received_request> fake_model_server::received() const {
  std::lock_guard lock{impl_->mutex};
  return impl_->requests;
}

size_t fake_model_server::count() const {
  std::lock_guard lock{impl_->mutex};
  return impl_->requests.size();
}

bool fake_model_server::wait_for(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock{impl_->mutex};
  return impl_->changed.wait_for(lock, timeout, [&] { return impl_->requests.size() >= n; });
}

void fake_model_server::release() {
  std::lock_guard lock{impl_->mutex};
  impl_->released = true;
  impl_->changed.notify_all();
}

} // namespace troupe::testing
