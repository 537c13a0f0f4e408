#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <unordered_map>

#include "messages/mqtt_message.hpp"

namespace lull {

/// Publishes waiting for the broker, served one topic at a time in turn.
///
/// Under a flood the broker acknowledges slowly, and what lulld publishes
/// waits here. In one first-in-first-out line, another worker's reply waited
/// behind every reply to the flooder; here each topic has its own line and
/// the lines take turns, so a topic with one message waits for at most one
/// message of each other topic. Order within a topic is kept (a worker's
/// replies, a retained state's updates); order across topics is not.
///
/// Bounded: at `capacity` messages the oldest of the longest line goes, so
/// what is dropped is the flooder's own backlog.
class fair_queue {
public:
  explicit fair_queue(std::size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

  /// Adds `m` behind its topic's line; true when a message had to be
  /// dropped to make room.
  bool push(const mqtt_message& m) {
    bool dropped = false;
    if (size_ >= capacity_) {
      drop_oldest_of_longest();
      dropped = true;
    }
    auto& line = lines_[m.topic];
    if (line.empty())
      turn_.push_back(m.topic);
    line.push_back(m);
    ++size_;
    return dropped;
  }

  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  std::size_t topics() const { return turn_.size(); }

  /// The message whose turn it is. Precondition: !empty().
  const mqtt_message& front() const { return lines_.at(turn_.front()).front(); }

  /// Removes front(); its topic goes to the back of the turns.
  void pop_front() {
    auto topic = std::move(turn_.front());
    turn_.pop_front();
    auto it = lines_.find(topic);
    it->second.pop_front();
    --size_;
    if (it->second.empty())
      lines_.erase(it);
    else
      turn_.push_back(std::move(topic));
  }

  void clear() {
    lines_.clear();
    turn_.clear();
    size_ = 0;
  }

private:
  void drop_oldest_of_longest() {
    auto longest = lines_.end();
    for (auto it = lines_.begin(); it != lines_.end(); ++it)
      if (longest == lines_.end() || it->second.size() > longest->second.size())
        longest = it;
    if (longest == lines_.end())
      return;
    longest->second.pop_front();
    --size_;
    if (longest->second.empty()) {
      for (auto t = turn_.begin(); t != turn_.end(); ++t)
        if (*t == longest->first) {
          turn_.erase(t);
          break;
        }
      lines_.erase(longest);
    }
  }

  std::size_t capacity_;
  std::size_t size_ = 0;
  std::unordered_map<std::string, std::deque<mqtt_message>> lines_;
  std::deque<std::string> turn_; ///< topics with waiting messages, next first
};

} // namespace lull
