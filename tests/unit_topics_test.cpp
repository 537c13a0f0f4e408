#include <gtest/gtest.h>

#include "messages/topics.hpp"

using namespace lull;

TEST(topics, default_names_follow_the_spec) {
  topic_names t;
  EXPECT_EQ(t.host_stats("nuc"), "stats/host/nuc");
  EXPECT_EQ(t.host_quiet("nuc"), "stats/host/nuc/quiet");
  EXPECT_EQ(t.availability("nuc"), "lull/nuc/availability");
  EXPECT_EQ(t.lease_action("abc", "heartbeat"), "scheduler/lease/abc/heartbeat");
  EXPECT_EQ(t.lease_request(), "scheduler/lease/request");
}

TEST(topics, prefix_is_prepended_and_stripped) {
  topic_names t{"home"};
  EXPECT_EQ(t.host_stats("pi"), "home/stats/host/pi");
  EXPECT_EQ(t.host_stats_filter(), "home/stats/host/+");
  EXPECT_EQ(t.strip("home/stats/bus"), "stats/bus");
  EXPECT_EQ(t.strip("other/stats/bus"), "");
}

TEST(topics, wildcards_match_as_mqtt_does) {
  EXPECT_TRUE(topic_matches("stats/host/+", "stats/host/pi"));
  EXPECT_FALSE(topic_matches("stats/host/+", "stats/host/pi/quiet"));
  EXPECT_TRUE(topic_matches("stats/host/+/quiet", "stats/host/pi/quiet"));
  EXPECT_TRUE(topic_matches("scheduler/#", "scheduler/lease/x/heartbeat"));
  EXPECT_TRUE(topic_matches("scheduler/#", "scheduler"));
  EXPECT_TRUE(topic_matches("#", "a/b"));
  EXPECT_FALSE(topic_matches("stats/host", "stats/host/pi"));
  EXPECT_FALSE(topic_matches("stats/host/pi", "stats/host"));
  EXPECT_TRUE(topic_matches("+/+", "a/b"));
  EXPECT_FALSE(topic_matches("+", "a/b"));
}

TEST(topics, ids_are_restricted_to_safe_characters) {
  EXPECT_TRUE(valid_id("pi-kitchen_2"));
  EXPECT_FALSE(valid_id(""));
  EXPECT_FALSE(valid_id("a/b"));
  EXPECT_FALSE(valid_id("a+b"));
  EXPECT_FALSE(valid_id("host.local"));
  EXPECT_FALSE(valid_id(std::string(65, 'a')));
}
