#pragma once
/// What the MQTT bridge and the other actors hand each other: one MQTT
/// message with the v5 properties lull uses.

#include <string>

#include <caf/meta/type_name.hpp>

namespace lull {

struct mqtt_message {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
  std::string content_type;     ///< v5 CONTENT_TYPE
  std::string response_topic;   ///< v5 RESPONSE_TOPIC of a request
  std::string correlation_data; ///< v5 CORRELATION_DATA, echoed in replies
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mqtt_message& x) {
  return f(caf::meta::type_name("mqtt_message"), x.topic, x.payload, x.qos, x.retain,
           x.content_type, x.response_topic, x.correlation_data);
}

} // namespace lull
