#pragma once
/// Small helpers the collector actors share.

#include <chrono>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "messages/codec.hpp"
#include "messages/mqtt_message.hpp"

namespace lull {

inline std::int64_t unix_seconds_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// A JSON message as lull publishes it: content type set, QoS 0 unless told.
inline mqtt_message json_message(std::string topic, const nlohmann::json& j, bool retain = false,
                                 int qos = 0) {
  return {std::move(topic), encode(j, wire_format::json), qos, retain, json_content_type, {}, {}};
}

inline std::chrono::milliseconds ms_of(double sec) {
  return std::chrono::milliseconds(static_cast<long long>(sec * 1000.0 + 0.5));
}

} // namespace lull
