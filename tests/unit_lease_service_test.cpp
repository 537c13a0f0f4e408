// lease_service: the message in / messages out layer between the bus and the
// lease table. Reply routing (v5 response topic + correlation data, v3.1.1
// reply_to + request_id), formats, error replies, notices, secure identity.

#include <gtest/gtest.h>


#include "src/lease/lease_service.hpp"
#include "tests/lease_test_env.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;

namespace {

struct service_fixture : ::testing::Test {
  fake_env fe;
  std::unique_ptr<lease_service> svc;

  void make(bool secure = false) {
    lease_service_options o;
    o.security.secure = secure;
    o.policy.capacity_units = 60;
    svc = std::make_unique<lease_service>(o, fe.env());
    auto q = to_json(quiet_of("pi", quiet_state::quiet));
    svc->handle({"stats/host/pi", R"({"v":1,"host_id":"pi","cpu":{"count":null}})", 0, false, {}, {}, {}}); // the agent
    svc->handle({"stats/host/pi/quiet", q.dump(), 1, true, {}, {}, {}});
  }
  void SetUp() override { make(); }

  static mqtt_message msg(std::string topic, std::string payload) {
    return {std::move(topic), std::move(payload), 1, false, {}, {}, {}};
  }
  static const mqtt_message* find(const std::vector<mqtt_message>& out,
                                  const std::string& topic) {
    for (auto& m : out)
      if (m.topic == topic)
        return &m;
    return nullptr;
  }
  std::string grant(const std::string& worker = "w1") {
    auto out = svc->handle(msg("scheduler/lease/request",
                               R"({"worker_id":")" + worker
                                 + R"(","cost_units":10,"reply_to":"r"})"));
    auto j = json::parse(find(out, "r")->payload);
    return j.value("lease_id", "");
  }
};

} // namespace

TEST_F(service_fixture, v311_reply_goes_to_reply_to_with_request_id) {
  auto out = svc->handle(msg("scheduler/lease/request",
                             R"({"v":1,"worker_id":"w1","cost_units":20,"request_id":"r-17",
                                 "reply_to":"workers/w1/inbox"})"));
  auto* r = find(out, "workers/w1/inbox");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->qos, 1);
  EXPECT_EQ(r->content_type, json_content_type);
  auto j = json::parse(r->payload);
  EXPECT_EQ(j["request_id"], "r-17");
  EXPECT_EQ(j["approved"], true);
  EXPECT_EQ(j["host_id"], "pi");
  EXPECT_EQ(j["reason"], "Granted: used=20/60 units");
  EXPECT_EQ(j["lease_id"].get<std::string>().size(), 6u); // fake ids: lease1
  // The grant is announced on the lease's state topic and on events.
  auto lease_id = j["lease_id"].get<std::string>();
  auto* st = find(out, "scheduler/lease/" + lease_id + "/state");
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(json::parse(st->payload)["state"], "ACTIVE");
  EXPECT_NE(find(out, "scheduler/events"), nullptr);
  EXPECT_EQ(out.front().topic, "workers/w1/inbox"); // reply first
}

TEST_F(service_fixture, v5_reply_echoes_correlation_data_and_format) {
  json doc = {{"worker_id", "w1"}, {"cost_class", "low"}};
  auto bytes = json::to_msgpack(doc);
  mqtt_message in = msg("scheduler/lease/request", std::string(bytes.begin(), bytes.end()));
  in.content_type = msgpack_content_type;
  in.response_topic = "workers/w1/reply/abc";
  in.correlation_data = std::string("\x01\x02\x00\xff", 4);
  auto out = svc->handle(in);
  auto* r = find(out, "workers/w1/reply/abc");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->correlation_data, in.correlation_data);
  EXPECT_EQ(r->content_type, msgpack_content_type);
  auto j = json::from_msgpack(r->payload);
  EXPECT_EQ(j["approved"], true);
  EXPECT_EQ(j["cost_units"], 5);
}

