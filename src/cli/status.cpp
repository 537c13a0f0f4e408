// lull status [--json]: the retained scheduler/status as tables.

#include <iostream>

#include "src/cli/commands.hpp"

namespace lull::cli {

CLI::App* add_status(CLI::App& app, status_opts& o) {
  auto* status = app.add_subcommand("status", "hosts, quiet states and leases");
  status->add_flag("--json", o.as_json, "print scheduler/status as JSON");
  return status;
}

void print_status(std::ostream& out, const nlohmann::json& s) {
  out << pad("HOST", 16) << pad("STATE", 8) << pad("SCORE", 7) << pad("UNITS", 10)
      << pad("LEASES", 8) << "COOLDOWN\n";
  auto hosts = s.value("hosts", nlohmann::json::object());
  for (auto& [id, h] : hosts.items())
    out << pad(id, 16) << pad(str(h["state"]), 8) << pad(num(h["quiet_score"]), 7)
        << pad(num(h["used_units"]) + "/" + num(h["capacity_units"]), 10)
        << pad(num(h["active_leases"]), 8)
        << (h.contains("cooldown_remaining_sec") ? num(h["cooldown_remaining_sec"]) + "s"
                                                 : std::string("-"))
        << "\n";
  // Why a host gives work back now (docs/leases.md, "Giving the host back").
  for (auto& [id, h] : hosts.items()) {
    if (h.contains("paused") && h["paused"].is_object())
      out << "  " << id << ": paused by " << str(h["paused"]["by"])
          << (str(h["paused"]["reason"]) == "-" || str(h["paused"]["reason"]).empty()
                ? std::string()
                : ": " + str(h["paused"]["reason"]))
          << (h["paused"]["until"].is_string() ? " until " + str(h["paused"]["until"])
                                                : std::string(" until resumed"))
          << "\n";
    if (h.contains("window_open") && h["window_open"] == false)
      out << "  " << id << ": outside its lease windows (" << str(h["windows"]) << ")\n";
    if (h.value("online", true) == false)
      out << "  " << id << ": offline since " << str(h["offline_since"])
          << "; no new leases until it reports again\n";
    // The hold outlives the load that caused it (it ends after
    // lease.resume_after of QUIET): its reason is the one of the moment the
    // leases were suspended, and the state column is the host's state now.
    if (h.contains("load_hold"))
      out << "  " << id << ": leases suspended for the owner's load"
          << (h["load_hold_since"].is_string() ? " since " + str(h["load_hold_since"])
                                               : std::string())
          << " (then: " << str(h["load_hold"]) << "); now " << str(h["state"])
          << ", they resume once the host has been QUIET for lease.resume_after\n";
  }
  out << "\n"
      << pad("LEASE", 34) << pad("WORKER", 16) << pad("HOST", 12) << pad("UNITS", 6)
      << pad("PRIO", 7) << pad("TTL", 6) << "JOB\n";
  auto active = s.value("active", nlohmann::json::array());
  if (active.empty())
    out << "(no active leases)\n";
  for (auto& l : active)
    out << pad(str(l["lease_id"]), 34) << pad(str(l["worker_id"]), 16)
        << pad(str(l["host_id"]), 12) << pad(num(l["cost_units"]), 6)
        << pad(str(l["priority"]), 7) << pad(num(l["ttl_remaining_sec"]) + "s", 6)
        << str(l["job_type"]) << (l.value("suspended", false) ? "  [suspended]" : "") << "\n";
  if (auto total = s.value("active_total", active.size()); total > active.size())
    out << "(the " << active.size() << " newest of " << total
        << " active leases; each host's are on scheduler/host/<host>/leases)\n";
  auto workers = s.value("workers", nlohmann::json::object());
  if (!workers.empty()) {
    out << "\n" << pad("WORKER", 16) << pad("GRANTS", 8) << pad("DENIES", 8) << "LAST\n";
    for (auto& [id, w] : workers.items())
      out << pad(id, 16) << pad(num(w["grants"]), 8) << pad(num(w["denies"]), 8)
          << str(w["last_decision"]) << ": " << str(w["last_reason"]) << "\n";
  }
  out << "\n(as of " << str(s.value("updated_at", nlohmann::json())) << ")\n";
}

int do_status(const global_opts& g, const status_opts& o) {
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  auto st = client->status(call_timeout_of(g));
  if (!st) {
    call_error timed_out;
    timed_out.timed_out = true;
    std::cerr << "lull: no scheduler/status: " << describe(g, timed_out) << "\n";
    return ex_timeout;
  }
  if (o.as_json)
    std::cout << st->dump(2) << "\n";
  else
    print_status(std::cout, *st);
  return ex_ok;
}

} // namespace lull::cli
