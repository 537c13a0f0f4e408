// The transport's publish buffer (src/mqtt/fair_queue.hpp): topics take
// turns, order within a topic holds, and a full buffer drops from the
// topic with the most waiting.

#include <gtest/gtest.h>

#include "src/mqtt/fair_queue.hpp"

using namespace lull;

namespace {
mqtt_message msg(const std::string& topic, const std::string& payload) {
  return mqtt_message{topic, payload, 1, false, {}, {}, {}};
}

std::vector<std::string> drain(fair_queue& q) {
  std::vector<std::string> out;
  while (!q.empty()) {
    out.push_back(q.front().topic + ":" + q.front().payload);
    q.pop_front();
  }
  return out;
}
} // namespace

// A flooder's 100 replies wait; another worker's one reply goes second,
// not 101st.
TEST(fair_queue, one_reply_waits_for_one_message_of_each_other_topic) {
  fair_queue q(1000);
  for (int i = 0; i < 100; ++i)
    q.push(msg("workers/wb/reply", std::to_string(i)));
  q.push(msg("workers/wa/reply", "answer"));
  q.push(msg("stats/bus", "report"));
  auto order = drain(q);
  ASSERT_EQ(order.size(), 102u);
  EXPECT_EQ(order[0], "workers/wb/reply:0");
  EXPECT_EQ(order[1], "workers/wa/reply:answer");
  EXPECT_EQ(order[2], "stats/bus:report");
  // The flooder's own replies keep their order.
  for (int i = 1; i < 100; ++i)
    EXPECT_EQ(order[static_cast<std::size_t>(i) + 2], "workers/wb/reply:" + std::to_string(i));
}

// Full, it drops the oldest of the longest line: the flooder's backlog,
// never the lone message of another topic.
TEST(fair_queue, a_full_buffer_drops_from_the_topic_with_the_most) {
  fair_queue q(10);
  q.push(msg("workers/wa/reply", "keep"));
  int dropped = 0;
  for (int i = 0; i < 20; ++i)
    dropped += q.push(msg("workers/wb/reply", std::to_string(i))) ? 1 : 0;
  EXPECT_EQ(dropped, 11);
  EXPECT_EQ(q.size(), 10u);
  auto order = drain(q);
  EXPECT_EQ(order.front(), "workers/wa/reply:keep");
  EXPECT_EQ(order[1], "workers/wb/reply:11"); // 0..10 were the oldest
  EXPECT_EQ(order.back(), "workers/wb/reply:19");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.topics(), 0u);
}
