// The worker registry: the status schema, lifecycle online -> offline on a
// last-will, stale workers, rejected payloads and retained clears.

#include <gtest/gtest.h>

#include "src/workers/worker_registry.hpp"

using namespace lull;

TEST(worker_registry, announce_then_will_marks_offline) {
  worker_registry r(90);
  auto up = r.on_status("thumbs-1",
                        R"({"v":1,"state":"busy","health":"ok","version":"1.4.2",)"
                        R"("host_id":"pi-kitchen","job_types":["thumbnails"],)"
                        R"("custom":{"queue":3}})",
                        10, 1763900000);
  ASSERT_TRUE(up.ok) << up.error;
  EXPECT_TRUE(up.now_online);
  auto* w = r.find("thumbs-1");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->state, "busy");
  EXPECT_TRUE(w->online);
  EXPECT_EQ(w->version, "1.4.2");
  EXPECT_EQ(w->host_id, "pi-kitchen");
  EXPECT_EQ(w->job_types, std::vector<std::string>{"thumbnails"});
  EXPECT_EQ(w->custom["queue"], 3);

  // The broker publishes the will: a bare "offline".
  up = r.on_status("thumbs-1", "offline", 50, 1763900040);
  ASSERT_TRUE(up.ok);
  EXPECT_TRUE(up.online_changed);
  EXPECT_FALSE(up.now_online);
  w = r.find("thumbs-1");
  EXPECT_FALSE(w->online);
  EXPECT_EQ(w->state, "offline");
  EXPECT_EQ(w->version, "1.4.2") << "a will keeps what lull knew";
  EXPECT_EQ(w->offline_since, 1763900040);
  EXPECT_EQ(w->went_offline, 1u);
  auto j = r.summary("nuc", 1763900040);
  EXPECT_EQ(j["counts"]["offline"], 1);
  EXPECT_EQ(j["workers"]["thumbs-1"]["state"], "offline");
  EXPECT_EQ(j["workers"]["thumbs-1"]["last_seen"], "2025-11-23T12:14:00Z");
}

TEST(worker_registry, json_will_and_coming_back) {
  worker_registry r;
  r.on_status("w", R"({"v":1,"state":"online"})", 0, 100);
  auto up = r.on_status("w", R"({"state":"offline"})", 1, 101);
  EXPECT_TRUE(up.ok);
  EXPECT_FALSE(r.find("w")->online);
  up = r.on_status("w", "ONLINE", 2, 102);
  EXPECT_TRUE(up.online_changed);
  EXPECT_TRUE(r.find("w")->online);
  EXPECT_EQ(r.find("w")->online_since, 102);
  EXPECT_EQ(r.find("w")->updates, 3u);
}

TEST(worker_registry, silent_workers_go_stale_until_they_speak) {
  worker_registry r(60);
  r.on_status("w", R"({"v":1,"state":"idle","health":"degraded","health_detail":"disk slow"})",
              0, 100);
  EXPECT_TRUE(r.check_stale(59).empty());
  EXPECT_EQ(r.check_stale(61), std::vector<std::string>{"w"});
  EXPECT_TRUE(r.check_stale(70).empty()) << "reported once";
  EXPECT_EQ(to_json(*r.find("w"))["health"], "stale");
  EXPECT_EQ(r.summary("h", 0)["counts"]["stale"], 1);
  r.on_status("w", R"({"v":1,"state":"idle"})", 80, 180);
  EXPECT_EQ(to_json(*r.find("w"))["health"], "ok");
}

TEST(worker_registry, bad_payloads_are_rejected_with_the_field_named) {
  worker_registry r;
  struct row {
    const char* payload;
    const char* error_part;
  };
  for (auto [payload, part] :
       {row{"{not json", "expected a JSON object"},
        row{R"({"v":2,"state":"online"})", "v: expected 1"},
        row{R"({"v":1})", "state: required"},
        row{R"({"v":1,"state":"sleeping"})", "state: expected online"},
        row{R"({"v":1,"state":"online","health":"meh"})", "health: expected ok"},
        row{R"({"v":1,"state":"online","version":3})", "version: expected a string"},
        row{R"({"v":1,"state":"online","job_types":"x"})", "job_types: expected an array"},
        row{R"({"v":1,"state":"online","worker_id":"other"})", "does not match the topic"}}) {
    auto up = r.on_status("w", payload, 0, 0);
    EXPECT_FALSE(up.ok) << payload;
    EXPECT_NE(up.error.find(part), std::string::npos) << up.error;
  }
  EXPECT_FALSE(r.find("w")) << "a rejected payload records nothing";
}

TEST(worker_registry, an_empty_retained_payload_forgets_the_worker) {
  worker_registry r;
  r.on_status("w", "online", 0, 0);
  auto up = r.on_status("w", "", 1, 1);
  EXPECT_TRUE(up.removed);
  EXPECT_FALSE(r.find("w"));
}

TEST(worker_registry, understands_the_client_librarys_status_field) {
  // What lull's client library announces and leaves as its will.
  worker_registry r(90);
  auto up = r.on_status("w1", R"({"v":1,"worker_id":"w1","status":"online"})", 1, 1763900000);
  ASSERT_TRUE(up.ok) << up.error;
  EXPECT_TRUE(up.now_online);
  up = r.on_status("w1", R"({"v":1,"worker_id":"w1","status":"stopped"})", 2, 1763900001);
  ASSERT_TRUE(up.ok) << up.error;
  EXPECT_FALSE(r.find("w1")->online);
  EXPECT_FALSE(r.on_status("w1", R"({"v":1,"status":5})", 3, 1763900002).ok);
}
