// lull cancel JOB_ID [--reason TEXT]: a queued job is dropped, a running one's
// lease revoked. lull retry JOB_ID [--reason TEXT]: a dead job goes back to
// the queue with its attempts anew.

#include <iostream>

#include "src/cli/commands.hpp"

namespace lull::cli {

CLI::App* add_cancel(CLI::App& app, cancel_opts& o) {
  auto* cancel = app.add_subcommand("cancel", "cancel a job (its lease is revoked)");
  cancel->add_option("job_id", o.job_id, "the job id")->required();
  cancel->add_option("--reason", o.reason, "why");
  return cancel;
}

int do_cancel(const global_opts& g, const cancel_opts& o) {
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  nlohmann::json body = nlohmann::json::object();
  if (!o.reason.empty())
    body["reason"] = o.reason;
  auto r = client->call(client->request_topic("scheduler/job/" + o.job_id + "/cancel"), body,
                        call_timeout_of(g));
  if (auto* e = std::get_if<call_error>(&r))
    return report_error(g, "cancel", *e);
  std::cout << "job " << o.job_id << " cancelled\n";
  return ex_ok;
}

CLI::App* add_retry(CLI::App& app, retry_opts& o) {
  auto* retry = app.add_subcommand("retry", "queue a dead job again, its attempts anew");
  retry->add_option("job_id", o.job_id, "the job id")->required();
  retry->add_option("--reason", o.reason, "why");
  return retry;
}

int do_retry(const global_opts& g, const retry_opts& o) {
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  nlohmann::json body = nlohmann::json::object();
  if (!o.reason.empty())
    body["reason"] = o.reason;
  auto r = client->call(client->request_topic("scheduler/job/" + o.job_id + "/retry"), body,
                        call_timeout_of(g));
  if (auto* e = std::get_if<call_error>(&r))
    return report_error(g, "retry", *e);
  std::cout << "job " << o.job_id << " queued again\n";
  return ex_ok;
}

} // namespace lull::cli
