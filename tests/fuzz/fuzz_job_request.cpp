// Job requests (submit, next, get, list, cancel), JSON or msgpack, through
// the queue service with a job already queued and a worker waiting; then the
// lease outcome a release of that job carries back, with fuzzed text in it.
#include "src/queue/queue_service.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1)
    return 0;
  double mono = 100;
  std::int64_t wall = 1795428000;
  int ids = 0;
  lull::queue_service svc({}, {}, {[&] { return mono; }, [&] { return wall; },
                                  [&] { return "j" + std::to_string(++ids); }});
  auto msg = [](std::string topic, std::string payload) {
    return lull::mqtt_message{std::move(topic), std::move(payload), 1, false, "", "", ""};
  };
  svc.handle(msg("scheduler/job/submit", R"({"job_type":"t","reply_to":"p/inbox"})"));
  static const char* topics[] = {"scheduler/job/submit", "scheduler/job/next",
                                 "scheduler/job/get", "scheduler/job/list",
                                 "scheduler/job/j1/cancel"};
  std::string payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto out = svc.handle(msg(topics[data[0] % 5], payload));
  // A worker takes the queued job; its lease is granted, then released
  // with the fuzzed bytes as outcome, result and error.
  auto next = svc.handle(
    msg("scheduler/job/next", R"({"worker_id":"w","wait_sec":5,"reply_to":"w/inbox"})"));
  out.asks.insert(out.asks.end(), next.asks.begin(), next.asks.end());
  int lease = 0;
  for (auto& ask : out.asks) {
    auto id = "L" + std::to_string(++lease);
    lull::lease_grant_reply grant;
    grant.approved = true;
    grant.lease_id = id;
    grant.ttl_sec = 30;
    svc.on_lease_reply(ask.ask_id, grant);
    svc.on_lease_outcome({"running", id, ask.worker_id, "", "", "", ""});
    svc.on_lease_outcome({"released", id, ask.worker_id, "", payload, payload, payload});
  }
  mono += 120;
  wall += 120;
  svc.tick();
  return 0;
}
