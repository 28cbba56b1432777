// The timer service (see the header).
#include "actors/timer_service.hpp"

#include <map>
#include <unordered_map>

#include <caf/all.hpp>

#include "actors/atoms.hpp"

namespace troupe {

namespace {

struct owner_timer {
  caf::actor_addr owner;
  uint64_t id = 0;
  bool operator==(const owner_timer& o) const { return id == o.id && owner == o.owner; }
};

struct owner_timer_hash {
  size_t operator()(const owner_timer& t) const {
    return std::hash<caf::actor_addr>{}(t.owner) ^ (t.id * 0x9e3779b97f4a7c15ULL);
  }
};

struct timer_state {
  std::shared_ptr<clock_source> clock;
  std::multimap<int64_t, owner_timer> due;
  std::unordered_map<owner_timer, std::multimap<int64_t, owner_timer>::iterator,
                     owner_timer_hash>
    armed;
  int64_t wake_armed = 0; ///< earliest wake-up message in flight (0: none)
  static inline const char* name = "troupe.timers";
};

using self_ptr = caf::stateful_actor<timer_state>*;

int64_t now_ns(self_ptr self) {
  if (auto& c = self->state.clock)
    return c->now().count();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           self->clock().now().time_since_epoch())
    .count();
}

void disarm(self_ptr self, const owner_timer& key) {
  auto& st = self->state;
  if (auto i = st.armed.find(key); i != st.armed.end()) {
    st.due.erase(i->second);
    st.armed.erase(i);
  }
}

// Asks CAF's clock for a wake-up at the earliest timer, unless one that
// early is on its way.
void arm_wakeup(self_ptr self) {
  auto& st = self->state;
  if (st.due.empty())
    return;
  auto first = st.due.begin()->first;
  if (st.wake_armed != 0 && st.wake_armed <= first)
    return;
  st.wake_armed = first;
  auto delay = std::chrono::nanoseconds{first - now_ns(self)};
  if (delay <= std::chrono::nanoseconds::zero())
    self->send(self, wake_atom::value, first);
  else
    self->delayed_send(self, delay, wake_atom::value, first);
}

caf::behavior timer_service(self_ptr self, std::shared_ptr<clock_source> clock) {
  self->state.clock = std::move(clock);
  return {
    [self](timer_atom, uint64_t id, int64_t fire_at) {
      auto& st = self->state;
      owner_timer key{self->current_sender() ? self->current_sender()->address()
                                             : caf::actor_addr{},
                      id};
      disarm(self, key);
      st.armed.emplace(key, st.due.emplace(fire_at, key));
      arm_wakeup(self);
    },
    [self](disarm_atom, uint64_t id) {
      disarm(self, {self->current_sender() ? self->current_sender()->address()
                                           : caf::actor_addr{},
                    id});
    },
    [self](wake_atom, int64_t armed_for) {
      auto& st = self->state;
      auto now = now_ns(self);
      // a wake-up still in flight for an instant now past was delayed by a
      // clock jump (runtime::clock_changed): ask for a new one below
      if (armed_for == st.wake_armed || st.wake_armed <= now)
        st.wake_armed = 0;
      while (!st.due.empty() && st.due.begin()->first <= now) {
        auto key = st.due.begin()->second;
        st.armed.erase(key);
        st.due.erase(st.due.begin());
        if (auto owner = caf::actor_cast<caf::actor>(key.owner))
          self->send(owner, timer_atom::value, key.id);
      }
      arm_wakeup(self);
    },
  };
}

} // namespace

caf::actor spawn_timer_service(caf::actor_system& sys, std::shared_ptr<clock_source> clock) {
  return sys.spawn(timer_service, std::move(clock));
}

} // namespace troupe
