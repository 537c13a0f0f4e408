#pragma once
/// Small helpers the collector actors share.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "messages/codec.hpp"
#include "messages/mqtt_message.hpp"
#include "messages/util.hpp"
#include "src/log.hpp"

namespace lull {

/// A JSON message as lull publishes it: content type set, QoS 0 unless told.
inline mqtt_message json_message(std::string topic, const nlohmann::json& j, bool retain = false,
                                 int qos = 0) {
  return {std::move(topic), encode(j, wire_format::json), qos, retain, json_content_type, {}, {}};
}

inline std::chrono::milliseconds ms_of(double sec) {
  return std::chrono::milliseconds(static_cast<long long>(sec * 1000.0 + 0.5));
}

/// Inbound messages whose handler failed (threw), in this process; bus stats
/// report it as `handler_failures`.
inline std::atomic<std::uint64_t>& inbound_failures() {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

/// Inbound messages shed before routing (over their source's rate, or their
/// lane full), in this process; bus stats and scheduler/status report it.
inline std::atomic<std::uint64_t>& inbound_shed() {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

/// Runs one inbound handler. Whatever a payload makes it throw is caught,
/// counted and logged with the topic, so no message can take an actor down;
/// returns false then (and otherwise what `f` returns, or true for void).
template <class F>
bool guard_inbound(const char* component, const mqtt_message& msg, F&& f) noexcept {
  try {
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      return true;
    } else {
      return static_cast<bool>(f());
    }
  } catch (const std::exception& e) {
    auto n = inbound_failures().fetch_add(1, std::memory_order_relaxed) + 1;
    try {
      log::warn("{}: message on {} ({} bytes) failed: {} (failures so far: {})", component,
                msg.topic.substr(0, 200), msg.payload.size(), e.what(), n);
    } catch (...) {
    }
  } catch (...) {
    inbound_failures().fetch_add(1, std::memory_order_relaxed);
  }
  return false;
}

} // namespace lull
