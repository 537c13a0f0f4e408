#include "actors/service_notifier.hpp"

#include <memory>

#include "actors/atoms.hpp"
#include "messages/util.hpp"
#include "src/log.hpp"
#include "src/service/status.hpp"

namespace lull {

namespace {

struct service_notifier_state {
  std::unique_ptr<service_status> status;
  bool ready = false;      ///< READY=1 sent
  bool asking = false;     ///< a round trip is under way
  std::uint64_t round = 0; ///< the round trip under way, to tell a late answer
  static inline const char* name = "service_notifier";
};

using self_ptr = caf::stateful_actor<service_notifier_state>*;

caf::behavior notifier_impl(self_ptr self, caf::actor bridge, caf::actor leases,
                            service_notifier_options opts) {
  if (!opts.wall_clock)
    opts.wall_clock = [] { return unix_seconds_now(); };
  auto& st = self->state;
  st.status
    = std::make_unique<service_status>(opts.broker, static_cast<bool>(leases), opts.wall_clock());
  self->send(bridge, online_atom::value, caf::actor{self});
  self->send(bridge, offline_atom::value, caf::actor{self});
  self->send(self, tick_atom::value);

  auto status_line = [self, opts] { return self->state.status->line(opts.wall_clock()); };
  // Only after READY=1: a STATUS before it would be the only thing
  // `systemctl status` shows of a start that then fails.
  auto tell_status = [self, opts, status_line] {
    if (self->state.ready)
      opts.notify("STATUS=" + status_line());
  };
  auto answered = [self, opts, status_line](std::uint64_t round) {
    auto& s = self->state;
    if (round != s.round)
      return;
    s.asking = false;
    if (!s.ready) {
      s.ready = true;
      log::info("service notifier: lulld is ready; told its service manager{}",
                opts.watchdog
                  ? " (watchdog pings every " + std::to_string(opts.interval.count()) + " ms)"
                  : "");
      opts.notify("READY=1\nSTATUS=" + status_line());
    } else {
      opts.notify(std::string(opts.watchdog ? "WATCHDOG=1\n" : "") + "STATUS=" + status_line());
    }
  };
  auto unanswered = [self, opts](std::uint64_t round, const char* who, const caf::error& err) {
    auto& s = self->state;
    if (round != s.round)
      return;
    s.asking = false;
    log::warn("service notifier: the {} did not answer within {} ms ({}); {}", who,
              (opts.interval * 9 / 10).count(), to_string(err),
              opts.watchdog ? "no watchdog ping until it does" : "status not refreshed");
  };
  return {
    [=](tick_atom) {
      auto& s = self->state;
      self->delayed_send(self, opts.interval, tick_atom::value);
      if (s.asking)
        return; // still waiting: its answer or its timeout ends it
      s.asking = true;
      auto round = ++s.round;
      // Both answers within the interval, so a round ends (answered or
      // not) before the next tick starts another.
      auto timeout = opts.interval * 9 / 10;
      self->request<caf::message_priority::high>(bridge, timeout, stats_atom::value)
        .then(
          [=](std::uint64_t, std::uint64_t, std::uint64_t, bool connected) {
            self->state.status->connection(connected, opts.wall_clock());
            if (!leases) {
              answered(round);
              return;
            }
            self->request<caf::message_priority::high>(leases, timeout, alive_atom::value)
              .then(
                [=](std::uint64_t hosts, std::uint64_t active, std::uint64_t queued) {
                  self->state.status->counts(hosts, active, queued);
                  answered(round);
                },
                [=](caf::error& err) { unanswered(round, "lease manager", err); });
          },
          [=](caf::error& err) { unanswered(round, "mqtt bridge", err); });
    },
    [=](online_atom) {
      self->state.status->connection(true, opts.wall_clock());
      tell_status();
    },
    [=](offline_atom) {
      self->state.status->connection(false, opts.wall_clock());
      tell_status();
    },
  };
}

} // namespace

caf::actor spawn_service_notifier(caf::actor_system& sys, caf::actor bridge, caf::actor leases,
                                  service_notifier_options opts) {
  return sys.spawn(notifier_impl, std::move(bridge), std::move(leases), std::move(opts));
}

} // namespace lull
