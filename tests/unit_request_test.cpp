// The one request path every request topic goes through: size cap, depth
// limit, format, envelope, reply route (v5 or reply_to), the secure-mode
// inbox rule and the error code set.

#include <gtest/gtest.h>

#include "messages/request.hpp"

using namespace lull;
using json = nlohmann::json;

namespace {

mqtt_message request(std::string payload, std::string content_type = {}) {
  return {"scheduler/job/get", std::move(payload), 1, false, std::move(content_type), {}, {}};
}

std::string nested(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

} // namespace

TEST(request_path, v311_route_comes_from_the_payload_and_echoes_the_id_as_sent) {
  auto r = decode_request(request(R"({"v":1,"request_id":7,"reply_to":"me/inbox"})"));
  ASSERT_FALSE(r.error);
  EXPECT_EQ(r.route.topic, "me/inbox");
  auto m = make_reply(r.route, {{"ok", true}});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->topic, "me/inbox");
  auto j = json::parse(m->payload);
  EXPECT_EQ(j["request_id"], 7);
  EXPECT_EQ(j["v"], 1);
}

TEST(request_path, v5_route_wins_and_keeps_correlation_and_format) {
  auto bytes = json::to_msgpack({{"reply_to", "ignored"}, {"x", 1}});
  auto in = request(std::string(bytes.begin(), bytes.end()), msgpack_content_type);
  in.response_topic = "v5/reply";
  in.correlation_data = "corr-1";
  auto r = decode_request(in);
  ASSERT_FALSE(r.error);
  auto m = make_reply(r.route, {{"ok", true}});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->topic, "v5/reply");
  EXPECT_EQ(m->correlation_data, "corr-1");
  EXPECT_EQ(m->content_type, msgpack_content_type);
}

TEST(request_path, refused_requests_still_get_answered) {
  auto r = decode_request(request(R"({"v":2,"request_id":"a","reply_to":"me/inbox"})"));
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->code, error_code::version_mismatch);
  auto m = make_error_reply(r.route, *r.error);
  ASSERT_TRUE(m);
  auto j = json::parse(m->payload);
  EXPECT_EQ(j["error"]["code"], "VersionMismatch");
  EXPECT_EQ(j["request_id"], "a");
  EXPECT_EQ(j["ok"], false);
}

TEST(request_path, size_cap_and_empty_payloads) {
  auto big = decode_request(request(std::string(100, ' ') + "{}"), {64, 32});
  ASSERT_TRUE(big.error);
  EXPECT_EQ(big.error->code, error_code::payload_too_large);
  auto empty = decode_request(request(""));
  ASSERT_TRUE(empty.error);
  EXPECT_EQ(empty.error->code, error_code::invalid_json);
  auto allowed = decode_request(request(" "), {}, true);
  EXPECT_FALSE(allowed.error);
  EXPECT_TRUE(allowed.doc.is_null());
}

TEST(request_path, nesting_beyond_the_limit_is_refused_in_both_formats) {
  auto ok = decode_payload("{\"a\":" + nested(31) + "}", {}, {});
  EXPECT_TRUE(std::holds_alternative<json>(ok));
  auto deep = decode_payload("{\"a\":" + nested(32) + "}", {}, {});
  ASSERT_TRUE(std::holds_alternative<request_error>(deep));
  EXPECT_EQ(std::get<request_error>(deep).code, error_code::invalid_request);
  EXPECT_EQ(std::get<request_error>(deep).message,
            "payload: expected at most 32 levels of nesting");
  // 100,000 nested msgpack arrays (0x91 = array of one) stop at the limit
  // instead of recursing 100,000 times.
  std::string bytes(100000, '\x91');
  bytes += '\x01';
  auto mp = decode_payload(bytes, msgpack_content_type, {1 << 20, 32});
  ASSERT_TRUE(std::holds_alternative<request_error>(mp));
  EXPECT_EQ(std::get<request_error>(mp).code, error_code::invalid_request);
}

TEST(request_path, garbage_names_the_format) {
  auto r = decode_payload("{\"a\": ", {}, {});
  ASSERT_TRUE(std::holds_alternative<request_error>(r));
  EXPECT_EQ(std::get<request_error>(r).message.rfind("payload: not valid JSON: ", 0), 0u);
  auto t = decode_payload("{} trailing", {}, {});
  EXPECT_TRUE(std::holds_alternative<request_error>(t));
}

TEST(request_path, secure_mode_answers_a_named_sender_only_in_its_inbox) {
  topic_names t("lab/");
  EXPECT_TRUE(reply_allowed("anything", t, false, std::string("w1")));
  EXPECT_TRUE(reply_allowed("lab/workers/w1/inbox", t, true, std::string("w1")));
  EXPECT_FALSE(reply_allowed("lab/workers/w2/inbox", t, true, std::string("w1")));
  EXPECT_FALSE(reply_allowed("lab/scheduler/status", t, true, std::string("w1")));
  EXPECT_FALSE(reply_allowed("lab/workers/x/inbox", t, true, std::string()));
  // Topics naming nobody are the admin's (broker ACL): any reply topic.
  EXPECT_TRUE(reply_allowed("admin/replies", t, true, std::nullopt));
  EXPECT_FALSE(reply_allowed("admin/#", t, true, std::nullopt));
}

TEST(request_path, error_codes_have_one_name_each) {
  EXPECT_STREQ(to_string(error_code::invalid_json), "InvalidJson");
  EXPECT_STREQ(to_string(error_code::request_throttled), "RequestThrottled");
  EXPECT_STREQ(to_string(error_code::internal_error), "InternalError");
  EXPECT_EQ(json(error_code::not_holder), "NotHolder");
  EXPECT_EQ(json("PayloadTooLarge").get<error_code>(), error_code::payload_too_large);
}
