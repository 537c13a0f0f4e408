#pragma once
/// Atoms of the collectors, the quiet assessor and Home Assistant discovery
/// (kept apart from atoms.hpp so each domain adds its own without touching
/// the others'). Atom text is at most 10 characters (CAF 0.17).

#include <caf/all.hpp>

#include "actors/atoms.hpp"

namespace lull {

/// (bus_atom) -> std::string: the bridge's bus stats report (JSON) for the
/// interval since the previous one.
using bus_atom = caf::atom_constant<caf::atom("bus")>;
/// (handled_atom, double latency_sec, bool ok): a handler tells the bridge how
/// long handling an inbound message took and whether it was accepted.
using handled_atom = caf::atom_constant<caf::atom("handled")>;
/// Self-addressed ticks of the slower collectors.
using dir_tick_atom = caf::atom_constant<caf::atom("dir_tick")>;
using stale_atom = caf::atom_constant<caf::atom("stale")>;
using announce_atom = caf::atom_constant<caf::atom("announce")>;
/// Home Assistant discovery: announce the scheduler's device again (its
/// host switches changed).
using sched_dev_atom = caf::atom_constant<caf::atom("sched_dev")>;

} // namespace lull
