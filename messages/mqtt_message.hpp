#pragma once
/// What the MQTT bridge and the other actors hand each other: one MQTT
/// message with the v5 properties lull uses. (Its inspect() for CAF is in
/// actors/atoms.hpp.)

#include <cstdint>
#include <memory>
#include <string>

namespace lull {

struct mqtt_message {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
  std::string content_type;     ///< v5 CONTENT_TYPE
  std::string response_topic;   ///< v5 RESPONSE_TOPIC of a request
  std::string correlation_data; ///< v5 CORRELATION_DATA, echoed in replies
  /// v5 MESSAGE_EXPIRY_INTERVAL in seconds (0: none): the broker drops the
  /// message instead of delivering it later than this (a request nobody
  /// waits for any more).
  std::uint32_t expiry_sec = 0;
  /// Inbound only, never on the wire: the share of its lane's budget the
  /// message holds until its last copy is let go (src/stats/inbound_budget).
  std::shared_ptr<void> hold = nullptr;
};

} // namespace lull
