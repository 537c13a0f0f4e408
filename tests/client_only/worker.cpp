// A worker that embeds lull's client library and nothing else of lull: it
// links lull::client alone (no CAF, SQLite or spdlog). It asks lulld for a
// lease, heartbeats once, releases it with an outcome and prints one JSON
// line: {"approved":..,"lease_id":..,"released":..}.
//
//   lull_client_worker tcp://127.0.0.1:1883 my-worker

#include <chrono>
#include <cstdio>

#include "src/client/lease_client.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s BROKER_URI WORKER_ID\n", argv[0]);
    return 2;
  }
  using namespace std::chrono_literals;
  lull::lease_client_options o;
  o.uri = argv[1];
  o.worker_id = argv[2];
  auto c = lull::lease_client::connect(o);
  if (auto* err = std::get_if<std::string>(&c)) {
    std::fprintf(stderr, "cannot connect: %s\n", err->c_str());
    return 1;
  }
  auto& client = *std::get<0>(c);
  lull::lease_request req;
  req.job_type = "example";
  req.cost_units = 10;
  auto r = client.request(req, 10s);
  if (auto* e = std::get_if<lull::call_error>(&r)) {
    std::fprintf(stderr, "no lease: %s\n",
                 e->timed_out ? "no reply in time" : e->error.message.c_str());
    return 1;
  }
  auto& grant = std::get<lull::lease_grant_reply>(r);
  nlohmann::json out = {{"approved", grant.approved}, {"lease_id", grant.lease_id}};
  if (grant.approved) {
    auto hb = client.heartbeat(grant.lease_id, 10s);
    out["heartbeat"] = std::holds_alternative<nlohmann::json>(hb);
    auto rel = client.release(grant.lease_id, 10s, "done", {{"outcome", "succeeded"}});
    out["released"] = std::holds_alternative<nlohmann::json>(rel)
                      && std::get<nlohmann::json>(rel).value("state", "") == "RELEASED";
  }
  std::printf("%s\n", out.dump().c_str());
  return grant.approved ? 0 : 3;
}
