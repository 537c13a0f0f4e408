// The one request path every request topic goes through: size cap, depth
// limit, format, envelope, reply route (v5 or reply_to), the secure-mode
// inbox rule and the error code set; and the page builder every list reply
// is cut with (messages/page.hpp).

#include <gtest/gtest.h>

#include "messages/codec.hpp"
#include "messages/page.hpp"
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
  EXPECT_STREQ(to_string(error_code::reply_too_large), "ReplyTooLarge");
}

namespace {

/// A list of `n` items of about `bytes` each, keyed 1..n, as a service
/// would list them from its store: everything after `after`.
struct fake_list {
  std::vector<json> rows;
  fake_list(std::size_t n, std::size_t bytes) {
    for (std::size_t i = 1; i <= n; ++i)
      rows.push_back({{"id", i}, {"text", std::string(bytes, 'x')}});
  }
  /// One page, as a service answers a request with `cursor` and `limit`.
  std::variant<json, request_error> page(const reply_route& route, const std::string& cursor,
                                         std::size_t limit, std::size_t max_bytes) {
    std::size_t after = cursor.empty() ? 0 : std::stoul(cursor.substr(1));
    std::vector<const json*> rest;
    for (auto& r : rows)
      if (r["id"].get<std::size_t>() > after && rest.size() <= limit)
        rest.push_back(&r);
    page_spec spec;
    spec.field = "items";
    spec.limit = limit;
    spec.max_bytes = max_bytes;
    return build_page(route, {{"ok", true}}, rest.size(),
                      [&](std::size_t i) {
                        auto id = (*rest[i])["id"].get<std::size_t>();
                        return page_item{*rest[i], "i" + std::to_string(id), {},
                                         "item " + std::to_string(id)};
                      },
                      spec);
  }
};

} // namespace

TEST(page_builder, pages_stay_within_the_budget_and_lose_or_repeat_nothing) {
  for (auto format : {wire_format::json, wire_format::msgpack}) {
    fake_list list(500, 300);
    reply_route route{"r", "", json("req-17"), format};
    std::vector<std::size_t> seen;
    std::string cursor;
    int pages = 0;
    while (true) {
      auto p = list.page(route, cursor, 1000, 8192);
      ASSERT_TRUE(std::holds_alternative<json>(p)) << std::get<request_error>(p).message;
      auto& body = std::get<json>(p);
      auto m = make_reply(route, body);
      ASSERT_TRUE(m);
      EXPECT_LE(m->payload.size(), 8192u);
      // Full pages: another item would not have fitted.
      if (body.contains("next")) {
        EXPECT_GT(m->payload.size() + 400, 8192u);
      }
      ++pages;
      for (auto& it : body["items"])
        seen.push_back(it["id"].get<std::size_t>());
      if (!body.contains("next"))
        break;
      cursor = body["next"].get<std::string>();
      // Rows added while a client pages come after it, never in between.
      if (pages == 3)
        list.rows.push_back({{"id", 501}, {"text", "late"}});
      ASSERT_LT(pages, 1000);
    }
    ASSERT_EQ(seen.size(), 501u);
    for (std::size_t i = 0; i < seen.size(); ++i)
      EXPECT_EQ(seen[i], i + 1);
    EXPECT_GT(pages, 10); // about 24 items of 300 bytes a page
  }
}

TEST(page_builder, the_limit_caps_a_page_and_the_last_page_has_no_next) {
  fake_list list(30, 10);
  reply_route route{"r", "", nullptr, wire_format::json};
  auto p = std::get<json>(list.page(route, "", 20, 65536));
  EXPECT_EQ(p["items"].size(), 20u);
  EXPECT_EQ(p["next"], "i20");
  auto rest = std::get<json>(list.page(route, "i20", 20, 65536));
  EXPECT_EQ(rest["items"].size(), 10u);
  EXPECT_FALSE(rest.contains("next"));
  auto none = std::get<json>(list.page(route, "i30", 20, 65536));
  EXPECT_TRUE(none["items"].empty());
  EXPECT_FALSE(none.contains("next"));
}

