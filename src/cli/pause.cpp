// lull pause [--host H] [--for 2h] --reason TEXT, lull resume [--host H]: the
// owner takes a host back. The pause is kept retained on
// scheduler/control/<host> (admin only under the secure config); lulld
// suspends the host's leases and denies new ones until it is lifted or runs
// out, and confirms by showing it in scheduler/status.

#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <iostream>

#include "src/cli/commands.hpp"
#include "messages/util.hpp"
#include "src/config.hpp"
#include "src/lease/lease_table.hpp"

namespace lull::cli {

namespace {

std::string login_name() {
  if (auto* u = std::getenv("USER"); u != nullptr && *u != '\0')
    return u;
  if (auto* pw = ::getpwuid(::geteuid()))
    return pw->pw_name;
  return "someone";
}

/// Publishes the host's control state and waits until lulld's status shows it.
int set_pause(const global_opts& g, const std::string& host, const std::optional<host_pause>& p) {
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  client->publish("scheduler/control/" + host, lull::to_json(host, p), true);
  auto shown = client->status_where(
    [&](const nlohmann::json& s) {
      auto h = s.find("hosts");
      if (h == s.end() || !h->is_object() || !h->contains(host))
        return false;
      auto& paused = (*h)[host]["paused"];
      return p ? paused.is_object() && paused.value("by", "") == p->by
                   && paused.value("reason", "") == p->reason
               : paused.is_null();
    },
    call_timeout_of(g));
  if (!shown) {
    std::cerr << "lull: lulld did not show the change for host " << host << " within "
              << fmt(g.timeout_sec)
              << "s (is lulld running and has the host reported? under the secure broker "
                 "config only the admin may pause hosts); the retained request stays on "
                 "scheduler/control/"
              << host << "\n";
    return ex_tempfail;
  }
  auto& h = (*shown)["hosts"][host];
  if (p)
    std::cout << "host " << host << " paused by " << p->by
              << (p->reason.empty() ? "" : ": " + p->reason)
              << (p->until ? " until " + utc_timestamp(*p->until) : std::string(" until resumed"))
              << "; " << h.value("suspended_leases", 0) << " lease(s) suspended\n";
  else
    std::cout << "host " << host << " resumed; " << h.value("suspended_leases", 0)
              << " lease(s) still suspended for other reasons\n";
  return ex_ok;
}

} // namespace

CLI::App* add_pause(CLI::App& app, pause_opts& o) {
  auto* sub = app.add_subcommand(
    "pause", "pause a host: suspend its leases and deny new ones until resumed (admin)");
  sub->add_option("--host", o.host, "the host (default: this one)");
  sub->add_option("--for", o.for_text, "end the pause by itself after this long (2h, 30m)");
  sub->add_option("--reason", o.reason, "why (shown in every denial)")->required();
  sub->add_option("--by", o.by, "who pauses it (default: your login name)");
  return sub;
}

int do_pause(const global_opts& g, const pause_opts& o) {
  auto host = o.host.empty() ? default_worker_id() : o.host;
  if (!valid_id(host)) {
    std::cerr << "lull: --host '" << host << "' is not a host id ([A-Za-z0-9_-], 1-64)\n";
    return ex_usage;
  }
  host_pause p;
  p.by = o.by.empty() ? login_name() : o.by;
  p.reason = o.reason;
  p.since = unix_seconds_now();
  if (!o.for_text.empty()) {
    auto d = parse_duration_sec(o.for_text);
    if (!d || *d < 1 || *d > 366 * 86400) {
      std::cerr << "lull: --for '" << o.for_text
                << "': expected a duration between 1s and 366d such as 30m or 2h\n";
      return ex_usage;
    }
    p.until = p.since + static_cast<std::int64_t>(std::ceil(*d));
  }
  return set_pause(g, host, p);
}

CLI::App* add_resume(CLI::App& app, resume_opts& o) {
  auto* sub = app.add_subcommand("resume", "lift a host's pause (admin)");
  sub->add_option("--host", o.host, "the host (default: this one)");
  return sub;
}

int do_resume(const global_opts& g, const resume_opts& o) {
  auto host = o.host.empty() ? default_worker_id() : o.host;
  if (!valid_id(host)) {
    std::cerr << "lull: --host '" << host << "' is not a host id ([A-Za-z0-9_-], 1-64)\n";
    return ex_usage;
  }
  return set_pause(g, host, std::nullopt);
}

} // namespace lull::cli
