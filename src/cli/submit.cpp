// lull submit --type T [--payload JSON|@FILE|-] ...: queue a job.

#include <chrono>
#include <fstream>
#include <thread>
#include <iostream>
#include <iterator>

#include "src/cli/commands.hpp"
#include "messages/lease.hpp"
#include "messages/util.hpp"
#include "src/queue/job_queue.hpp"
#include "src/config.hpp"

namespace lull::cli {

CLI::App* add_submit(CLI::App& app, submit_opts& so) {
  auto* submit = app.add_subcommand("submit", "queue a job until a host can afford it");
  submit->add_option("--type", so.type, "job type")->required();
  submit->add_option("--payload", so.payload, "job payload: JSON, @FILE, or - for stdin");
  auto* scost = submit->add_option("--cost", so.cost, "cost in units (1-100)")
                  ->check(CLI::Range(1, 100));
  // Checked here, in the words lull run uses (any case), so a typo is a
  // usage error before anything is sent.
  submit->add_option("--class", so.cls, "cost class LOW, NORMAL or HIGH")
    ->excludes(scost)
    ->check(CLI::Validator(
      [](std::string& v) {
        return parse_cost_class(v) ? std::string() : std::string("takes LOW, NORMAL or HIGH");
      },
      "CLASS"));
  submit->add_option("--priority", so.priority, "HIGH, NORMAL, LOW or BACKGROUND")
    ->capture_default_str()
    ->check(CLI::Validator(
      [](std::string& v) {
        return parse_priority(v) ? std::string()
                                     : std::string("takes HIGH, NORMAL, LOW or BACKGROUND");
      },
      "PRIORITY"));
  submit->add_option("--host", so.host, "run on this host only");
  submit->add_option("--gpu", so.gpu, "GPUs the job needs, counted against the host's (0-16)")
    ->check(CLI::Range(0, max_lease_gpus));
  submit->add_option("--key", so.key, "idempotency key: resubmitting returns the same job");
  submit->add_option("--max-attempts", so.max_attempts, "tries before it is dead")
    ->check(CLI::Range(1, 100))->capture_default_str();
  submit->add_option("--deadline", so.deadline, "expire if not started within (e.g. 2h)");
  submit->add_option("--producer", so.producer, "who submits (default: --worker)");
  submit->add_option("--wait", so.wait,
                     "ask again while lulld is away or cannot store the job, up to this long")
    ->capture_default_str();
  submit->add_flag("--json", so.as_json, "print the job as JSON");
  return submit;
}

int do_submit(const global_opts& g, const submit_opts& o) {
  nlohmann::json body = {{"job_type", o.type}, {"priority", o.priority},
                         {"max_attempts", o.max_attempts}};
  if (!o.payload.empty()) {
    std::string text = o.payload;
    if (text == "-") {
      text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else if (text[0] == '@') {
      std::ifstream in(text.substr(1));
      if (!in) {
        std::cerr << "lull: cannot read " << text.substr(1) << "\n";
        return ex_usage;
      }
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    auto doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
      std::cerr << "lull: --payload is not JSON\n";
      return ex_usage;
    }
    body["payload"] = std::move(doc);
  }
  if (o.cost > 0)
    body["cost_units"] = o.cost;
  if (!o.cls.empty())
    body["cost_class"] = o.cls;
  if (!o.host.empty())
    body["host_id"] = o.host;
  if (o.gpu > 0)
    body["gpu"] = o.gpu;
  auto wait_sec = parse_duration_sec(o.wait);
  if (!wait_sec) {
    std::cerr << "lull: --wait takes a duration such as 30s or 5m\n";
    return ex_usage;
  }
  // A submit asked again after no reply may have been stored the first
  // time: the same idempotency key makes the second one return that job.
  body["idempotency_key"] = !o.key.empty() ? o.key : "submit-" + random_lease_id();
  body["producer"] = !o.producer.empty() ? o.producer : g.worker;
  if (!o.deadline.empty()) {
    auto d = parse_duration_sec(o.deadline);
    if (!d) {
      std::cerr << "lull: --deadline takes a duration such as 10m or 2h\n";
      return ex_usage;
    }
    body["deadline_sec"] = *d;
  }
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  auto started = std::chrono::steady_clock::now();
  auto r = client->call(client->request_topic("scheduler/job/submit"), body, call_timeout_of(g));
  for (int failures = 0;; ++failures) {
    auto* e = std::get_if<call_error>(&r);
    if (!e)
      break;
    double left = *wait_sec - std::chrono::duration<double>(std::chrono::steady_clock::now()
                                                            - started).count();
    if (!service_failure(*e) || left <= 0)
      return report_error(g, "submit", *e);
    double pause = retry_pause(failures, left);
    std::cerr << "lull: submit failed (" << describe(g, *e) << "); asking again in "
              << human_duration(pause) << "\n";
    std::this_thread::sleep_for(std::chrono::duration<double>(pause));
    r = client->call(client->request_topic("scheduler/job/submit"), body, call_timeout_of(g));
  }
  auto& j = std::get<nlohmann::json>(r);
  if (o.as_json)
    std::cout << j["job"].dump(2) << "\n";
  else
    std::cout << str(j["job_id"]) << (j.value("created", true) ? "" : " (already submitted)")
              << "\n";
  return ex_ok;
}

} // namespace lull::cli
