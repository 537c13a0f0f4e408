// The lease wire codec: requests as v3.1.1 and v5 clients send them, and a
// precise error for every malformed, truncated, mistyped or oversized one.

#include <gtest/gtest.h>

#include "messages/lease.hpp"

using namespace lull;
using json = nlohmann::json;

namespace {

std::variant<lease_request, lease_error> parse(std::string_view payload,
                                               std::string_view content_type = {}) {
  mqtt_message m{"scheduler/lease/request", std::string(payload), 1, false,
                 std::string(content_type), {}, {}};
  auto req = decode_request(m, lease_limits);
  if (req.error)
    return *req.error;
  return parse_lease_request(req.doc);
}

lease_error error_of(std::string_view payload) {
  auto r = parse(payload);
  EXPECT_TRUE(std::holds_alternative<lease_error>(r)) << payload;
  if (!std::holds_alternative<lease_error>(r))
    return {};
  return std::get<lease_error>(r);
}

const char* spec_request = R"({"v": 1, "worker_id": "pi-kitchen", "job_type": "thumbnails",
  "host_id": "pi-kitchen", "cost_units": 20, "cost_class": "NORMAL", "priority": "NORMAL",
  "expected_duration_sec": 120,
  "constraints": {"cpu_heavy": true, "disk_write_heavy": false, "network_heavy": false},
  "request_id": "r-17", "reply_to": "workers/pi-kitchen/inbox"})";

} // namespace

TEST(lease_codec, parses_the_spec_request_v311) {
  auto r = parse(spec_request);
  ASSERT_TRUE(std::holds_alternative<lease_request>(r));
  auto& q = std::get<lease_request>(r);
  EXPECT_EQ(q.worker_id, "pi-kitchen");
  EXPECT_EQ(q.job_type, "thumbnails");
  EXPECT_EQ(q.host_id, "pi-kitchen");
  EXPECT_EQ(q.cost_units, 20);
  EXPECT_EQ(q.cost_class_, cost_class::normal);
  EXPECT_EQ(q.priority, work_priority::normal);
  EXPECT_EQ(q.expected_duration_sec, 120);
  EXPECT_TRUE(q.constraints.cpu_heavy);
  EXPECT_FALSE(q.constraints.network_heavy);
  EXPECT_EQ(q.request_id, "r-17");
  EXPECT_EQ(q.reply_to, "workers/pi-kitchen/inbox");
  EXPECT_EQ(q.gpu, 0) << "no GPU unless asked for";
  auto g = parse(R"({"worker_id": "w", "gpu": 2})");
  ASSERT_TRUE(std::holds_alternative<lease_request>(g));
  EXPECT_EQ(std::get<lease_request>(g).gpu, 2);
}

TEST(lease_codec, parses_a_minimal_v5_request_in_msgpack) {
  // v5 clients carry correlation in properties: no request_id, no reply_to.
  json doc = {{"v", 1}, {"addon_id", "nuc-1"}, {"cost_class", "high"}, {"priority", "High"}};
  auto bytes = json::to_msgpack(doc);
  std::string payload(bytes.begin(), bytes.end());
  auto r = parse(payload, msgpack_content_type);
  ASSERT_TRUE(std::holds_alternative<lease_request>(r));
  auto& q = std::get<lease_request>(r);
  EXPECT_EQ(q.worker_id, "nuc-1"); // the alias
  EXPECT_EQ(q.cost_class_, cost_class::high);
  EXPECT_EQ(q.priority, work_priority::high);
  EXPECT_FALSE(q.cost_units);
  EXPECT_TRUE(q.request_id.empty());
  EXPECT_TRUE(q.reply_to.empty());
  // Detected without a content type too.
  EXPECT_TRUE(std::holds_alternative<lease_request>(parse(payload)));
}

TEST(lease_codec, numeric_request_ids_are_kept_as_text) {
  auto r = parse(R"({"worker_id":"w","request_id":17})");
  ASSERT_TRUE(std::holds_alternative<lease_request>(r));
  EXPECT_EQ(std::get<lease_request>(r).request_id, "17");
}

