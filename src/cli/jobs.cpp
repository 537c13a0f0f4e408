// lull jobs [--state S | --dead] [--type T] [--by-worker W]: the job queue as a table,
// page after page (lulld's replies stay under limits.max_reply_bytes).

#include <iostream>

#include "src/cli/commands.hpp"

namespace lull::cli {

CLI::App* add_jobs(CLI::App& app, jobs_opts& jo) {
  auto* jobs = app.add_subcommand("jobs", "list jobs");
  auto* state = jobs->add_option(
    "--state", jo.state, "queued, leased, running, succeeded, dead, cancelled, expired");
  jobs->add_flag("--dead", jo.dead, "the jobs that failed every attempt, with their last error")
    ->excludes(state);
  jobs->add_option("--type", jo.type, "job type");
  jobs->add_option("--by-worker", jo.worker, "jobs of this worker");
  jobs->add_option("--limit", jo.limit, "at most this many (all pages up to it)")
    ->capture_default_str();
  jobs->add_flag("--json", jo.as_json, "print the reply as JSON");
  return jobs;
}

void print_jobs(std::ostream& out, const nlohmann::json& reply, bool errors) {
  auto jobs = reply.value("jobs", nlohmann::json::array());
  std::vector<std::vector<std::string>> rows;
  for (auto& job : jobs) {
    rows.push_back({str(job["job_id"]), str(job["job_type"]), str(job["state"]),
                    str(job["priority"]), num(job["cost_units"]),
                    num(job["attempts"]) + "/" + num(job["max_attempts"]),
                    str(job["worker_id"]), str(job["updated_at"])});
    if (errors)
      rows.back().push_back(str(job["error"]));
  }
  // Ids are never cut (lull cancel and lull retry take them); types,
  // workers and errors past their width end in "…" (--json has them whole).
  std::vector<std::string> head = {"JOB", "TYPE", "STATE", "PRIO", "UNITS", "TRY", "WORKER",
                                   "UPDATED"};
  std::vector<std::size_t> widths = {0, 24, 0, 0, 0, 0, 24, 0};
  if (errors) {
    head.push_back("LAST ERROR");
    widths.push_back(48);
  }
  out << format_table(head, rows, widths);
  if (jobs.empty())
    out << "(no jobs)\n";
  else if (reply.contains("next"))
    out << "(the first " << jobs.size() << " jobs; --limit lists more)\n";
  out << "\nqueued: ";
  auto depths = reply.value("depths", nlohmann::json::object());
  for (auto& [prio, n] : depths.items())
    out << prio << "=" << num(n) << " ";
  out << "\n";
}

std::variant<nlohmann::json, call_error>
follow_pages(nlohmann::json body, const std::string& field, std::size_t max_items,
             const std::function<std::variant<nlohmann::json, call_error>(const nlohmann::json&)>&
               call) {
  nlohmann::json items = nlohmann::json::array();
  nlohmann::json last;
  std::string cursor;
  // Bounded even against a lulld whose cursor went in circles.
  for (int page = 0; page < 100000; ++page) {
    body["limit"] = std::min<std::size_t>(max_items - items.size(), 1000);
    if (!cursor.empty())
      body["cursor"] = cursor;
    auto r = call(body);
    if (std::holds_alternative<call_error>(r))
      return r;
    last = std::move(std::get<nlohmann::json>(r));
    if (last.contains(field) && last[field].is_array())
      for (auto& x : last[field]) {
        if (items.size() >= max_items)
          break;
        items.push_back(std::move(x));
      }
    auto next = last.value("next", nlohmann::json());
    if (!next.is_string() || next.get<std::string>().empty() || next == cursor
        || items.size() >= max_items || !last.contains(field) || last[field].empty())
      break;
    cursor = next.get<std::string>();
  }
  last[field] = std::move(items);
  return last;
}

int do_jobs(const global_opts& g, const jobs_opts& o) {
  nlohmann::json body = nlohmann::json::object();
  if (!o.state.empty())
    body["state"] = o.state;
  if (o.dead)
    body["state"] = "dead";
  if (!o.type.empty())
    body["job_type"] = o.type;
  if (!o.worker.empty())
    body["worker"] = o.worker;
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  auto topic = client->request_topic("scheduler/job/list");
  auto r = follow_pages(body, "jobs", o.limit > 0 ? static_cast<std::size_t>(o.limit) : 100,
                        [&](const nlohmann::json& page) {
                          return client->call(topic, page, call_timeout_of(g));
                        });
  if (auto* e = std::get_if<call_error>(&r))
    return report_error(g, "listing jobs", *e);
  auto& j = std::get<nlohmann::json>(r);
  if (o.as_json)
    std::cout << j.dump(2) << "\n";
  else
    print_jobs(std::cout, j, o.dead);
  return ex_ok;
}

} // namespace lull::cli
