// The gateway benchmark's fake model server; see bench_http_server.hpp.
#include "bench/bench_http_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <utility>
#include <vector>

namespace troupe::bench {

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* reply_body =
  R"({"id":"b","object":"chat.completion","created":1,"model":"bench","choices":[{"index":0,)"
  R"("message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],)"
  R"("usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}})";

std::string http_reply() {
  std::string body = reply_body;
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
         + std::to_string(body.size()) + "\r\nConnection: keep-alive\r\n\r\n" + body;
}

/// The length of the first complete request in `in` (headers, blank line,
/// Content-Length bytes of body), or 0 while it is incomplete.
size_t request_size(const std::string& in) {
  auto end = in.find("\r\n\r\n");
  if (end == std::string::npos)
    return 0;
  static constexpr char name[] = "content-length:";
  size_t length = 0;
  for (auto line = in.find("\r\n"); line < end; line = in.find("\r\n", line + 2))
    if (strncasecmp(in.data() + line + 2, name, sizeof name - 1) == 0)
      length = std::strtoul(in.data() + line + 2 + sizeof name - 1, nullptr, 10);
  auto total = end + 4 + length;
  return in.size() >= total ? total : 0;
}

/// Single-threaded epoll HTTP/1.1 responder: accepts on `listener`, answers
/// every request with http_reply() after `delay`, keeps connections open,
/// returns when `stop` (an eventfd) becomes readable. Both descriptors
/// stay owned by the caller.
class responder {
public:
  responder(int listener, int stop, milliseconds delay, server_stats& stats)
    : listener_(listener), stop_(stop), delay_(delay), stats_(stats) {}

  void run() {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    watch(listener_, EPOLLIN, EPOLL_CTL_ADD);
    watch(stop_, EPOLLIN, EPOLL_CTL_ADD);
    std::array<epoll_event, 512> events{};
    for (bool running = true; running;) {
      int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), wait_ms());
      if (n < 0 && errno != EINTR) {
        ++stats_.failures;
        break;
      }
      for (int i = 0; i < n; ++i) {
        int fd = events[static_cast<size_t>(i)].data.fd;
        auto ev = events[static_cast<size_t>(i)].events;
        if (fd == stop_)
          running = false;
        else if (fd == listener_)
          accept_all();
        else if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
          on_readable(fd);
        else if (ev & EPOLLOUT)
          flush(fd);
      }
      fire_due();
      stats_.cpu_ns.store(thread_cpu_ns());
    }
    for (size_t fd = 0; fd < conns_.size(); ++fd)
      if (conns_[fd])
        close(static_cast<int>(fd));
    close(epoll_);
  }

