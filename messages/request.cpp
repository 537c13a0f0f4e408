#include "messages/request.hpp"

#include <cctype>

#include "messages/enum_names.hpp"

namespace lull {

namespace {

using json = nlohmann::json;

/// Builds the document like nlohmann's own DOM parser, but stops at
/// `max_depth` levels of nesting before going deeper (the msgpack reader
/// recurses once per level) and keeps the parse error's text.
class bounded_parser {
public:
  bounded_parser(json& out, std::size_t max_depth) : dom_(out, false), max_depth_(max_depth) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return dom_.number_float(v, s);
  }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return deeper() && dom_.start_object(n); }
  bool key(json::string_t& k) { return dom_.key(k); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return deeper() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  template <class Exception>
  bool parse_error(std::size_t pos, const std::string& token, const Exception& e) {
    // nlohmann's messages start with "[json.exception.parse_error.101] ".
    std::string what = e.what();
    if (auto p = what.find("] "); p != std::string::npos)
      what = what.substr(p + 2);
    error_ = what;
    return dom_.parse_error(pos, token, e);
  }

  bool too_deep() const { return too_deep_; }
  const std::string& error() const { return error_; }

private:
  bool deeper() {
    if (++depth_ > max_depth_) {
      too_deep_ = true;
      return false;
    }
    return true;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::size_t max_depth_;
  std::size_t depth_ = 0;
  bool too_deep_ = false;
  std::string error_;
};

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

std::variant<json, request_error> decode_payload(std::string_view payload,
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
  json doc;
  bounded_parser sax(doc, limits.max_depth);
  bool ok = false;
  try {
    ok = format == wire_format::msgpack
           ? json::sax_parse(payload.begin(), payload.end(), &sax, json::input_format_t::msgpack)
           : json::sax_parse(payload.begin(), payload.end(), &sax);
  } catch (const json::exception& e) {
    ok = false;
  }
  if (sax.too_deep())
    return request_error{error_code::invalid_request,
                         "payload: expected at most " + std::to_string(limits.max_depth)
                           + " levels of nesting"};
  if (!ok)
    return request_error{error_code::invalid_json,
                         std::string("payload: not valid ")
                           + (format == wire_format::msgpack ? "msgpack" : "JSON") + ": "
                           + (sax.error().empty() ? "cannot be read" : sax.error())};
  return doc;
}

inbound_request decode_request(const mqtt_message& msg, const request_limits& limits,
                               bool empty_ok) {
  inbound_request r;
  r.route.format = detect_format(msg.payload, msg.content_type);
  r.route.topic = msg.response_topic;
  r.route.correlation_data = msg.correlation_data;
  if (empty_ok && blank(msg.payload))
    return r;
  auto decoded = decode_payload(msg.payload, msg.content_type, limits);
  if (auto* e = std::get_if<request_error>(&decoded)) {
    r.error = std::move(*e);
    return r;
  }
  r.doc = std::move(std::get<json>(decoded));
  auto& d = r.doc;
  if (d.is_object()) {
    // The route first, so that even a refused request is answered.
    if (auto it = d.find("request_id"); it != d.end() && (it->is_string() || it->is_number()))
      r.route.request_id = *it;
    if (auto it = d.find("reply_to"); it != d.end() && !it->is_null()) {
      if (!it->is_string())
        r.error = invalid("field 'reply_to': expected a string, got "
                          + std::string(it->type_name()));
      else if (auto& t = it->get_ref<const std::string&>();
               t.find_first_of("+#") != std::string::npos)
        r.error = invalid("field 'reply_to': expected a topic without wildcards, got '" + t
                          + "'");
      else if (r.route.topic.empty())
        r.route.topic = t;
    }
  }
  if (!r.error)
    r.error = check_envelope(d);
  return r;
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