TEST(lease_codec, precise_errors) {
  struct row {
    std::string payload;
    lease_error_code code;
    std::string message;
  };
  std::vector<row> rows = {
    {"", lease_error_code::invalid_json,
     "payload: expected a JSON or msgpack object, got an empty payload"},
    {"{\"worker_id\": \"w\", ", lease_error_code::invalid_json, "payload: not valid JSON: "},
    {"{\"worker_id\": \"w\"} trailing", lease_error_code::invalid_json,
     "payload: not valid JSON: "},
    {"not json", lease_error_code::invalid_json, "payload: not valid JSON: "},
    {"[1,2]", lease_error_code::invalid_request, "payload: expected an object, got array"},
    {"{}", lease_error_code::invalid_request,
     "missing field 'worker_id' (or its alias 'addon_id'): expected a string"},
    {R"({"worker_id": 7})", lease_error_code::invalid_request,
     "field 'worker_id': expected a string, got number"},
    {R"({"worker_id": "a/b"})", lease_error_code::invalid_request,
     "field 'worker_id': expected 1-64 characters from [a-zA-Z0-9_-], got 'a/b'"},
    {R"({"worker_id": "a", "addon_id": "b"})", lease_error_code::invalid_request,
     "fields 'worker_id' and 'addon_id' (its alias) disagree: 'a' vs 'b'"},
    {R"({"worker_id": "w", "cost_units": "20"})", lease_error_code::invalid_request,
     "field 'cost_units': expected an integer from 1 to 100, got string"},
    {R"({"worker_id": "w", "cost_units": 0})", lease_error_code::invalid_request,
     "field 'cost_units': expected an integer from 1 to 100, got 0"},
    {R"({"worker_id": "w", "cost_units": 101})", lease_error_code::invalid_request,
     "field 'cost_units': expected an integer from 1 to 100, got 101"},
    {R"({"worker_id": "w", "cost_units": 2.5})", lease_error_code::invalid_request,
     "field 'cost_units': expected an integer from 1 to 100, got 2.5"},
    {R"({"worker_id": "w", "gpu": 17})", lease_error_code::invalid_request,
     "field 'gpu': expected the number of GPUs the work needs, an integer from 0 to 16, got 17"},
    {R"({"worker_id": "w", "gpu": -1})", lease_error_code::invalid_request,
     "field 'gpu': expected the number of GPUs the work needs, an integer from 0 to 16, got -1"},
    {R"({"worker_id": "w", "gpu": 0.5})", lease_error_code::invalid_request,
     "field 'gpu': expected the number of GPUs the work needs, an integer from 0 to 16, got 0.5"},
    {R"({"worker_id": "w", "gpu": "one"})", lease_error_code::invalid_request,
     "field 'gpu': expected the number of GPUs the work needs, an integer from 0 to 16, got string"},
    {R"({"worker_id": "w", "priority": "urgent"})", lease_error_code::invalid_request,
     "field 'priority': expected one of LOW, NORMAL, HIGH (any case), got 'urgent'"},
    {R"({"worker_id": "w", "priority": 3})", lease_error_code::invalid_request,
     "field 'priority': expected one of LOW, NORMAL, HIGH (any case), got number"},
    {R"({"worker_id": "w", "cost_class": "huge"})", lease_error_code::invalid_request,
     "field 'cost_class': expected one of LOW, NORMAL, HIGH (any case), got 'huge'"},
    {R"({"worker_id": "w", "constraints": []})", lease_error_code::invalid_request,
     "field 'constraints': expected an object, got array"},
    {R"({"worker_id": "w", "constraints": {"cpu_heavy": "yes"}})",
     lease_error_code::invalid_request,
     "field 'constraints.cpu_heavy': expected a boolean, got string"},
    {R"({"worker_id": "w", "expected_duration_sec": "2m"})", lease_error_code::invalid_request,
     "field 'expected_duration_sec': expected a number, got string"},
    {R"({"worker_id": "w", "reply_to": "workers/#"})", lease_error_code::invalid_request,
     "field 'reply_to': expected a topic without wildcards, got 'workers/#'"},
    {R"({"worker_id": "w", "reply_to": 5})", lease_error_code::invalid_request,
     "field 'reply_to': expected a string, got number"},
    {R"({"v": 2, "worker_id": "w"})", lease_error_code::version_mismatch,
     "field 'v': this lull speaks schema version 1, got 2"},
    {R"({"v": "1", "worker_id": "w"})", lease_error_code::invalid_request,
     "field 'v': expected an integer, got string"},
  };
  for (auto& r : rows) {
    SCOPED_TRACE(r.payload);
    auto e = error_of(r.payload);
    EXPECT_STREQ(to_string(e.code), to_string(r.code));
    EXPECT_EQ(e.message.rfind(r.message, 0), 0u) << e.message;
  }
}

TEST(lease_codec, truncated_msgpack_is_invalid) {
  json doc = {{"worker_id", "w"}, {"cost_units", 20}};
  auto bytes = json::to_msgpack(doc);
  std::string payload(bytes.begin(), bytes.end() - 3);
  auto e = std::get<lease_error>(
    decode_payload(payload, msgpack_content_type, lease_limits));
  EXPECT_EQ(e.code, lease_error_code::invalid_json);
  EXPECT_EQ(e.message.rfind("payload: not valid msgpack: ", 0), 0u) << e.message;
}

