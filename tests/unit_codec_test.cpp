#include <gtest/gtest.h>

#include <msgpack.hpp>

#include "messages/codec.hpp"
#include "messages/host_snapshot.hpp"
#include "messages/quiet.hpp"

using namespace lull;

namespace {

host_snapshot sample_snapshot() {
  host_snapshot s;
  s.host_id = "pi-kitchen";
  s.collected_at = 1795420800; // 2026-11-23T00:00:00Z... any fixed instant
  s.cpu_pct = 12.5;
  s.cpu_per_core_pct = {10.0, std::nullopt, 15.0, 20.0};
  s.cpu_count = 4;
  s.cpu_temp_c = 51.3;
  s.cpu_freq_mhz = 1500;
  throttle_flags t;
  t.raw = 0x50005;
  t.under_voltage = true;
  t.throttled = true;
  t.under_voltage_occurred = true;
  t.throttled_occurred = true;
  s.throttling = t;
  s.load1 = 0.5;
  s.load5 = 0.25;
  s.load15 = 0.1;
  s.mem_total_bytes = 4ull << 30;
  s.mem_available_bytes = 3ull << 30;
  s.mem_used_pct = 25;
  s.mem_available_pct = 75;
  s.swap_total_bytes = 0;
  s.swap_used_bytes = 0;
  s.swap_used_pct = 0;
  s.disks = {{"/", 32ull << 30, 8ull << 30, 25.0}, {"/data", std::nullopt, std::nullopt, std::nullopt}};
  s.net_rx_bytes = 123456789012ull;
  s.net_tx_bytes = 42;
  s.interfaces = {{"eth0", 123456789012ull, 42, 1000.5, std::nullopt}};
  s.uptime_sec = 3600.5;
  s.boot_time = s.collected_at - 3600;
  s.errors = {"cpu.temp_c: 130.0 outside 0-120"};
  return s;
}

} // namespace

TEST(codec, host_snapshot_round_trips_through_json) {
  auto s = sample_snapshot();
  auto wire = encode(to_json(s), wire_format::json);
  auto back = host_snapshot_from_json(*decode(wire, wire_format::json));
  EXPECT_EQ(to_json(back), to_json(s));
  EXPECT_EQ(back.host_id, "pi-kitchen");
  EXPECT_FALSE(back.cpu_per_core_pct[1].has_value());
  EXPECT_EQ(back.throttling->raw, 0x50005u);
  EXPECT_EQ(back.net_rx_bytes, 123456789012ull);
}

TEST(codec, host_snapshot_round_trips_through_msgpack) {
  auto s = sample_snapshot();
  auto wire = encode(to_json(s), wire_format::msgpack);
  EXPECT_LT(wire.size(), encode(to_json(s), wire_format::json).size());
  EXPECT_EQ(detect_format(wire, ""), wire_format::msgpack);
  auto back = host_snapshot_from_json(*decode(wire, wire_format::msgpack));
  EXPECT_EQ(to_json(back), to_json(s));
}

TEST(codec, msgpack_payload_is_readable_by_msgpack_c) {
  // A worker written against msgpack-c must read what lull sends.
  auto wire = encode(to_json(sample_snapshot()), wire_format::msgpack);
  auto handle = msgpack::unpack(wire.data(), wire.size());
  auto map = handle.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(map.at("host_id").as<std::string>(), "pi-kitchen");
  EXPECT_EQ(map.at("v").as<int>(), schema_version);
  auto cpu = map.at("cpu").as<std::map<std::string, msgpack::object>>();
  EXPECT_DOUBLE_EQ(cpu.at("total_pct").as<double>(), 12.5);
  EXPECT_DOUBLE_EQ(cpu.at("freq_mhz").as<double>(), 1500.0);
  EXPECT_TRUE(cpu.at("temp_c").type == msgpack::type::FLOAT64
              || cpu.at("temp_c").type == msgpack::type::FLOAT32);
}

TEST(codec, missing_values_are_null_on_the_wire) {
  host_snapshot s;
  s.host_id = "nuc";
  auto j = to_json(s);
  EXPECT_TRUE(j["cpu"]["temp_c"].is_null());
  EXPECT_TRUE(j["cpu"]["throttling"].is_null());
  EXPECT_TRUE(j["load"]["1m"].is_null());
  EXPECT_EQ(j["v"], schema_version);
}

TEST(codec, format_detection_prefers_content_type) {
  EXPECT_EQ(detect_format("{\"a\":1}", ""), wire_format::json);
  EXPECT_EQ(detect_format("  \n{", ""), wire_format::json);
  EXPECT_EQ(detect_format("\x81\xa1" "a\x01", ""), wire_format::msgpack);
  EXPECT_EQ(detect_format("{", "application/msgpack"), wire_format::msgpack);
  EXPECT_EQ(detect_format("\x81", "application/json"), wire_format::json);
}

