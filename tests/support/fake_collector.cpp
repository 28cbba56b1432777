// The fake collector (see the header), on cpp-httplib.
#include "support/fake_collector.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <httplib.h>

namespace troupe::testing {

struct fake_collector::impl {
  httplib::Server http;
  std::thread listener;
  int port = -1;

  mutable std::mutex mutex;
  mutable std::condition_variable changed; ///< a POST arrived, or release()
  std::deque<int> statuses;
  std::vector<collector_post> received;
  bool holding = false;

  void serve(const httplib::Request& req, httplib::Response& res) {
    std::unique_lock<std::mutex> lock{mutex};
    collector_post p;
    p.content_type = req.get_header_value("Content-Type");
    p.body = nlohmann::json::parse(req.body, nullptr, false);
    if (p.body.is_discarded())
      p.body = nullptr;
    if (!statuses.empty()) {
      p.status = statuses.front();
      statuses.pop_front();
    }
    received.push_back(p);
    changed.notify_all();
    changed.wait(lock, [this] { return !holding; });
    res.status = p.status;
    res.set_content("{}", "application/json");
  }
};

fake_collector::fake_collector() : impl_{std::make_unique<impl>()} {
  auto& http = impl_->http;
  http.new_task_queue = [] { return new httplib::ThreadPool(8); };
  http.set_keep_alive_max_count(1);
  http.Post("/v1/traces", [this](const httplib::Request& req, httplib::Response& res) {
    impl_->serve(req, res);
  });
  impl_->port = http.bind_to_any_port("127.0.0.1");
  if (impl_->port < 0)
    throw std::runtime_error("fake_collector: cannot bind 127.0.0.1");
  std::atomic<bool> returned{false};
  impl_->listener = std::thread{[this, &returned] {
    impl_->http.listen_after_bind();
    returned = true;
  }};
  // stop() does nothing until the listener runs (httplib 0.11.4 has no
  // wait_until_ready()): this takes as long as starting a thread
  while (!http.is_running() && !returned)
    std::this_thread::yield();
  if (!http.is_running()) {
    impl_->listener.join();
    throw std::runtime_error("fake_collector: cannot listen on 127.0.0.1");
  }
}

fake_collector::~fake_collector() {
  release();
  impl_->http.stop();
  impl_->listener.join();
}

std::string fake_collector::url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port) + "/v1/traces";
}

void fake_collector::push_status(int status, size_t times) {
  std::lock_guard<std::mutex> lock{impl_->mutex};
  for (size_t i = 0; i < times; ++i)
    impl_->statuses.push_back(status);
}

void fake_collector::hold() {
  std::lock_guard<std::mutex> lock{impl_->mutex};
  impl_->holding = true;
}

void fake_collector::release() {
  std::lock_guard<std::mutex> lock{impl_->mutex};
  impl_->holding = false;
  impl_->changed.notify_all();
}

std::vector<collector_post> fake_collector::posts() const {
  std::lock_guard<std::mutex> lock{impl_->mutex};
  return impl_->received;
}

size_t fake_collector::count() const {
  std::lock_guard<std::mutex> lock{impl_->mutex};
  return impl_->received.size();
}

bool fake_collector::wait_for(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock{impl_->mutex};
  return impl_->changed.wait_for(lock, timeout, [&] { return impl_->received.size() >= n; });
}

std::vector<nlohmann::json> fake_collector::spans() const {
  std::vector<nlohmann::json> out;
  for (const auto& p : posts()) {
    if (p.status < 200 || p.status >= 300 || !p.body.is_object())
      continue;
    for (const auto& rs : p.body.value("resourceSpans", nlohmann::json::array()))
      for (const auto& ss : rs.value("scopeSpans", nlohmann::json::array()))
        for (const auto& s : ss.value("spans", nlohmann::json::array()))
          out.push_back(s);
  }
  return out;
}

} // namespace troupe::testing
