#pragma once
/// Request/response over MQTT, shared by every request topic lull answers
/// (leases, jobs, history). MQTT v5 clients send a response topic and
/// correlation data, which the reply echoes; v3.1.1 clients (Node-RED's
/// default) put `reply_to` and `request_id` in the payload. A reply uses the
/// format (JSON or msgpack) of its request.

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "messages/codec.hpp"
#include "messages/mqtt_message.hpp"

namespace lull {

/// Error codes of an error reply, after AWS IoT Jobs' MQTT API.
enum class error_code {
  invalid_json,
  invalid_request,
  resource_not_found,
  not_holder,
  invalid_state_transition,
  version_mismatch,
  request_throttled,
  payload_too_large,
  internal_error,
};

const char* to_string(error_code c);

/// Where and how to answer one request.
struct reply_route {
  std::string topic;            ///< empty: the request cannot be answered
  std::string correlation_data; ///< v5, echoed
  nlohmann::json request_id;    ///< echoed as "request_id" (null when absent)
  wire_format format = wire_format::json;
};

/// A decoded request: its document (when it parsed) and its reply route.
struct inbound_request {
  std::optional<nlohmann::json> doc;
  reply_route route;
  std::optional<std::pair<error_code, std::string>> error; ///< set when unusable
};

/// Decodes a request, refusing payloads above `max_bytes`. The route is filled
/// from v5 properties, or from the payload's reply_to / request_id when they
/// are there and well-formed.
inbound_request decode_request(const mqtt_message& msg, size_t max_bytes);

/// The reply message for `body` ("v" and "request_id" added), or nullopt
/// when the request gave no way to answer.
std::optional<mqtt_message> make_reply(const reply_route& route, nlohmann::json body);

/// {"v":1,"request_id":..,"ok":false,"error":{"code":..,"message":..}}
std::optional<mqtt_message> make_error_reply(const reply_route& route, error_code code,
                                             const std::string& message);

} // namespace lull