TEST_F(service_fixture, bad_payloads_get_error_replies_and_are_counted) {
  auto out = svc->handle(msg("scheduler/lease/request",
                             R"({"worker_id":"w1","cost_units":"x","request_id":"r-1",
                                 "reply_to":"inbox"})"));
  auto* r = find(out, "inbox");
  ASSERT_NE(r, nullptr);
  auto j = json::parse(r->payload);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["request_id"], "r-1");
  EXPECT_EQ(j["error"]["code"], "InvalidRequest");
  EXPECT_EQ(j["error"]["message"],
            "field 'cost_units': expected an integer from 1 to 100, got string");

  mqtt_message trunc = msg("scheduler/lease/request", R"({"worker_id":"w1",)");
  trunc.response_topic = "inbox5";
  trunc.correlation_data = "c";
  out = svc->handle(trunc);
  r = find(out, "inbox5");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->correlation_data, "c");
  EXPECT_EQ(json::parse(r->payload)["error"]["code"], "InvalidJson");
  EXPECT_EQ(svc->counters().rejected, 2u);

  // No reply topic at all: counted, not crashed.
  out = svc->handle(msg("scheduler/lease/request", "garbage"));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(svc->counters().unanswerable, 1u);
}

TEST_F(service_fixture, heartbeat_release_and_holder_checks) {
  auto id = grant("w1");
  ASSERT_FALSE(id.empty());
  fe.advance(10);
  auto out = svc->handle(msg("scheduler/lease/" + id + "/heartbeat",
                             R"({"worker_id":"w1","reply_to":"hb"})"));
  auto j = json::parse(find(out, "hb")->payload);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["state"], "ACTIVE");
  EXPECT_EQ(j["ttl_remaining_sec"], 30.0);

  out = svc->handle(msg("scheduler/lease/" + id + "/release",
                        R"({"worker_id":"w2","reply_to":"rel","request_id":"x"})"));
  j = json::parse(find(out, "rel")->payload);
  EXPECT_EQ(j["error"]["code"], "NotHolder");

  out = svc->handle(msg("scheduler/lease/" + id + "/heartbeat", R"({"reply_to":"hb"})"));
  j = json::parse(find(out, "hb")->payload);
  EXPECT_EQ(j["error"]["code"], "InvalidRequest");

  out = svc->handle(msg("scheduler/lease/unknown/heartbeat",
                        R"({"worker_id":"w1","reply_to":"hb"})"));
  EXPECT_EQ(json::parse(find(out, "hb")->payload)["error"]["code"], "ResourceNotFound");

  out = svc->handle(msg("scheduler/lease/" + id + "/release",
                        R"({"worker_id":"w1","reply_to":"rel"})"));
  EXPECT_EQ(json::parse(find(out, "rel")->payload)["state"], "RELEASED");
  auto* st = find(out, "scheduler/lease/" + id + "/state");
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(json::parse(st->payload)["state"], "RELEASED");
  EXPECT_TRUE(svc->table().active().empty());
}

TEST_F(service_fixture, admin_revoke_with_empty_payload_and_expiry_notices) {
  auto id = grant("w1");
  auto out = svc->handle(msg("scheduler/lease/" + id + "/revoke", ""));
  auto* st = find(out, "scheduler/lease/" + id + "/state");
  ASSERT_NE(st, nullptr);
  auto j = json::parse(st->payload);
  EXPECT_EQ(j["state"], "REVOKED");
  EXPECT_EQ(j["reason"], "revoked by admin");

  auto id2 = grant("w1");
  fe.advance(31);
  out = svc->tick();
  st = find(out, "scheduler/lease/" + id2 + "/state");
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(json::parse(st->payload)["state"], "EXPIRED");
}

