#pragma once
/// lull's mqtt_message to and from Paho's message, with the v5 properties
/// lull uses (content type, response topic, correlation data). The one place
/// that knows both types: the Paho transport and the tests' MQTT client.

#include <mqtt/message.h>

#include "messages/mqtt_message.hpp"

namespace lull {

inline mqtt_message from_paho(const mqtt::message& m) {
  mqtt_message out;
  out.topic = m.get_topic();
  out.payload = m.get_payload_str();
  out.qos = m.get_qos();
  out.retain = m.is_retained();
  auto& props = m.get_properties();
  if (props.contains(mqtt::property::CONTENT_TYPE))
    out.content_type = mqtt::get<std::string>(props, mqtt::property::CONTENT_TYPE);
  if (props.contains(mqtt::property::RESPONSE_TOPIC))
    out.response_topic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
  if (props.contains(mqtt::property::CORRELATION_DATA))
    out.correlation_data = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
  if (props.contains(mqtt::property::MESSAGE_EXPIRY_INTERVAL))
    out.expiry_sec = static_cast<std::uint32_t>(
      mqtt::get<int>(props, mqtt::property::MESSAGE_EXPIRY_INTERVAL));
  return out;
}

/// `v5`: carry the properties (a v3.1.1 connection has none).
inline mqtt::message_ptr to_paho(const mqtt_message& m, bool v5) {
  auto msg = mqtt::make_message(m.topic, m.payload, m.qos, m.retain);
  if (v5) {
    mqtt::properties props;
    if (!m.content_type.empty())
      props.add({mqtt::property::CONTENT_TYPE, m.content_type});
    if (!m.response_topic.empty())
      props.add({mqtt::property::RESPONSE_TOPIC, m.response_topic});
    if (!m.correlation_data.empty())
      props.add({mqtt::property::CORRELATION_DATA, mqtt::binary_ref(m.correlation_data)});
    if (m.expiry_sec > 0)
      props.add({mqtt::property::MESSAGE_EXPIRY_INTERVAL, static_cast<int>(m.expiry_sec)});
    if (!props.empty())
      msg->set_properties(std::move(props));
  }
  return msg;
}

} // namespace lull
