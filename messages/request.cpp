#include "messages/request.hpp"

#include <cmath>

#include <cctype>

#include "messages/enum_names.hpp"

namespace lull {

namespace {

using json = nlohmann::json;

bool blank(std::string_view s) {
  for (char c : s)
    if (!std::isspace(static_cast<unsigned char>(c)))
      return false;
  return true;
}

request_error invalid(std::string msg) {
  return {error_code::invalid_request, std::move(msg)};
}

/// The envelope every request shares: an object, "v" optional (hand-written
/// requests) but equal to the schema version when present.
std::optional<request_error> check_envelope(const json& doc) {
  if (!doc.is_object())
    return invalid("payload: expected an object, got " + std::string(doc.type_name()));
  auto it = doc.find("v");
  if (it == doc.end() || it->is_null())
    return std::nullopt;
  if (!it->is_number_integer())
    return invalid("field 'v': expected an integer, got " + std::string(it->type_name()));
  auto v = it->get<std::int64_t>();
  if (v != schema_version)
    return request_error{error_code::version_mismatch,
                         "field 'v': this lull speaks schema version "
                           + std::to_string(schema_version) + ", got " + std::to_string(v)};
  return std::nullopt;
}

} // namespace

const char* to_string(error_code c) {
  return enum_name<error_code, static_cast<std::size_t>(error_code::internal_error) + 1>(c);
}

namespace {

/// Step 1 through codec's checked decoder, without its content check, so
/// that decode_request can still read the reply route of a document it then
/// refuses.
std::variant<json, request_error> decode_tree(std::string_view payload,
                                              std::string_view content_type,
                                              const request_limits& limits) {
  if (payload.size() > limits.max_bytes)
    return request_error{error_code::payload_too_large,
                         "payload: expected at most " + std::to_string(limits.max_bytes)
                           + " bytes, got " + std::to_string(payload.size())};
  if (blank(payload))
    return request_error{error_code::invalid_json,
                         "payload: expected a JSON or msgpack object, got an empty payload"};
  auto format = detect_format(payload, content_type);
  decode_error err;
  auto doc = decode(payload, format, &err,
                    {limits.max_bytes, static_cast<int>(limits.max_depth), false});
  if (doc)
    return std::move(*doc);
  if (err.what == decode_error::kind::too_deep)
    return request_error{error_code::invalid_request,
                         "payload: expected at most " + std::to_string(limits.max_depth)
                           + " levels of nesting"};
  return request_error{error_code::invalid_json,
                       std::string("payload: not valid ")
                         + (format == wire_format::msgpack ? "msgpack" : "JSON") + ": "
                         + err.message};
}

std::optional<request_error> check_content(const json& doc) {
  if (auto what = untrusted_content(doc))
    return request_error{error_code::invalid_json, "payload: " + *what};
  return std::nullopt;
}

} // namespace

std::variant<json, request_error> decode_payload(std::string_view payload,
                                                 std::string_view content_type,
                                                 const request_limits& limits) {
  auto decoded = decode_tree(payload, content_type, limits);
  if (auto* doc = std::get_if<json>(&decoded))
    if (auto e = check_content(*doc))
      return *e;
  return decoded;
}

inbound_request decode_request(const mqtt_message& msg, const request_limits& limits,
                               bool empty_ok) {
  inbound_request r;
  r.route.format = detect_format(msg.payload, msg.content_type);
  r.route.topic = msg.response_topic;
  r.route.correlation_data = msg.correlation_data;
  if (empty_ok && blank(msg.payload))
    return r;
  auto decoded = decode_tree(msg.payload, msg.content_type, limits);
  if (auto* e = std::get_if<request_error>(&decoded)) {
    r.error = std::move(*e);
    return r;
  }
  r.doc = std::move(std::get<json>(decoded));
  auto& d = r.doc;
  if (d.is_object()) {
    // The route first, so that even a refused request is answered.
    if (auto it = d.find("request_id");
        it != d.end()
        && ((it->is_string() && valid_utf8(it->get_ref<const std::string&>()))
            || (it->is_number() && !untrusted_content(*it))))
      r.route.request_id = *it;
    if (auto it = d.find("reply_to"); it != d.end() && !it->is_null()) {
      if (!it->is_string())
        r.error = invalid("field 'reply_to': expected a string, got "
                          + std::string(it->type_name()));
      else if (auto& t = it->get_ref<const std::string&>(); !valid_utf8(t))
        r.error = invalid("field 'reply_to': expected a UTF-8 topic");
      else if (t.find_first_of("+#") != std::string::npos)
        r.error = invalid("field 'reply_to': expected a topic without wildcards, got '" + t
                          + "'");
      else if (r.route.topic.empty())
        r.route.topic = t;
    }
  }
  if (!r.error)
    r.error = check_content(d);
  if (!r.error)
    r.error = check_envelope(d);
  if (!r.error) {
    if (auto it = d.find("deadline"); it != d.end() && !it->is_null()) {
      if (!it->is_number() || !std::isfinite(it->get<double>()))
        r.error = invalid("field 'deadline': expected unix seconds (a number), got "
                          + std::string(it->type_name()));
      else
        r.deadline = it->get<double>();
    }
  }
  return r;
}

bool request_expired(const inbound_request& r, double now_unix) {
  return r.deadline && now_unix > *r.deadline + request_clock_skew_sec;
}

bool reply_allowed(const std::string& topic, const topic_names& topics, bool secure,
                   const std::optional<std::string>& sender) {
  if (topic.empty() || topic.find_first_of("+#") != std::string::npos)
    return false;
  if (!secure || !sender)
    return true;
  // A worker may only have replies sent to its own inbox, so it cannot make
  // lulld publish on another worker's or lull's own topics.
  auto inbox = topics.full("workers/" + *sender + "/");
  return !sender->empty() && topic.compare(0, inbox.size(), inbox) == 0;
}

std::optional<mqtt_message> make_reply(const reply_route& route, json body) {
  if (route.topic.empty() || route.topic.find_first_of("+#") != std::string::npos)
    return std::nullopt;
  if (!body.contains("v"))
    body["v"] = schema_version;
  if (!body.contains("request_id"))
    body["request_id"] = route.request_id;
  return mqtt_message{route.topic,       encode(body, route.format), 1, false,
                      content_type_of(route.format), {}, route.correlation_data};
}

json error_body(const request_error& e) {
  return {{"ok", false}, {"error", {{"code", e.code}, {"message", e.message}}}};
}

std::optional<mqtt_message> make_error_reply(const reply_route& route, const request_error& e) {
  return make_reply(route, error_body(e));
}

} // namespace lull