TEST_F(service_fixture, worker_will_expires_its_leases) {
  auto id = grant("w1");
  svc->handle(msg("stats/worker/w1", R"({"status":"offline"})"));
  fe.advance(2.5); // the will's grace
  auto out = svc->tick();
  auto* st = find(out, "scheduler/lease/" + id + "/state");
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(json::parse(st->payload)["reason"], "worker went offline (last will)");
  EXPECT_TRUE(svc->table().active().empty());
  // A plain-text will works too.
  auto id2 = grant("w2");
  svc->handle(msg("stats/worker/w2", "offline"));
  fe.advance(2.5);
  svc->tick();
  EXPECT_TRUE(svc->table().active().empty());
  // The client library's clean close says "stopped": gone as well.
  grant("w3");
  svc->handle(msg("stats/worker/w3", R"({"v":1,"worker_id":"w3","status":"stopped"})"));
  fe.advance(2.5);
  svc->tick();
  EXPECT_TRUE(svc->table().active().empty());
}

TEST_F(service_fixture, host_snapshots_set_capacity) {
  make();
  svc->handle(msg("stats/host/nuc", R"({"cpu":{"count":8}})"));
  EXPECT_EQ(svc->table().hosts().at("nuc").cpu_count, 8);
  svc->handle(msg("stats/host/nuc", "garbage"));
  EXPECT_EQ(svc->table().hosts().at("nuc").cpu_count, 8);
}

TEST_F(service_fixture, status_is_retained_and_marked_dirty_on_change) {
  EXPECT_TRUE(svc->take_status_dirty());
  EXPECT_FALSE(svc->take_status_dirty());
  grant("w1");
  EXPECT_TRUE(svc->take_status_dirty());
  auto m = svc->status_message();
  EXPECT_EQ(m.topic, "scheduler/status");
  EXPECT_TRUE(m.retain);
  auto j = json::parse(m.payload);
  EXPECT_EQ(j["active"].size(), 1u);
  EXPECT_EQ(j["hosts"]["pi"]["used_units"], 10);
  EXPECT_EQ(j["hosts"]["pi"]["state"], "QUIET");
}

TEST_F(service_fixture, secure_mode_takes_identity_from_the_topic) {
  make(true);
  auto filters = svc->filters();
  EXPECT_NE(std::find(filters.begin(), filters.end(), "scheduler/+/lease/request"),
            filters.end());
  EXPECT_EQ(std::find(filters.begin(), filters.end(), "scheduler/lease/request"),
            filters.end());
  // The payload claims to be "b"; the topic (pinned by the ACL) says "a".
  auto out = svc->handle(msg("scheduler/a/lease/request",
                             R"({"worker_id":"b","cost_units":5,"reply_to":"workers/a/in"})"));
  auto* r = find(out, "workers/a/in");
  ASSERT_NE(r, nullptr);
  auto id = json::parse(r->payload)["lease_id"].get<std::string>();
  EXPECT_EQ(svc->table().active().at(id).worker_id, "a");
  // Notices also go to the holder's own inbox.
  EXPECT_NE(find(out, "workers/a/lease/" + id + "/state"), nullptr);

  // b acting on a's lease from its own topic: NotHolder.
  out = svc->handle(msg("scheduler/b/lease/" + id + "/release",
                        R"({"worker_id":"a","reply_to":"workers/b/in"})"));
  EXPECT_EQ(json::parse(find(out, "workers/b/in")->payload)["error"]["code"], "NotHolder");
  out = svc->handle(msg("scheduler/b/lease/" + id + "/revoke", R"({"reply_to":"workers/b/in"})"));
  EXPECT_EQ(json::parse(find(out, "workers/b/in")->payload)["error"]["code"], "NotHolder");

  // Replies outside the worker's inbox are not sent.
  out = svc->handle(msg("scheduler/b/lease/request",
                        R"({"cost_units":5,"reply_to":"scheduler/status"})"));
  EXPECT_EQ(find(out, "scheduler/status"), nullptr);
  EXPECT_EQ(svc->counters().unanswerable, 1u);

  // Open-mode topics are ignored in secure mode.
  out = svc->handle(msg("scheduler/lease/request", R"({"worker_id":"a","reply_to":"x"})"));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(svc->table().active().size(), 2u);
}

