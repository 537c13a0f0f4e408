// lull history [--group G] [--host H] [--range R] [--step S]: sparklines of a
// host's (or its quiet score's, a process's, the bus's) history.

#include <algorithm>
#include <iostream>

#include "src/cli/commands.hpp"

namespace lull::cli {

CLI::App* add_history(CLI::App& app, history_opts& ho) {
  auto* history = app.add_subcommand("history", "history of a host, its quiet score, ...");
  history->add_option("--group", ho.group, "host, quiet, process:<name>, bus, worker:<id>")
    ->capture_default_str();
  history->add_option("--host", ho.host, "host id (default: lulld's own)");
  history->add_option("--range", ho.range, "how far back (e.g. 1h, 7d)")->capture_default_str();
  history->add_option("--step", ho.step, "bucket size (e.g. 10s, 5m)")->capture_default_str();
  history->add_option("--metric", ho.metrics, "only these metrics (repeatable)");
  history->add_flag("--json", ho.as_json, "print the reply as JSON");
  return history;
}

void print_history(std::ostream& out, const nlohmann::json& reply, const history_opts& o) {
  nlohmann::json j = reply;
  out << str(j["group"]) << " of " << str(j["host"]) << ", last " << o.range << " in "
      << o.step << " steps from " << str(j["start_utc"]) << " (" << str(j["source"]) << ")\n\n";
  if (!j["series"].is_object() || j["series"].empty()) {
    out << "(no data)\n";
    return;
  }
  std::size_t width = 8;
  for (auto& [name, s] : j["series"].items())
    width = std::max(width, name.size() + 2);
  for (auto& [name, s] : j["series"].items()) {
    double mn = 1e300, mx = -1e300, sum = 0;
    int n = 0;
    nlohmann::json last;
    for (std::size_t i = 0; i < s["avg"].size(); ++i) {
      auto& a = s["avg"][i];
      if (!a.is_number() || !s["min"][i].is_number() || !s["max"][i].is_number())
        continue;
      mn = std::min(mn, s["min"][i].get<double>());
      mx = std::max(mx, s["max"][i].get<double>());
      sum += a.get<double>();
      ++n;
      last = a;
    }
    out << pad(name, width) << sparkline(s["avg"]);
    if (n > 0)
      out << "  min " << num(mn, 1) << "  avg " << num(sum / n, 1) << "  max " << num(mx, 1)
          << "  last " << num(last, 1);
    out << "\n";
  }
}

int do_history(const global_opts& g, const history_opts& o) {
  nlohmann::json body = {{"kind", "history"}, {"group", o.group}, {"range", o.range},
                         {"step", o.step}};
  if (!o.host.empty())
    body["host"] = o.host;
  if (!o.metrics.empty())
    body["metrics"] = o.metrics;
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  auto r = client->call(client->topic("history/request"), body, call_timeout_of(g));
  if (auto* e = std::get_if<call_error>(&r))
    return report_error("history", *e);
  auto& j = std::get<nlohmann::json>(r);
  if (o.as_json)
    std::cout << j.dump(2) << "\n";
  else
    print_history(std::cout, j, o);
  return ex_ok;
}

} // namespace lull::cli
