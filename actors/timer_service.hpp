// The timer service: one actor that keeps every workflow's step and retry
// timers, so arming and cancelling one is a message instead of an entry in
// CAF's clock. CAF 0.17's clock cannot cancel, wakes its own thread on every
// entry and holds a strong reference to the receiver until the entry fires;
// this service keeps a weak reference, drops cancelled timers at once and
// asks CAF's clock for one wake-up at its earliest timer only.
//
// Protocol (the sender is the owner of the timer):
//   (timer_atom, uint64_t id, int64_t fire_at_ns)  arms timer `id` of the
//       sender (replacing one with that id); at fire_at the service sends
//       (timer_atom, id) back, if the sender still lives.
//   (disarm_atom, uint64_t id)                     cancels it, if armed.
//   (wake_atom, int64_t 0)                         from anyone: fires every timer
//       due by the clock now (runtime::clock_changed, after a clock jump).
// Time is the clock_source's (null: the actor clock, as the workflow uses).
#pragma once

#include <memory>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "troupe/seams.hpp"

namespace troupe {

caf::actor spawn_timer_service(caf::actor_system& sys, std::shared_ptr<clock_source> clock);

} // namespace troupe