TEST_F(service_fixture, every_truncation_and_byte_flip_is_answered_never_crashes) {
  std::string good = R"({"v":1,"worker_id":"w1","job_type":"t","cost_units":1,)"
                     R"("priority":"high","constraints":{"cpu_heavy":true},"request_id":"r"})";
  auto packed = json::to_msgpack(json::parse(good));
  std::string mp(packed.begin(), packed.end());
  std::size_t answered = 0, total = 0;
  auto feed = [&](const std::string& payload, const char* ct) {
    for (auto* topic : {"scheduler/lease/request", "scheduler/lease/x/heartbeat",
                        "scheduler/lease/x/report", "stats/host/pi/quiet", "stats/host/pi",
                        "stats/worker/w1"}) {
      mqtt_message m = msg(topic, payload);
      m.content_type = ct;
      m.response_topic = "inbox";
      auto out = svc->handle(m);
      if (std::string(topic).rfind("scheduler/", 0) == 0) {
        ++total;
        for (auto& o : out)
          if (o.topic == "inbox") {
            ++answered;
            auto j = o.content_type == msgpack_content_type ? json::from_msgpack(o.payload)
                                                            : json::parse(o.payload);
            EXPECT_TRUE(j.contains("approved") || j.contains("ok")) << j.dump();
          }
      }
    }
  };
  for (std::size_t n = 0; n < good.size(); ++n)
    feed(good.substr(0, n), "");
  for (std::size_t n = 0; n < mp.size(); ++n)
    feed(mp.substr(0, n), msgpack_content_type);
  for (std::size_t i = 0; i < mp.size(); ++i) {
    auto flipped = mp;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x5a);
    feed(flipped, msgpack_content_type);
  }
  // Every lease message got exactly one reply (errors included), except the
  // empty payloads of heartbeat/report that carry no worker... which are
  // answered too: InvalidRequest.
  EXPECT_EQ(answered, total);
}

TEST_F(service_fixture, outcomes_for_watchers_come_once_per_change) {
  auto a = grant("w1");
  auto b = grant("w2");
  EXPECT_TRUE(svc->take_outcomes().empty()); // grants are the asker's reply
  // The first heartbeat (or report) says the holder started; later ones say nothing.
  svc->handle(msg("scheduler/lease/" + a + "/heartbeat", R"({"worker_id":"w1"})"));
  svc->handle(msg("scheduler/lease/" + a + "/heartbeat", R"({"worker_id":"w1"})"));
  svc->handle(msg("scheduler/lease/" + a + "/report", R"({"worker_id":"w1","progress":0.5})"));
  auto started = svc->take_outcomes();
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].type, "running");
  EXPECT_EQ(started[0].lease_id, a);
  // A release carries the job's outcome; a refused one says nothing.
  svc->handle(msg("scheduler/lease/" + a + "/release",
                  R"({"worker_id":"w2","outcome":"succeeded"})"));
  EXPECT_TRUE(svc->take_outcomes().empty());
  svc->handle(msg("scheduler/lease/" + a + "/release",
                  R"({"worker_id":"w1","outcome":"failed","error":"disk full",)"
                  R"("result":{"n":2}})"));
  svc->handle(msg("scheduler/lease/" + a + "/release", R"({"worker_id":"w1"})"));
  auto ended = svc->take_outcomes();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].type, "released");
  EXPECT_EQ(ended[0].worker_id, "w1");
  EXPECT_EQ(ended[0].outcome, "failed");
  EXPECT_EQ(ended[0].error, "disk full");
  EXPECT_EQ(json::parse(ended[0].result)["n"], 2);
  // Expiry, once.
  fe.advance(120);
  svc->tick();
  svc->tick();
  auto expired = svc->take_outcomes();
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].type, "expired");
  EXPECT_EQ(expired[0].lease_id, b);
}

