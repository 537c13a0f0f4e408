#pragma once
/// The local seat sessions as systemd-logind tells them over the system bus
/// (sd-bus): the owner-presence probe's first source (src/probe/presence.hpp).

#include "src/probe/presence.hpp"

namespace lull::service {

/// A source that asks logind (org.freedesktop.login1) for its sessions and,
/// for each on a seat, its Active, IdleHint, IdleSinceHint and LockedHint.
/// It keeps one bus connection, opened again after a failure at most once
/// a minute; without a system bus (a container, a minimal host) it answers
/// nullopt with the reason, quickly.
logind_source logind_over_dbus();

} // namespace lull::service