TEST(lease_codec, oversized_payload_is_refused_before_decoding) {
  std::string big = "{\"worker_id\":\"w\",\"job_type\":\"" + std::string(20000, 'x') + "\"}";
  auto e = error_of(big);
  EXPECT_EQ(e.code, lease_error_code::payload_too_large);
  EXPECT_EQ(e.message, "payload: expected at most 16384 bytes, got 20031");
}

TEST(lease_codec, long_strings_are_refused_with_the_limit) {
  std::string req = "{\"worker_id\":\"w\",\"job_type\":\"" + std::string(200, 'x') + "\"}";
  EXPECT_EQ(error_of(req).message,
            "field 'job_type': expected at most 128 characters, got 200");
}

TEST(lease_codec, actions) {
  auto r = parse_lease_action(json::parse(R"({"worker_id":"w","progress":0.5,
    "message":"half","accounting":{"cpu_sec":3}})"),
                              "report");
  ASSERT_TRUE(std::holds_alternative<lease_action_request>(r));
  EXPECT_EQ(std::get<lease_action_request>(r).progress, 0.5);
  EXPECT_EQ(std::get<lease_action_request>(r).accounting["cpu_sec"], 3);
  auto bad = parse_lease_action(json::parse(R"({"worker_id":"w","progress":2})"), "report");
  ASSERT_TRUE(std::holds_alternative<lease_error>(bad));
  EXPECT_EQ(std::get<lease_error>(bad).message,
            "field 'progress': expected a number from 0 to 1, got 2");
  // An empty payload (mosquitto_pub -n) is a valid admin revoke.
  EXPECT_TRUE(std::holds_alternative<lease_action_request>(parse_lease_action(json(), "revoke")));
}

TEST(lease_codec, replies_follow_the_wire_contract) {
  lease_grant_reply g;
  g.request_id = "r-17";
  g.approved = true;
  g.lease_id = "abc";
  g.host_id = "pi-kitchen";
  g.fencing_token = 42;
  g.ttl_sec = 30;
  g.heartbeat_interval_sec = 10;
  g.expires_at = 1795428030; // 2026-11-23T10:00:30Z
  g.reason = "Granted: used=20/60 units";
  g.cost_units = 20;
  auto j = to_json(g);
  EXPECT_EQ(j["v"], 1);
  EXPECT_EQ(j["request_id"], "r-17");
  EXPECT_EQ(j["approved"], true);
  EXPECT_EQ(j["lease_id"], "abc");
  EXPECT_EQ(j["fencing_token"], 42);
  EXPECT_EQ(j["limits"]["heartbeat_ttl_sec"], 30);
  EXPECT_EQ(j["limits"]["heartbeat_interval_sec"], 10);
  EXPECT_EQ(j["expires_at"], "2026-11-23T10:00:30Z");
  EXPECT_FALSE(j.contains("retry_after_sec"));
  auto back = grant_reply_from_json(j);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->fencing_token, 42u);
  EXPECT_EQ(back->expires_at, g.expires_at);

  lease_grant_reply d;
  d.request_id = "r-18";
  d.reason = "System is BUSY; waiting for QUIET";
  d.retry_after_sec = 16.2;
  auto dj = to_json(d);
  EXPECT_EQ(dj["approved"], false);
  EXPECT_FALSE(dj.contains("lease_id"));
  EXPECT_EQ(dj["retry_after_sec"], 16.2);

  auto m = make_error_reply({"workers/w/inbox", {}, "r-19", wire_format::json},
                            {lease_error_code::not_holder, "lease x is not held by w"});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->payload, R"({"error":{"code":"NotHolder","message":"lease x is not held by w"},)"
                      R"("ok":false,"request_id":"r-19","v":1})");
}

TEST(lease_codec, a_claim_of_init_or_of_a_cgroup_not_the_leases_own_is_refused) {
  const std::string id = "0123456789abcdef0123456789abcdef";
  EXPECT_EQ(lease_cgroup_name(id), "lull-lease-0123456789abcdef");
  EXPECT_TRUE(claim_refusal({1, std::nullopt, ""}, id));
  EXPECT_TRUE(claim_refusal({0, std::nullopt, ""}, id));
  EXPECT_TRUE(claim_refusal({4242, std::nullopt, "/"}, id));
  EXPECT_TRUE(claim_refusal({4242, std::nullopt, "/user.slice"}, id));
  EXPECT_TRUE(claim_refusal({4242, std::nullopt, "/lull-lease-fedcba9876543210"}, id));
  auto why = claim_refusal({4242, std::nullopt, "/user.slice/lull-lease-0123"}, id);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("lull-lease-0123456789abcdef"), std::string::npos) << *why;
  EXPECT_FALSE(claim_refusal({4242, std::nullopt, ""}, id));
  EXPECT_FALSE(claim_refusal(
    {4242, std::nullopt, "/user.slice/user-1000.slice/session-3.scope/lull-lease-0123456789abcdef"},
    id));
}