TEST(page_builder, an_item_that_can_never_fit_is_reply_too_large_naming_the_limit) {
  fake_list list(3, 10);
  list.rows[1]["text"] = std::string(9000, 'y');
  reply_route route{"r", "", nullptr, wire_format::json};
  auto first = std::get<json>(list.page(route, "", 100, 4096));
  ASSERT_EQ(first["items"].size(), 1u) << "the items before the large one still come";
  EXPECT_EQ(first["next"], "i1");
  auto p = list.page(route, "i1", 100, 4096);
  ASSERT_TRUE(std::holds_alternative<request_error>(p));
  auto& e = std::get<request_error>(p);
  EXPECT_EQ(e.code, error_code::reply_too_large);
  EXPECT_NE(e.message.find("item 2"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("4096 bytes"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("limits.max_reply_bytes"), std::string::npos) << e.message;
  EXPECT_EQ(json(error_body(e))["error"]["code"], "ReplyTooLarge");
}

TEST(page_builder, a_long_request_id_counts_against_the_budget) {
  fake_list list(100, 50);
  reply_route route{"r", "", json(std::string(3000, 'q')), wire_format::json};
  auto p = std::get<json>(list.page(route, "", 100, 4096));
  EXPECT_LE(make_reply(route, p)->payload.size(), 4096u);
  EXPECT_LT(p["items"].size(), 20u);
}

TEST(page_builder, object_lists_are_keyed) {
  reply_route route{"r", "", nullptr, wire_format::msgpack};
  page_spec spec;
  spec.field = "workers";
  spec.object = true;
  spec.max_bytes = 4096;
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i)
    ids.push_back("w" + std::to_string(1000 + i));
  auto p = std::get<json>(build_page(route, {{"ok", true}}, ids.size(),
                                     [&](std::size_t i) {
                                       return page_item{{{"grants", i}}, "w" + ids[i], ids[i],
                                                        ids[i]};
                                     },
                                     spec));
  EXPECT_LE(make_reply(route, p)->payload.size(), 4096u);
  ASSERT_TRUE(p["workers"].is_object());
  EXPECT_TRUE(p["workers"].contains("w1000"));
  auto n = p["workers"].size();
  EXPECT_LT(n, 200u);
  EXPECT_EQ(p["next"], "w" + ids[n - 1]);
}

TEST(page_builder, paging_arguments_are_checked) {
  auto ok = std::get<page_args>(parse_page_args(json::object(), 200, 1000));
  EXPECT_EQ(ok.limit, 200u);
  EXPECT_TRUE(ok.cursor.empty());
  auto big = std::get<page_args>(parse_page_args({{"limit", 5000}, {"cursor", "e9"}}, 200, 1000));
  EXPECT_EQ(big.limit, 1000u);
  EXPECT_EQ(big.cursor, "e9");
  for (auto bad : {json{{"limit", 0}}, json{{"limit", "7"}}, json{{"cursor", 7}},
                   json{{"cursor", std::string(600, 'c')}}}) {
    auto r = parse_page_args(bad, 200, 1000);
    ASSERT_TRUE(std::holds_alternative<request_error>(r)) << bad.dump();
    EXPECT_EQ(std::get<request_error>(r).code, error_code::invalid_request);
  }
}

TEST(page_builder, long_text_is_clipped_on_a_character_boundary_with_a_marker) {
  EXPECT_EQ(clip_text("short", 10), "short");
  auto clipped = clip_text(std::string(245760, 'r'));
  EXPECT_EQ(clipped.size(), 1024u);
  EXPECT_EQ(clipped.substr(0, 990), std::string(990, 'r'));
  EXPECT_NE(clipped.find("... [truncated from 245760 bytes]"), std::string::npos) << clipped;
  EXPECT_EQ(clip_text(clipped), clipped) << "clipping twice changes nothing";
  // "é" is two bytes: a cut inside it backs off to the character before.
  std::string accents;
  for (int i = 0; i < 30; ++i)
    accents += "\xc3\xa9";
  auto cut = clip_text(accents, 42); // the marker takes 29: 13 bytes left, 12 kept
  EXPECT_EQ(cut, accents.substr(0, 12) + "... [truncated from 60 bytes]");
  EXPECT_TRUE(valid_utf8(cut));
}
