#include "tests/support/schema_check.hpp"

#include <chrono>
#include <ctime>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "messages/codec.hpp"
#include "messages/lease.hpp"
#include "messages/request.hpp"
#include "src/lease/lease_service.hpp"
#include "src/queue/queue_service.hpp"
#include "src/workers/worker_registry.hpp"

namespace lull::test {

namespace {

using json = nlohmann::json;

constexpr const char* lease_actions[] = {"heartbeat", "release", "report", "revoke"};
constexpr const char* job_requests[] = {"submit", "next", "get", "list"};

/// Where a checked request is answered: every request gets a route, so a
/// refusal always comes back as a reply (a fire-and-forget release has
/// none of its own). Secure mode answers only under workers/<sender>/.
std::string check_inbox(const topic_names& t, const std::string& sender) {
  return t.full(sender.empty() ? "lull-schema-check/reply"
                               : "workers/" + sender + "/lull-schema-check");
}

/// Quiets the log while a service of lulld's judges one message: its
/// refusals come back as replies, and the log of lulld under test is what
/// the example tests read.
class quiet_log {
public:
  quiet_log() : level_(spdlog::get_level()) { spdlog::set_level(spdlog::level::off); }
  ~quiet_log() { spdlog::set_level(level_); }
  quiet_log(const quiet_log&) = delete;
  quiet_log& operator=(const quiet_log&) = delete;

private:
  spdlog::level::level_enum level_;
};

/// The first error reply among `out` whose code is a schema error.
std::optional<std::string> schema_error_in(const std::vector<mqtt_message>& out,
                                           const char* decoder) {
  for (auto& m : out) {
    auto doc = decode(m.payload, detect_format(m.payload, m.content_type));
    if (!doc || !doc->is_object() || doc->value("ok", true))
      continue;
    auto err = doc->value("error", json::object());
    auto code = err.value("code", std::string());
    if (is_schema_error(code))
      return std::string(decoder) + ": " + code + ": " + err.value("message", std::string());
  }
  return std::nullopt;
}

std::optional<std::string> check_lease(mqtt_message msg, const topic_names& t, bool secure,
                                       const std::string& sender) {
  lease_service_options so;
  so.topics = t;
  so.security.secure = secure;
  quiet_log quiet;
  lease_service svc(so, lease_env::system());
  msg.response_topic = check_inbox(t, sender);
  if (msg.correlation_data.empty())
    msg.correlation_data = "lull-schema-check";
  return schema_error_in(svc.handle(msg), "lease manager");
}

std::optional<std::string> check_job(mqtt_message msg, const topic_names& t, bool secure,
                                     const std::string& sender) {
  queue_service_options qo;
  qo.topics = t;
  qo.security.secure = secure;
  int ids = 0;
  quiet_log quiet;
  queue_service svc(qo, queue_config{},
                    {[] {
                       return std::chrono::duration<double>(
                                  std::chrono::steady_clock::now().time_since_epoch())
                           .count();
                     },
                     [] { return static_cast<std::int64_t>(std::time(nullptr)); },
                     [&ids] { return "schema-check-" + std::to_string(++ids); }});
  msg.response_topic = check_inbox(t, sender);
  if (msg.correlation_data.empty())
    msg.correlation_data = "lull-schema-check";
  auto out = svc.handle(msg);
  return schema_error_in(out.publish, "queue dispatcher");
}

} // namespace

bool is_schema_error(const std::string& code) {
  return code == to_string(error_code::invalid_json)
         || code == to_string(error_code::invalid_request)
         || code == to_string(error_code::version_mismatch)
         || code == to_string(error_code::payload_too_large);
}

std::vector<std::string> client_input_filters(const topic_names& t) {
  std::vector<std::string> out = {t.worker_status_filter(),
                                  t.lease_request(),
                                  t.full("scheduler/+/lease/request"),
                                  t.full("scheduler/control/+"),
                                  t.full("scheduler/control/+/set"),
                                  t.history_request(),
                                  t.full("history/+/request"),
                                  t.full("scheduler/job/+/cancel"),
                                  t.full("scheduler/+/job/+/cancel")};
  for (auto* a : lease_actions) {
    out.push_back(t.lease_action_filter(a));
    out.push_back(t.full(std::string("scheduler/+/lease/+/") + a));
  }
  for (auto* r : job_requests) {
    out.push_back(t.full(std::string("scheduler/job/") + r));
    out.push_back(t.full(std::string("scheduler/+/job/") + r));
  }
  return out;
}

std::optional<std::string> lulld_refusal(const mqtt_message& msg, const topic_names& t) {
  auto rel = t.strip(msg.topic);
  auto lv = split_levels(rel);
  auto is = [&](std::size_t i, const char* s) { return lv.size() > i && lv[i] == s; };
  auto is_one_of = [&](std::size_t i, const auto& names) {
    for (auto* n : names)
      if (is(i, n))
        return true;
    return false;
  };

  // stats/worker/<id>: the worker registry (lulld's actor checks the id first).
  if (lv.size() == 3 && is(0, "stats") && is(1, "worker")) {
    std::string id(lv[2]);
    if (!valid_id(id))
      return "worker registry: the worker id '" + id + "' is not [a-zA-Z0-9_-]{1,64}";
    worker_registry reg;
    auto up = reg.on_status(id, msg.payload, 0, 0);
    if (!up.ok)
      return "worker registry: " + up.error;
    return std::nullopt;
  }
  if (lv.empty() || !is(0, "scheduler"))
    return "no decoder of lulld's is checked for '" + msg.topic
           + "': add it to tests/support/schema_check.cpp";

  // scheduler/control/<host>: a pause (JSON); .../set: Home Assistant's switch.
  if (is(1, "control") && lv.size() == 3) {
    if (msg.payload.empty())
      return std::nullopt; // lifts a retained pause
    auto decoded = decode_payload(msg.payload, msg.content_type, lease_limits);
    if (auto* e = std::get_if<request_error>(&decoded))
      return "lease manager: " + e->message;
    auto parsed = parse_host_control(std::get<json>(decoded));
    if (auto* why = std::get_if<std::string>(&parsed))
      return "lease manager: " + *why;
    return std::nullopt;
  }
  if (is(1, "control") && lv.size() == 4 && is(3, "set")) {
    lease_service_options so;
    so.topics = t;
    quiet_log quiet;
    lease_service svc(so, lease_env::system());
    svc.handle(msg);
    if (svc.counters().rejected > 0)
      return std::string("lease manager: expected ON or OFF");
    return std::nullopt;
  }

  // Leases and jobs: open layout scheduler/lease/..., secure layout
  // scheduler/<user>/lease/... (the user is the topic's).
  bool secure = lv.size() >= 4 && (is(2, "lease") || is(2, "job"));
  std::string sender = secure ? std::string(lv[1]) : std::string();
  std::size_t k = secure ? 2 : 1; // the level that says lease or job
  std::size_t n = lv.size() - k;  // levels from there on
  if (is(k, "lease")
      && ((n == 2 && is(k + 1, "request")) || (n == 3 && is_one_of(k + 2, lease_actions))))
    return check_lease(msg, t, secure, sender);
  if (is(k, "job")
      && ((n == 2 && is_one_of(k + 1, job_requests)) || (n == 3 && is(k + 2, "cancel"))))
    return check_job(msg, t, secure, sender);
  return "no decoder of lulld's is checked for '" + msg.topic
         + "': add it to tests/support/schema_check.cpp";
}

std::vector<std::string> refusal_log_lines(const std::string& log) {
  std::vector<std::string> out;
  std::istringstream in(log);
  static const std::string lease_rejected = "lease manager: rejected message on ";
  for (std::string line; std::getline(in, line);) {
    bool refused = line.find("worker registry: rejected") != std::string::npos
                   || line.find("worker registry: ignoring") != std::string::npos
                   || line.find("queue dispatcher: rejected") != std::string::npos
                   || line.find("persister: rejected history request") != std::string::npos
                   || line.find("lease manager: ignoring") != std::string::npos;
    if (auto at = line.find(lease_rejected); at != std::string::npos) {
      // "...rejected message on <topic>: <Code>: <message>": only a
      // malformed message counts (NotHolder after a revoke is no refusal).
      auto code_at = line.find(": ", at + lease_rejected.size());
      if (code_at != std::string::npos) {
        auto code_end = line.find(':', code_at + 2);
        refused = is_schema_error(line.substr(code_at + 2, code_end - code_at - 2));
      }
    }
    if (refused)
      out.push_back(line);
  }
  return out;
}

input_recorder::input_recorder(const std::string& broker_uri, const topic_names& topics)
    : topics_(topics), c_(broker_uri) {
  if (!c_.connected())
    return;
  for (auto& f : client_input_filters(topics_))
    c_.subscribe(f);
}

std::size_t input_recorder::count(const std::string& filter) {
  std::size_t n = 0;
  for (auto& m : c_.received())
    n += topic_matches(filter, m.topic) ? 1 : 0;
  return n;
}

bool input_recorder::wait_for(const std::string& filter,
                              const std::function<bool(const mqtt_message&)>& pred,
                              std::chrono::milliseconds timeout) {
  return c_
      .wait_for([&](const mqtt_message& m) { return topic_matches(filter, m.topic) && pred(m); },
                timeout)
      .has_value();
}

std::vector<std::string> input_recorder::refusals() {
  std::vector<std::string> out;
  for (auto& m : c_.received())
    if (auto why = lulld_refusal(m, topics_))
      out.push_back(m.topic + " " + m.payload + "\n    refused by " + *why);
  return out;
}

} // namespace lull::test
