// lull history [--group G] [--host H] [--range R] [--step S]: sparklines of a
// host's (or its quiet score's, a process's, the bus's) history, its pages
// joined (lulld's replies stay under limits.max_reply_bytes).

#include <algorithm>
#include <iostream>

#include "src/cli/commands.hpp"

namespace lull::cli {

CLI::App* add_history(CLI::App& app, history_opts& ho) {
  auto* history = app.add_subcommand("history", "history of a host, its quiet score, ...");
  history->add_option("--group", ho.group, "host, quiet, bus, process:<name> or worker:<id>")
    ->capture_default_str();
  history->add_option("--host", ho.host, "host id (default: lulld's own)");
  history->add_option("--range", ho.range, "how far back (e.g. 1h, 7d)")->capture_default_str();
  history->add_option("--step", ho.step, "bucket size (e.g. 10s, 5m)")->capture_default_str();
  history->add_option("--metric", ho.metrics, "only these metrics (repeatable)");
  history->add_flag("--json", ho.as_json, "print the reply as JSON");
  history->add_flag("--windows", ho.windows,
                    "the learned quiet windows: share of each hour of the week the host was "
                    "QUIET, as a heat map");
  history->add_option("--weeks", ho.weeks, "with --windows: weeks of history (1-52)")
    ->capture_default_str()
    ->check(CLI::Range(1, 52));
  return history;
}

void print_quiet_windows(std::ostream& out, const nlohmann::json& j) {
  // What the reply lacks reads as null: a const json's [] on a missing key
  // or index is undefined.
  static const nlohmann::json none;
  auto at = [&](const nlohmann::json& o, const char* key) -> const nlohmann::json& {
    if (!o.is_object())
      return none;
    auto it = o.find(key);
    return it == o.end() ? none : *it;
  };
  auto nth = [&](const nlohmann::json& a, std::size_t i) -> const nlohmann::json& {
    return a.is_array() && i < a.size() ? a[i] : none;
  };
  out << "quiet windows of " << str(at(j, "host")) << " (" << str(at(j, "timezone")) << "), "
      << num(at(j, "days_observed"), 1) << " days observed in the last " << num(at(j, "weeks"))
      << " weeks";
  if (!j.value("ready", false))
    out << "; under 7 days: not yet used for retry hints";
  out << "\n\n     ";
  for (int h = 0; h < 24; h += 3) {
    char buf[16]; // room for any int: -O1 builds warn otherwise
    std::snprintf(buf, sizeof buf, "%02d", h);
    out << pad(buf, 3);
  }
  out << "\n";
  // Shades from rarely (blank) to always QUIET (full); '.' never observed.
  // The cells and the legend both come from this one list.
  struct band {
    double from;
    const char* shade;
    const char* label;
  };
  static const band bands[] = {{0.8, "\u2588", ">=80%"},
                               {0.6, "\u2593", "60-80%"},
                               {0.4, "\u2592", "40-60%"},
                               {0.2, "\u2591", "20-40%"},
                               {-1e300, " ", "<20%"}};
  auto shade_of = [](double s) {
    for (auto& b : bands)
      if (s >= b.from)
        return b.shade;
    return bands[4].shade; // NaN
  };
  static const int order[] = {1, 2, 3, 4, 5, 6, 0}; // Monday first
  for (int d : order) {
    auto& row = nth(at(j, "hours"), static_cast<std::size_t>(d));
    out << pad(str(nth(at(j, "days"), static_cast<std::size_t>(d))), 5);
    for (int h = 0; h < 24; ++h) {
      auto& v = nth(row, static_cast<std::size_t>(h));
      if (!v.is_number()) {
        out << ".";
        continue;
      }
      out << shade_of(v.get<double>());
    }
    out << "\n";
  }
  // Lightest first; the blank band shown as '[ ]' so it can be seen.
  out << "\n    ";
  for (int i = 4; i >= 0; --i)
    out << " " << (i == 4 ? std::string("[ ]") : std::string(bands[i].shade)) << " "
        << bands[i].label;
  out << " QUIET  . no data\n";
  if (at(j, "next_window").is_string())
    out << "next hour QUIET at least 60% of the time: " << str(at(j, "next_window")) << "\n";
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

void append_history_page(nlohmann::json& all, const nlohmann::json& page) {
  static const char* arrays[] = {"avg", "min", "max", "p95", "n"};
  auto had = all.value("buckets", std::size_t{0});
  auto adds = page.value("buckets", std::size_t{0});
  auto empty = [](const char* a, std::size_t n) {
    return std::string(a) == "n" ? nlohmann::json(std::vector<int>(n, 0))
                                 : nlohmann::json(std::vector<std::nullptr_t>(n));
  };
  if (!all["series"].is_object())
    all["series"] = nlohmann::json::object();
  auto theirs = page.value("series", nlohmann::json::object());
  for (auto& [name, s] : theirs.items())
    if (!all["series"].contains(name)) {
      auto& mine = all["series"][name];
      for (auto* a : arrays)
        mine[a] = empty(a, had);
    }
  for (auto& [name, s] : all["series"].items())
    for (auto* a : arrays) {
      auto add = theirs.contains(name) && theirs[name].contains(a) && theirs[name][a].is_array()
                   ? theirs[name][a]
                   : empty(a, adds);
      if (!s[a].is_array())
        s[a] = empty(a, had);
      for (auto& v : add)
        s[a].push_back(v);
    }
  all["buckets"] = had + adds;
  if (page.contains("next"))
    all["next"] = page["next"];
  else
    all.erase("next");
}

std::optional<std::string> check_history_group(const std::string& group) {
  if (group == "host" || group == "quiet" || group == "bus")
    return std::nullopt;
  for (const char* named : {"process:", "worker:"})
    if (group.rfind(named, 0) == 0 && group.size() > std::string(named).size())
      return std::nullopt;
  return "--group '" + group
         + "' is not a history group; valid groups: host, quiet, bus, process:<name>, "
           "worker:<id>";
}

std::optional<std::string> unknown_host(const std::string& host, const nlohmann::json& status) {
  auto hosts = status.find("hosts");
  if (host.empty() || hosts == status.end() || !hosts->is_object() || hosts->contains(host))
    return std::nullopt;
  std::string known;
  for (auto& [id, h] : hosts->items())
    known += (known.empty() ? "" : ", ") + id;
  return "no host '" + host + "'; "
         + (known.empty() ? std::string("no host has reported yet") : "known hosts: " + known);
}

int do_history(const global_opts& g, const history_opts& o) {
  if (!o.windows)
    if (auto bad = check_history_group(o.group)) {
      std::cerr << "lull: " << *bad << "\n";
      return ex_usage;
    }
  nlohmann::json body = {{"kind", "history"}, {"group", o.group}, {"range", o.range},
                         {"step", o.step}};
  if (o.windows)
    body = {{"kind", "windows"}, {"weeks", o.weeks}};
  if (!o.host.empty())
    body["host"] = o.host;
  if (!o.metrics.empty())
    body["metrics"] = o.metrics;
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  auto topic = client->request_topic("history/request");
  auto r = client->call(topic, body, call_timeout_of(g));
  if (auto* e = std::get_if<call_error>(&r))
    return report_error(g, "history", *e);
  auto& j = std::get<nlohmann::json>(r);
  // Page after page until the range is in (at most 5,000 buckets in all).
  for (int page = 0; !o.windows && page < 5001; ++page) {
    auto next = j.value("next", nlohmann::json());
    if (!next.is_string() || next.get<std::string>().empty())
      break;
    body["cursor"] = next;
    auto more = client->call(topic, body, call_timeout_of(g));
    if (auto* e = std::get_if<call_error>(&more))
      return report_error(g, "history", *e);
    auto& p = std::get<nlohmann::json>(more);
    if (p.value("buckets", 0) == 0 || p.value("next", nlohmann::json()) == next)
      break;
    append_history_page(j, p);
  }
  // Nothing for a host named on the command line: a host lulld does not
  // know is a mistake to say, not an empty history.
  bool empty = o.windows ? !j["days_observed"].is_number() || j["days_observed"] == 0
                         : !j["series"].is_object() || j["series"].empty();
  if (empty && !o.host.empty())
    if (auto st = client->status(call_timeout_of(g)))
      if (auto unknown = unknown_host(o.host, *st)) {
        std::cerr << "lull: " << *unknown << "\n";
        return ex_failed;
      }
  if (o.as_json)
    std::cout << j.dump(2) << "\n";
  else if (o.windows)
    print_quiet_windows(std::cout, j);
  else
    print_history(std::cout, j, o);
  return ex_ok;
}

} // namespace lull::cli
