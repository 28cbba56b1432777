// Message atoms shared by troupe's actors (CAF 0.17: at most 10 characters).
#pragma once

#include <caf/atom.hpp>

namespace troupe {

using append_atom = caf::atom_constant<caf::atom("append")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using acked_atom = caf::atom_constant<caf::atom("acked")>;
using start_atom = caf::atom_constant<caf::atom("start")>;
using run_atom = caf::atom_constant<caf::atom("run")>;
using outcome_atom = caf::atom_constant<caf::atom("outcome")>;
using usage_atom = caf::atom_constant<caf::atom("usage")>;
using timer_atom = caf::atom_constant<caf::atom("timer")>;
using signal_atom = caf::atom_constant<caf::atom("signal")>;
using await_atom = caf::atom_constant<caf::atom("await")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using settled_atom = caf::atom_constant<caf::atom("settled")>;
using ask_atom = caf::atom_constant<caf::atom("ask")>;
using reply_atom = caf::atom_constant<caf::atom("reply")>;
using history_atom = caf::atom_constant<caf::atom("history")>;
using effect_atom = caf::atom_constant<caf::atom("effect")>;
using disarm_atom = caf::atom_constant<caf::atom("disarm")>;
using wake_atom = caf::atom_constant<caf::atom("wake")>;
using purge_atom = caf::atom_constant<caf::atom("purge")>;
using recover_atom = caf::atom_constant<caf::atom("recover")>;
using resume_atom = caf::atom_constant<caf::atom("resume")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using key_atom = caf::atom_constant<caf::atom("key")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using notify_atom = caf::atom_constant<caf::atom("notify")>;
using crash_atom = caf::atom_constant<caf::atom("crash")>;

} // namespace troupe
