#pragma once
/// Small helpers the collector actors share.

#include <chrono>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "messages/codec.hpp"
#include "messages/mqtt_message.hpp"
#include "messages/util.hpp"

namespace lull {

/// A JSON message as lull publishes it: content type set, QoS 0 unless told.
inline mqtt_message json_message(std::string topic, const nlohmann::json& j, bool retain = false,
                                 int qos = 0) {
  return {std::move(topic), encode(j, wire_format::json), qos, retain, json_content_type, {}, {}};
}

inline std::chrono::milliseconds ms_of(double sec) {
  return std::chrono::milliseconds(static_cast<long long>(sec * 1000.0 + 0.5));
}

} // namespace lull