TEST(codec, decode_reports_where_json_breaks) {
  decode_error err;
  EXPECT_FALSE(decode("{\"worker_id\": ", wire_format::json, &err));
  EXPECT_NE(err.message.find("unexpected end of input"), std::string::npos) << err.message;
  EXPECT_FALSE(decode("\xc1", wire_format::msgpack, &err));
  EXPECT_FALSE(err.message.empty());
}

TEST(codec, utc_timestamps_round_trip) {
  EXPECT_EQ(utc_timestamp(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(utc_timestamp(1795428000), "2026-11-23T10:00:00Z");
  EXPECT_EQ(parse_utc_timestamp("2026-11-23T10:00:30Z"), 1795428030);
  EXPECT_FALSE(parse_utc_timestamp("2026-11-23 10:00:30"));
  EXPECT_FALSE(parse_utc_timestamp("2026-11-23T10:00:30+01:00"));
}

TEST(codec, snapshot_with_wrong_schema_version_is_refused) {
  auto j = to_json(sample_snapshot());
  j["v"] = 99;
  EXPECT_THROW(host_snapshot_from_json(j), nlohmann::json::exception);
}

TEST(codec, quiet_assessment_round_trips_and_accepts_any_case) {
  quiet_assessment q;
  q.host_id = "nuc";
  q.assessed_at = 1795428000;
  q.quiet_score = 87.5;
  q.state = quiet_state::busy;
  q.reasons = {"cpu_avg_2m 71% above 60%"};
  q.inputs = {{"cpu_avg_2m", 71.0}};
  q.cooldown_until = 1795428300;
  auto j = to_json(q);
  EXPECT_EQ(j["state"], "BUSY");
  j["state"] = "busy";
  auto back = quiet_assessment_from_json(j);
  EXPECT_EQ(back.state, quiet_state::busy);
  EXPECT_EQ(back.cooldown_until, 1795428300);
  EXPECT_EQ(to_json(back), to_json(q));
  j["state"] = "SLEEPY";
  EXPECT_THROW(quiet_assessment_from_json(j), nlohmann::json::exception);
}

// The lease manager reads each host snapshot's cpu.count without building
// the document: the probe refuses what decode() refuses and, where keys
// repeat, takes the last one as decode()'s tree does.
TEST(codec, probe_reads_one_integer_as_the_tree_would) {
  const std::vector<std::string> path{"cpu", "count"};
  struct want {
    const char* json;
    bool accepted, parent;
    std::optional<std::int64_t> integer;
  };
  const want cases[] = {
    {R"({"host_id":"pi","cpu":{"total_pct":3.5,"count":4},"mem":{"count":9}})", true, true, 4},
    {R"({"cpu":{"count":4.0}})", true, true, std::nullopt},
    {R"({"cpu":{"count":"4"}})", true, true, std::nullopt},
    {R"({"cpu":{"count":-2}})", true, true, -2},
    {R"({"cpu":{"count":18446744073709551615}})", true, true, std::nullopt},
    {R"({"cpu":{}})", true, true, std::nullopt},
    {R"({"cpu":[{"count":4}]})", true, false, std::nullopt},
    {R"({"cpu":4})", true, false, std::nullopt},
    {R"({"mem":{"cpu":{"count":4}}})", true, false, std::nullopt},
    {R"({"cpu":{"count":4},"cpu":{"count":8}})", true, true, 8},
    {R"({"cpu":{"count":4},"cpu":null})", true, false, std::nullopt},
    {R"({"cpu":{"count":4,"count":{"n":1}}})", true, true, std::nullopt},
    {R"({"cpu":{"count":{"n":1},"count":6}})", true, true, 6},
    {R"([{"cpu":{"count":4}}])", false, false, std::nullopt}, // decodes; not an object
    {R"(4)", false, false, std::nullopt},                     // decodes; not an object
    {R"({"cpu":{"count":4}} trailing)", false, false, std::nullopt},
    {R"({"cpu":{"count":4},"x":1e400})", false, false, std::nullopt},
    {R"({"cpu":{"count":4)", false, false, std::nullopt},
  };
  for (auto& c : cases) {
    auto got = probe_integer(c.json, wire_format::json, path);
    ASSERT_EQ(got.has_value(), c.accepted) << c.json;
    // decode() agrees on what is accepted (the probe also wants an object).
    auto tree = decode(c.json, wire_format::json);
    EXPECT_EQ(tree.has_value() && tree->is_object(), c.accepted) << c.json;
    if (!got)
      continue;
    EXPECT_EQ(got->parent_object, c.parent) << c.json;
    EXPECT_EQ(got->integer, c.integer) << c.json;
    // The same document as msgpack reads the same (nlohmann keeps the last
    // of a repeated key, so the msgpack has no repeats; the answer holds).
    auto doc = nlohmann::json::parse(c.json);
    auto packed = encode(doc, wire_format::msgpack);
    auto again = probe_integer(packed, wire_format::msgpack, path);
    ASSERT_TRUE(again) << c.json;
    EXPECT_EQ(again->parent_object, c.parent) << c.json;
    EXPECT_EQ(again->integer, c.integer) << c.json;
  }
  // Refused as decode() refuses: too deep, too large, invalid UTF-8 in
  // msgpack, NaN in msgpack.
  std::string deep = R"({"cpu":{"count":4},"x":)" + std::string(40, '[') + std::string(40, ']') + "}";
  EXPECT_FALSE(probe_integer(deep, wire_format::json, path));
  EXPECT_FALSE(probe_integer(R"({"cpu":{"count":4}})", wire_format::json, path, {10, 32, true}));
  std::string bad_utf8 = "\x81\xa3" "cpu" "\xa2\xff\xfe"; // {"cpu": "\xff\xfe"}
  EXPECT_FALSE(decode(bad_utf8, wire_format::msgpack));
  EXPECT_FALSE(probe_integer(bad_utf8, wire_format::msgpack, path));
  std::string nan = std::string("\x81\xa1x\xcb\x7f\xf8\0\0\0\0\0\0", 12); // {"x": NaN}
  EXPECT_FALSE(decode(nan, wire_format::msgpack));
  EXPECT_FALSE(probe_integer(nan, wire_format::msgpack, path));
}

// A snapshot's free text and lists are bounded when it is decoded, so a
// made-up host costs lulld a few kB whatever its agent sends: at most 16
// errors of at most 256 bytes (the last one says how many more there were),
// 32 disks and 64 interfaces with names of at most 256 bytes, and as many
// per-core figures as a host may have CPUs.
TEST(codec, host_snapshot_text_is_bounded_at_decode) {
  auto j = to_json(sample_snapshot());
  j["errors"] = nlohmann::json::array();
  for (int i = 0; i < 1000; ++i)
    j["errors"].push_back(std::string(200 * 1024, 'e'));
  j["errors"][1] = "short";
  j["errors"][2] = 42; // not text: skipped
  for (int i = 0; i < 100; ++i) {
    j["disks"].push_back({{"mount", "/m" + std::to_string(i) + std::string(1000, 'x')},
                          {"free_pct", 50}});
    j["net"]["interfaces"].push_back(
      {{"name", "if" + std::to_string(i)}, {"rx_bytes", 1}, {"tx_bytes", 1}});
  }
  for (int i = 0; i < 5000; ++i)
    j["cpu"]["per_core_pct"].push_back(1.0);
  auto s = host_snapshot_from_json(j);
  ASSERT_EQ(s.errors.size(), host_snapshot_limits::max_errors);
  EXPECT_EQ(s.errors[0].size(), host_snapshot_limits::max_error_bytes);
  EXPECT_EQ(s.errors[0].substr(s.errors[0].size() - 3), "...");
  EXPECT_EQ(s.errors[1], "short");
  EXPECT_EQ(s.errors.back(), "and 984 more errors");
  std::size_t text = 0;
  for (auto& e : s.errors)
    text += e.size();
  EXPECT_LE(text, 16u * 256u);
  EXPECT_EQ(s.disks.size(), host_snapshot_limits::max_disks);
  EXPECT_EQ(s.disks[0].mount, "/"); // the real ones come first and stay whole
  for (auto& d : s.disks)
    EXPECT_LE(d.mount.size(), host_snapshot_limits::max_name_bytes);
  EXPECT_EQ(s.interfaces.size(), host_snapshot_limits::max_interfaces);
  EXPECT_EQ(s.cpu_per_core_pct.size(), host_snapshot_limits::max_cores);
  // What is left dumps cleanly (no cut UTF-8 character).
  EXPECT_NO_THROW(to_json(s).dump());
}

TEST(codec, bounded_text_cuts_at_a_character_boundary) {
  EXPECT_EQ(bounded_text("short", 10), "short");
  EXPECT_EQ(bounded_text("0123456789abc", 10), "0123456...");
  // "é" is two bytes: a cut inside it backs off to the character before.
  std::string accents;
  for (int i = 0; i < 10; ++i)
    accents += "\xc3\xa9";
  auto cut = bounded_text(accents, 10);
  EXPECT_EQ(cut, "\xc3\xa9\xc3\xa9\xc3\xa9...");
  EXPECT_NO_THROW(nlohmann::json(cut).dump());
  std::vector<std::string> big(40, std::string(300, 'a'));
  auto kept = bounded_errors(nlohmann::json(big));
  EXPECT_EQ(kept.size(), 16u);
  EXPECT_EQ(kept.back(), "and 25 more errors");
  EXPECT_TRUE(bounded_errors(nlohmann::json("not a list")).empty());
}
