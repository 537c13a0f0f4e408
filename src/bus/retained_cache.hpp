#pragma once
/// The latest message on each retained topic the bridge has seen since it
/// last connected, for actors that subscribe to a filter another actor
/// already holds (the broker sends retained messages once per SUBSCRIBE).

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "messages/mqtt_message.hpp"
#include "messages/topics.hpp"

namespace lull {

/// A topic enters with a message the broker flagged as retained, is updated
/// by every later message on it, and leaves with an empty payload (how MQTT
/// clears a retained message). Bounded in topics and bytes; past the bounds
/// new topics are not kept, and counted.
class retained_cache {
public:
  retained_cache(std::size_t max_topics, std::size_t max_bytes)
    : max_topics_(max_topics), max_bytes_(max_bytes) {}

  /// What note() did with a message.
  enum class noted { kept, updated, cleared, ignored, refused };

  noted note(const mqtt_message& msg);

  /// Calls f for each kept message whose topic `filter` matches.
  template <class F>
  void each_matching(const std::string& filter, F&& f) const {
    for (auto& [topic, msg] : by_topic_)
      if (topic_matches(filter, topic))
        f(msg);
  }

  /// On every (re)connect: the broker sends what is retained now.
  void clear();

  std::size_t size() const { return by_topic_.size(); }
  std::size_t bytes() const { return bytes_; }
  std::uint64_t refused() const { return refused_; }
  std::size_t max_topics() const { return max_topics_; }
  std::size_t max_bytes() const { return max_bytes_; }

private:
  std::size_t max_topics_, max_bytes_;
  std::size_t bytes_ = 0;
  std::uint64_t refused_ = 0;
  std::unordered_map<std::string, mqtt_message> by_topic_;
};

} // namespace lull