TEST_F(service_fixture, request_id_is_echoed_as_sent_and_null_when_absent) {
  auto reply_to = [&](const std::string& payload) {
    auto out = svc->handle(msg("scheduler/lease/request", payload));
    auto* r = find(out, "inbox");
    return r ? json::parse(r->payload) : json();
  };
  // The same rule as the job and history services (messages/request.cpp).
  EXPECT_TRUE(reply_to(R"({"worker_id":"w1","cost_units":1,"reply_to":"inbox"})")["request_id"].is_null());
  EXPECT_EQ(reply_to(R"({"worker_id":"w1","cost_units":1,"reply_to":"inbox","request_id":17})")["request_id"],
            17);
  EXPECT_EQ(reply_to(R"({"worker_id":"w1","cost_units":1,"reply_to":"inbox","request_id":"a"})")["request_id"],
            "a");
  // Errors too, and heartbeats.
  auto bad = reply_to(R"({"worker_id":"w1","reply_to":"inbox","cost_units":0})");
  EXPECT_EQ(bad["ok"], false);
  EXPECT_TRUE(bad["request_id"].is_null());
  auto id = grant("w2");
  ASSERT_FALSE(id.empty());
  auto out = svc->handle(msg("scheduler/lease/" + id + "/heartbeat",
                             R"({"worker_id":"w2","reply_to":"inbox"})"));
  ASSERT_NE(find(out, "inbox"), nullptr);
  auto beat = json::parse(find(out, "inbox")->payload);
  EXPECT_EQ(beat["ok"], true);
  EXPECT_TRUE(beat.contains("request_id") && beat["request_id"].is_null()) << beat.dump();
}

// -- whose load -----------------------------------------------------------------

TEST_F(service_fixture, a_flooding_worker_is_throttled_and_others_are_not) {
  lease_service_options o;
  o.policy.capacity_units = 60;
  o.policy.worker_rate_per_sec = 5;
  o.policy.worker_burst = 10;
  svc = std::make_unique<lease_service>(o, fe.env());
  svc->handle(msg("stats/host/pi", R"({"v":1,"host_id":"pi","cpu":{"count":null}})"));
  svc->handle(msg("stats/host/pi/quiet", to_json(quiet_of("pi", quiet_state::quiet)).dump()));
  int throttled = 0, answered = 0;
  json last;
  for (int i = 0; i < 100; ++i) {
    auto out = svc->handle(msg("scheduler/lease/request",
                               R"({"worker_id":"flood","cost_units":1,"reply_to":"f",)"
                               R"("request_id":")" + std::to_string(i) + R"("})"));
    auto* r = find(out, "f");
    ASSERT_NE(r, nullptr) << "every request is answered";
    auto j = json::parse(r->payload);
    if (j.contains("error") && j["error"]["code"] == "RequestThrottled") {
      ++throttled;
      last = j;
    } else {
      ++answered;
    }
  }
  EXPECT_EQ(answered, 10); // the burst
  EXPECT_EQ(throttled, 90);
  EXPECT_EQ(last["request_id"], "99");
  EXPECT_GT(last["retry_after_sec"].get<double>(), 0);
  EXPECT_NE(last["error"]["message"].get<std::string>().find("worker flood sends more than 5"),
            std::string::npos)
    << last.dump();
  // Another worker in the middle of the flood is answered as usual.
  EXPECT_NE(grant("calm"), "");
  // And the flooder gets tokens back with time.
  fe.mono += 1.0;
  auto out = svc->handle(msg("scheduler/lease/request",
                             R"({"worker_id":"flood","cost_units":1,"reply_to":"f"})"));
  EXPECT_FALSE(json::parse(find(out, "f")->payload).contains("error"));
  EXPECT_EQ(json::parse(svc->status_message().payload)["counters"]["throttled"], 90);
}

/// What the lease manager publishes for one message: the service's output,
/// then the host lease lists it takes at the commit.
std::vector<mqtt_message> committed(lease_service& svc, std::vector<mqtt_message> out) {
  for (auto& m : svc.take_host_leases())
    out.push_back(std::move(m));
  return out;
}

