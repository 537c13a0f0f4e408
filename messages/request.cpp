#include "messages/request.hpp"

namespace lull {

const char* to_string(error_code c) {
  switch (c) {
    case error_code::invalid_json:
      return "InvalidJson";
    case error_code::invalid_request:
      return "InvalidRequest";
    case error_code::resource_not_found:
      return "ResourceNotFound";
    case error_code::not_holder:
      return "NotHolder";
    case error_code::invalid_state_transition:
      return "InvalidStateTransition";
    case error_code::version_mismatch:
      return "VersionMismatch";
    case error_code::request_throttled:
      return "RequestThrottled";
    case error_code::payload_too_large:
      return "PayloadTooLarge";
    case error_code::internal_error:
      return "InternalError";
  }
  return "InternalError";
}

inbound_request decode_request(const mqtt_message& msg, size_t max_bytes) {
  inbound_request r;
  r.route.format = detect_format(msg.payload, msg.content_type);
  r.route.topic = msg.response_topic;
  r.route.correlation_data = msg.correlation_data;
  if (msg.payload.size() > max_bytes) {
    r.error = {error_code::payload_too_large,
               "payload is " + std::to_string(msg.payload.size()) + " bytes; at most "
                 + std::to_string(max_bytes) + " accepted"};
    return r;
  }
  decode_error err;
  r.doc = decode(msg.payload, r.route.format, &err);
  if (!r.doc) {
    r.error = {error_code::invalid_json,
               std::string(r.route.format == wire_format::msgpack ? "msgpack" : "JSON")
                 + " payload does not parse: " + err.message};
    return r;
  }
  if (!r.doc->is_object()) {
    r.error = {error_code::invalid_request, "payload must be an object"};
    return r;
  }
  auto& d = *r.doc;
  if (auto it = d.find("request_id"); it != d.end() && (it->is_string() || it->is_number()))
    r.route.request_id = *it;
  if (r.route.topic.empty()) {
    if (auto it = d.find("reply_to"); it != d.end()) {
      if (it->is_string() && !it->get<std::string>().empty()
          && it->get<std::string>().find_first_of("+#") == std::string::npos)
        r.route.topic = it->get<std::string>();
      else
        r.error = {error_code::invalid_request,
                   "field 'reply_to' must be a topic name without wildcards"};
    }
  }
  if (!r.error) {
    if (auto it = d.find("v"); it != d.end() && !(it->is_number_integer() && *it == schema_version))
      r.error = {error_code::version_mismatch,
                 "field 'v' must be " + std::to_string(schema_version) + " (schema version)"};
  }
  return r;
}

std::optional<mqtt_message> make_reply(const reply_route& route, nlohmann::json body) {
  if (route.topic.empty())
    return std::nullopt;
  body["v"] = schema_version;
  body["request_id"] = route.request_id;
  return mqtt_message{route.topic,       encode(body, route.format), 1, false,
                      content_type_of(route.format), {}, route.correlation_data};
}

std::optional<mqtt_message> make_error_reply(const reply_route& route, error_code code,
                                             const std::string& message) {
  return make_reply(route, {{"ok", false},
                            {"error", {{"code", to_string(code)}, {"message", message}}}});
}

} // namespace lull
