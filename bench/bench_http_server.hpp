// The gateway benchmark's fake model server (bench_gateway.cpp): a
// single-threaded epoll HTTP/1.1 responder on 127.0.0.1 that answers every
// request, whatever its path, with one fixed OpenAI chat completion, after
// an optional fixed delay. Non-blocking sockets, keep-alive, the body framed
// by Content-Length; delayed replies wait in a queue checked through
// epoll_wait's timeout, so thousands of them really are in flight at once.
//
// It runs in one of two modes (server_mode): on a thread of this process,
// which then holds both ends of every connection, or in a forked child
// process, each side then holding one. It reports server_stats: its own
// CPU time, requests answered, connections accepted, the most open and the
// most replies held back at once, and its failures.
//
// Not a general server: no routing, no chunked bodies, no request parsing
// beyond finding where each request ends.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

namespace troupe::bench {

/// CPU time the calling thread has used so far (CLOCK_THREAD_CPUTIME_ID), in ns.
int64_t thread_cpu_ns();

/// What the server reports. Written only by the server's thread, read by
/// the benchmark at any time; lock-free atomics, so it also works in
/// memory shared with a child process.
struct server_stats {
  std::atomic<int64_t> cpu_ns{0}; ///< the server thread's CPU time so far
  std::atomic<uint64_t> answered{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> peak_open{0};    ///< connections open at once
  std::atomic<uint64_t> peak_pending{0}; ///< requests waiting for their delay at once
  std::atomic<uint64_t> failures{0};     ///< failed accepts (out of descriptors) or epoll
};
static_assert(std::atomic<int64_t>::is_always_lock_free
                && std::atomic<uint64_t>::is_always_lock_free,
              "server_stats is shared with a child process");

/// Where the responder runs.
enum class server_mode {
  thread,  ///< a thread of this process; needs 2 descriptors per connection here
  process, ///< a forked child; needs 1 descriptor per connection on each side
};

/// "thread" or "process".
const char* to_string(server_mode m);

/// The fake server of one benchmark level: a listening socket on 127.0.0.1
/// (an ephemeral port) and a responder on its own thread or in a forked
/// child. Process mode must be started while this process has a single
/// thread. The destructor stops the responder and waits for it. Owned and
/// destroyed by the thread that started it; stats() may be read meanwhile.
class fake_server {
public:
  /// Starts a server that holds every reply back by `delay`. Null and `why`
  /// set when it cannot start.
  static std::unique_ptr<fake_server> start(server_mode mode, std::chrono::milliseconds delay,
                                            std::string& why);

  ~fake_server();

  fake_server(const fake_server&) = delete;
  fake_server& operator=(const fake_server&) = delete;

  /// The port it listens on, on 127.0.0.1.
  uint16_t port() const { return port_; }

  /// Live counters; valid as long as this object.
  const server_stats& stats() const { return *stats_; }

private:
  fake_server() = default;

  int listener_ = -1;
  int stop_ = -1;
  uint16_t port_ = 0;
  server_stats* stats_ = nullptr; ///< in shared memory: the child writes it in process mode
  std::thread thread_;
  pid_t child_ = -1;
};

} // namespace troupe::bench