TEST_F(service_fixture, a_heartbeat_with_a_pid_tells_the_hosts_agent) {
  auto id = grant("w1");
  svc->take_host_leases();
  auto hb = committed(*svc, svc->handle(msg("scheduler/lease/" + id + "/heartbeat",
                            R"({"worker_id":"w1","pid":4242,"pid_start":123456,)"
                            R"("cgroup":"/lull-lease-lease1","reply_to":"r"})")));
  auto* leases = find(hb, "scheduler/host/pi/leases");
  ASSERT_NE(leases, nullptr);
  EXPECT_TRUE(leases->retain);
  auto j = json::parse(leases->payload);
  ASSERT_EQ(j["leases"].size(), 1u);
  EXPECT_EQ(j["leases"][0]["lease_id"], id);
  EXPECT_EQ(j["leases"][0]["pid"], 4242);
  EXPECT_EQ(j["leases"][0]["pid_start"], 123456);
  EXPECT_EQ(j["leases"][0]["cgroup"], "/lull-lease-lease1");
  // The same again changes nothing, so nothing is republished.
  hb = committed(*svc, svc->handle(msg("scheduler/lease/" + id + "/heartbeat",
                                       R"({"worker_id":"w1","pid":4242,"pid_start":123456,)"
                                       R"("cgroup":"/lull-lease-lease1","reply_to":"r"})")));
  EXPECT_EQ(find(hb, "scheduler/host/pi/leases"), nullptr);
  // Released: the host's list empties.
  auto rel = committed(
    *svc, svc->handle(msg("scheduler/lease/" + id + "/release", R"({"worker_id":"w1"})")));
  auto* after = find(rel, "scheduler/host/pi/leases");
  ASSERT_NE(after, nullptr);
  EXPECT_TRUE(json::parse(after->payload)["leases"].empty());
}

TEST_F(service_fixture, a_bad_pid_is_refused_with_the_field_named) {
  auto id = grant("w1");
  for (auto body : {R"({"worker_id":"w1","pid":-3,"reply_to":"r"})",
                    R"({"worker_id":"w1","pid":"x","reply_to":"r"})",
                    R"({"worker_id":"w1","pid":5,"cgroup":"/a/../../etc","reply_to":"r"})",
                    R"({"worker_id":"w1","pid_start":5,"reply_to":"r"})"}) {
    auto out = svc->handle(msg("scheduler/lease/" + id + "/heartbeat", body));
    auto j = json::parse(find(out, "r")->payload);
    EXPECT_EQ(j["error"]["code"], "InvalidRequest") << body;
    auto m = j["error"]["message"].get<std::string>();
    EXPECT_TRUE(m.find("'pid'") != std::string::npos || m.find("'cgroup'") != std::string::npos)
      << m;
  }
  // A request may carry the pid too (a worker that started its work first).
  auto out = committed(*svc, svc->handle(msg("scheduler/lease/request",
                                             R"({"worker_id":"w2","cost_units":5,"pid":77,)"
                                             R"("reply_to":"q"})")));
  auto* l = find(out, "scheduler/host/pi/leases");
  ASSERT_NE(l, nullptr);
  int pid = 0;
  auto doc = json::parse(l->payload);
  for (auto& x : doc["leases"])
    if (x["worker_id"] == "w2")
      pid = x.value("pid", 0);
  EXPECT_EQ(pid, 77) << l->payload;
}

// -- a write that fails: nothing acknowledged, nothing half-done -----------

namespace {

struct held_fixture : ::testing::Test {
  fake_env fe;
  std::unique_ptr<lease_service> svc;
  void SetUp() override {
    lease_service_options o;
    o.policy.capacity_units = 60;
    o.hold_acks = true;
    svc = std::make_unique<lease_service>(o, fe.env());
    svc->handle({"stats/host/pi", R"({"v":1,"host_id":"pi","cpu":{"count":null}})", 0, false, {}, {}, {}});
    svc->handle({"stats/host/pi/quiet", to_json(quiet_of("pi", quiet_state::quiet)).dump(), 1,
                 true, {}, {}, {}});
  }
  std::vector<mqtt_message> ask(const std::string& topic, const std::string& payload) {
    return svc->handle({topic, payload, 1, false, {}, {}, {}});
  }
  static std::optional<json> on(const std::vector<mqtt_message>& out, const std::string& topic) {
    for (auto& m : out)
      if (m.topic == topic)
        return json::parse(m.payload);
    return std::nullopt;
  }
  /// A grant that was written.
  std::string granted(const std::string& worker, int units) {
    auto out = ask("scheduler/lease/request", R"({"worker_id":")" + worker + R"(","cost_units":)"
                                                + std::to_string(units) + R"(,"reply_to":"r"})");
    EXPECT_FALSE(on(out, "r")) << "a grant's reply waits for its write";
    auto replies = svc->committed(svc->table().take_dirty());
    auto r = on(replies, "r");
    EXPECT_TRUE(r && (*r)["approved"].get<bool>());
    return r ? r->value("lease_id", "") : "";
  }
};

} // namespace