private:
  struct connection {
    uint64_t serial = 0; ///< tells a reused descriptor from the one a reply was due on
    std::string in;      ///< received bytes of requests not yet complete
    std::string out;     ///< reply bytes not yet written
    bool watching_out = false;
  };
  struct due_reply {
    steady::time_point at;
    int fd;
    uint64_t serial;
  };

  void watch(int fd, uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epoll_, op, fd, &ev);
  }

  /// epoll_wait's timeout: until the next due reply, rounded up to whole ms.
  int wait_ms() const {
    if (due_.empty())
      return -1;
    auto left = due_.front().at - steady::now();
    return static_cast<int>(std::max<int64_t>(
      0, std::chrono::ceil<milliseconds>(left).count()));
  }

  void accept_all() {
    for (;;) {
      int fd = accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED)
          continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
          ++stats_.failures; // EMFILE / ENFILE: the level's descriptor check was wrong
        return;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto slot = static_cast<size_t>(fd);
      if (conns_.size() <= slot)
        conns_.resize(slot + 1);
      conns_[slot] = std::make_unique<connection>();
      conns_[slot]->serial = next_serial_++;
      watch(fd, EPOLLIN, EPOLL_CTL_ADD);
      ++stats_.accepted;
      if (++open_ > stats_.peak_open.load())
        stats_.peak_open.store(open_);
    }
  }

  void on_readable(int fd) {
    auto& c = *conns_[static_cast<size_t>(fd)];
    std::array<char, 16384> buf;
    for (;;) {
      auto n = recv(fd, buf.data(), buf.size(), 0);
      if (n > 0) {
        c.in.append(buf.data(), static_cast<size_t>(n));
        if (static_cast<size_t>(n) < buf.size())
          break; // drained; level-triggered epoll reports anything newer
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      return close_connection(fd); // closed by the peer, or reset
    }
    while (auto size = request_size(c.in)) {
      c.in.erase(0, size);
      if (delay_.count() == 0) {
        c.out += reply_;
        ++stats_.answered;
      } else {
        due_.push_back({steady::now() + delay_, fd, c.serial});
      }
    }
    if (due_.size() > stats_.peak_pending.load())
      stats_.peak_pending.store(due_.size());
    flush(fd);
  }

  /// Writes what the connection has to say; watches for writability while
  /// the socket's buffer is full.
  void flush(int fd) {
    auto& c = *conns_[static_cast<size_t>(fd)];
    while (!c.out.empty()) {
      auto n = send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!c.watching_out)
          watch(fd, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
        c.watching_out = true;
        return;
      }
      return close_connection(fd);
    }
    if (c.watching_out)
      watch(fd, EPOLLIN, EPOLL_CTL_MOD);
    c.watching_out = false;
  }

  /// Sends every reply whose delay is over (to connections still open).
  void fire_due() {
    auto now = steady::now();
    while (!due_.empty() && due_.front().at <= now) {
      auto d = due_.front();
      due_.pop_front();
      auto slot = static_cast<size_t>(d.fd);
      if (slot < conns_.size() && conns_[slot] && conns_[slot]->serial == d.serial) {
        conns_[slot]->out += reply_;
        ++stats_.answered;
        flush(d.fd);
      }
    }
  }

  void close_connection(int fd) {
    close(fd); // also leaves the epoll set
    conns_[static_cast<size_t>(fd)].reset();
    --open_;
  }

  int listener_;
  int stop_;
  int epoll_ = -1;
  milliseconds delay_;
  server_stats& stats_;
  const std::string reply_ = http_reply();
  std::vector<std::unique_ptr<connection>> conns_; ///< by descriptor
  std::deque<due_reply> due_; ///< in `at` order: the delay is fixed
  uint64_t next_serial_ = 1;
  uint64_t open_ = 0;
};

} // namespace

int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

const char* to_string(server_mode m) {
  return m == server_mode::thread ? "thread" : "process";
}

std::unique_ptr<fake_server> fake_server::start(server_mode mode, milliseconds delay,
                                                std::string& why) {
  std::unique_ptr<fake_server> s{new fake_server};
  auto failed = [&](const char* what) {
    why = std::string{what} + ": " + std::strerror(errno);
    return nullptr;
  };
  void* mem = mmap(nullptr, sizeof(server_stats), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED)
    return failed("mmap");
  s->stats_ = new (mem) server_stats{};
  s->listener_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->listener_ < 0)
    return failed("socket");
  int one = 1;
  setsockopt(s->listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(s->listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return failed("bind");
  if (listen(s->listener_, 65535) != 0) // the kernel caps it at net.core.somaxconn
    return failed("listen");
  if (getsockname(s->listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return failed("getsockname");
  s->port_ = ntohs(addr.sin_port);
  s->stop_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->stop_ < 0)
    return failed("eventfd");
  if (mode == server_mode::thread) {
    s->thread_ = std::thread{[listener = s->listener_, stop = s->stop_, delay,
                              stats = s->stats_] {
      responder{listener, stop, delay, *stats}.run();
    }};
    return s;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  s->child_ = fork();
  if (s->child_ < 0)
    return failed("fork");
  if (s->child_ == 0) {
    responder{s->listener_, s->stop_, delay, *s->stats_}.run();
    _exit(0);
  }
  close(s->listener_); // the child accepts; a dead child then refuses connections
  s->listener_ = -1;
  return s;
}

fake_server::~fake_server() {
  if (stop_ >= 0 && (thread_.joinable() || child_ > 0)) {
    uint64_t one = 1;
    if (write(stop_, &one, sizeof one) != sizeof one)
      std::perror("fake server: eventfd write");
  }
  if (thread_.joinable())
    thread_.join();
  if (child_ > 0)
    waitpid(child_, nullptr, 0);
  for (int fd : {listener_, stop_})
    if (fd >= 0)
      close(fd);
  if (stats_) {
    stats_->~server_stats();
    munmap(stats_, sizeof(server_stats));
  }
}

} // namespace troupe::bench
