#include "src/bus/retained_cache.hpp"

namespace lull {

retained_cache::noted retained_cache::note(const mqtt_message& msg) {
  auto it = by_topic_.find(msg.topic);
  if (it == by_topic_.end()) {
    if (!msg.retain || msg.payload.empty())
      return noted::ignored;
    auto size = msg.topic.size() + msg.payload.size();
    if (by_topic_.size() >= max_topics_ || bytes_ + size > max_bytes_) {
      ++refused_;
      return noted::refused;
    }
    bytes_ += size;
    by_topic_.emplace(msg.topic, msg).first->second.hold.reset();
    return noted::kept;
  }
  bytes_ -= it->second.topic.size() + it->second.payload.size();
  if (msg.payload.empty()) {
    by_topic_.erase(it);
    return noted::cleared;
  }
  bytes_ += msg.topic.size() + msg.payload.size();
  it->second = msg;
  it->second.retain = true;
  it->second.hold.reset(); // kept here, it holds no lane's budget
  return noted::updated;
}

void retained_cache::clear() {
  by_topic_.clear();
  bytes_ = 0;
}

} // namespace lull