TEST_F(held_fixture, a_grant_that_cannot_be_written_is_answered_internal_error_and_holds_nothing) {
  auto out = ask("scheduler/lease/request",
                 R"({"worker_id":"w1","cost_units":50,"reply_to":"r","request_id":"q1"})");
  EXPECT_FALSE(on(out, "r"));
  auto dirty = svc->table().take_dirty();
  ASSERT_EQ(dirty.size(), 1u);
  auto token = svc->table().fencing_token();
  auto replies = svc->roll_back(dirty, "database or disk is full");
  auto r = on(replies, "r");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["error"]["code"], "InternalError");
  EXPECT_NE((*r)["error"]["message"].get<std::string>().find("database or disk is full"),
            std::string::npos);
  EXPECT_EQ((*r)["request_id"], "q1");
  // No phantom: the host's units are all free, so the same request fits.
  EXPECT_TRUE(svc->table().active().empty());
  EXPECT_EQ(svc->table().used_units("pi"), 0);
  auto id = granted("w1", 50);
  EXPECT_FALSE(id.empty());
  // Fencing tokens never go back, even over a rolled back grant.
  EXPECT_GT(svc->table().find(id)->fencing_token, token);
}

TEST_F(held_fixture, a_release_that_cannot_be_written_leaves_the_lease_active_for_a_retry) {
  auto id = granted("w1", 30);
  auto out = ask("scheduler/lease/" + id + "/release", R"({"worker_id":"w1","reply_to":"r"})");
  EXPECT_TRUE(svc->table().active().empty());
  auto replies = svc->roll_back(svc->table().take_dirty(), "disk I/O error");
  EXPECT_EQ((*on(replies, "r"))["error"]["code"], "InternalError");
  ASSERT_EQ(svc->table().active().count(id), 1u);
  EXPECT_EQ(svc->table().used_units("pi"), 30);
  EXPECT_TRUE(svc->take_outcomes().empty()) << "the queue hears of no release that did not happen";
  // The holder's retry goes through once the disk is back.
  ask("scheduler/lease/" + id + "/release", R"({"worker_id":"w1","reply_to":"r"})");
  auto ok = on(svc->committed(svc->table().take_dirty()), "r");
  ASSERT_TRUE(ok);
  EXPECT_TRUE((*ok)["ok"].get<bool>());
  EXPECT_TRUE(svc->table().active().empty());
}

TEST_F(held_fixture, a_renewal_that_cannot_be_written_is_undone_and_the_lease_expires_as_stored) {
  auto id = granted("w1", 10);
  auto expires = svc->table().find(id)->expires_mono;
  fe.advance(10);
  ask("scheduler/lease/" + id + "/heartbeat", R"({"worker_id":"w1","reply_to":"r"})");
  EXPECT_GT(svc->table().find(id)->expires_mono, expires);
  auto replies = svc->roll_back(svc->table().take_dirty(), "database is locked");
  EXPECT_EQ((*on(replies, "r"))["error"]["code"], "InternalError");
  EXPECT_EQ(svc->table().find(id)->expires_mono, expires);
}

TEST_F(held_fixture, an_expiry_that_cannot_be_written_is_tried_again) {
  auto id = granted("w1", 10);
  fe.advance(31);
  svc->tick();
  EXPECT_TRUE(svc->table().active().empty());
  svc->roll_back(svc->table().take_dirty(), "database is locked");
  EXPECT_EQ(svc->table().active().count(id), 1u);
  fe.advance(1);
  svc->tick();
  auto dirty = svc->table().take_dirty();
  EXPECT_EQ(dirty, std::vector<std::string>{id});
  svc->committed(dirty);
  EXPECT_TRUE(svc->table().active().empty());
  auto outcomes = svc->take_outcomes();
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].type, "expired");
}

TEST_F(service_fixture, secure_mode_lets_only_high_users_ask_for_high) {
  lease_service_options o;
  o.security.secure = true;
  o.policy.capacity_units = 60;
  o.security.high_users = {"lull-admin"};
  svc = std::make_unique<lease_service>(o, fe.env());
  svc->handle(msg("stats/host/pi", R"({"v":1,"host_id":"pi","cpu":{"count":null}})"));
  svc->handle(msg("stats/host/pi/quiet", to_json(quiet_of("pi", quiet_state::quiet)).dump()));
  auto out = svc->handle(msg("scheduler/a/lease/request",
                             R"({"cost_units":5,"priority":"HIGH","reply_to":"workers/a/in"})"));
  auto* r = find(out, "workers/a/in");
  ASSERT_NE(r, nullptr);
  auto j = json::parse(r->payload);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["code"], "PermissionDenied");
  EXPECT_EQ(j["error"]["message"], "user 'a' may not ask for a HIGH lease: HIGH priority is for "
                                   "lease.high_users (lull-admin)");
  EXPECT_TRUE(svc->table().active().empty());
  // NORMAL is anyone's; HIGH is the listed user's.
  out = svc->handle(msg("scheduler/a/lease/request",
                        R"({"cost_units":5,"reply_to":"workers/a/in"})"));
  EXPECT_EQ(json::parse(find(out, "workers/a/in")->payload)["approved"], true);
  out = svc->handle(msg("scheduler/lull-admin/lease/request",
                        R"({"cost_units":5,"priority":"HIGH","reply_to":"workers/lull-admin/in"})"));
  EXPECT_EQ(json::parse(find(out, "workers/lull-admin/in")->payload)["approved"], true);
  EXPECT_EQ(json::parse(svc->status_message().payload)["counters"]["permission_denied"], 1);
}

TEST_F(service_fixture, home_assistant_cannot_lift_an_admin_pause) {
  svc->handle(msg("scheduler/control/pi", R"({"v":1,"paused":true,"by":"alice","reason":"backup"})"));
  ASSERT_TRUE(svc->table().hosts().at("pi").pause);
  auto out = svc->handle(msg("scheduler/control/pi/set", "ON"));
  EXPECT_TRUE(svc->table().hosts().at("pi").pause);
  // The switch's state goes out again: still paused, by the admin.
  auto* m = find(out, "scheduler/control/pi");
  ASSERT_NE(m, nullptr);
  auto j = json::parse(m->payload);
  EXPECT_EQ(j["paused"], true);
  EXPECT_EQ(j["by"], "alice");
  EXPECT_EQ(j["level"], "admin");
  auto status = json::parse(svc->status_message().payload);
  EXPECT_EQ(status["hosts"]["pi"]["paused_by"], "paused by alice (admin)");
  EXPECT_EQ(status["counters"]["pause_refused"], 1);
  // Home Assistant's own pause it lifts itself; lulld's echo of it is harmless.
  svc->handle(msg("scheduler/control/pi", R"({"v":1,"paused":false})"));
  out = svc->handle(msg("scheduler/control/pi/set", "OFF"));
  ASSERT_NE(find(out, "scheduler/control/pi"), nullptr);
  svc->handle(*find(out, "scheduler/control/pi"));
  EXPECT_EQ(svc->table().hosts().at("pi").pause->level, pause_level::home_assistant);
  out = svc->handle(msg("scheduler/control/pi/set", "ON"));
  EXPECT_FALSE(svc->table().hosts().at("pi").pause);
}
