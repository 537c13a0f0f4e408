#pragma once
/// The one request path every request topic lull answers goes through
/// (leases, jobs, history), in four steps:
///
///   1. decode   size cap, format (JSON or msgpack), nesting depth limit;
///   2. envelope an object with an optional "v" equal to the schema version;
///   3. route    MQTT v5 clients send a response topic and correlation data,
///               which the reply echoes; v3.1.1 clients (Node-RED's default)
///               put `reply_to` and `request_id` in the payload. A reply uses
///               the format of its request;
///   4. inbox    in secure mode a request whose topic names its sender is
///               answered only under workers/<sender>/ (docs/security.md).
///
/// Each service then validates the document into its typed request
/// (parse_lease_request, ...) and answers through make_reply or
/// make_error_reply with the one error code set below.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "messages/codec.hpp"
#include "messages/mqtt_message.hpp"
#include "messages/topics.hpp"

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
  /// The sender may not ask for this (secure mode: HIGH priority is for
  /// lease.high_users); the message names the rule.
  permission_denied,
  /// The answer cannot be sent within limits.max_reply_bytes (one item, or
  /// a reply that does not page); the message names the limit.
  reply_too_large,
  internal_error,
};

NLOHMANN_JSON_SERIALIZE_ENUM(error_code,
                             {{error_code::internal_error, "InternalError"},
                              {error_code::invalid_json, "InvalidJson"},
                              {error_code::invalid_request, "InvalidRequest"},
                              {error_code::resource_not_found, "ResourceNotFound"},
                              {error_code::not_holder, "NotHolder"},
                              {error_code::invalid_state_transition, "InvalidStateTransition"},
                              {error_code::version_mismatch, "VersionMismatch"},
                              {error_code::request_throttled, "RequestThrottled"},
                              {error_code::payload_too_large, "PayloadTooLarge"},
                              {error_code::permission_denied, "PermissionDenied"},
                              {error_code::reply_too_large, "ReplyTooLarge"}})

const char* to_string(error_code c);

/// Why a request (or any inbound payload) cannot be used.
struct request_error {
  error_code code;
  std::string message;
};

/// Limits applied before a payload is trusted.
struct request_limits {
  std::size_t max_bytes = 16 * 1024;
  std::size_t max_depth = 32; ///< nesting of objects and arrays
};

/// Step 1 alone, for payloads that are not requests (host snapshots, quiet
/// assessments, worker statuses): size cap, format detection, depth limit,
/// decoding. Never throws. An empty or blank payload is an error.
std::variant<nlohmann::json, request_error> decode_payload(std::string_view payload,
                                                           std::string_view content_type,
                                                           const request_limits& limits = {});

/// Where and how to answer one request.
struct reply_route {
  std::string topic;            ///< empty: the request cannot be answered
  std::string correlation_data; ///< v5, echoed
  nlohmann::json request_id;    ///< echoed as "request_id" (null when absent)
  wire_format format = wire_format::json;
};

/// A decoded request: its document and its reply route. When `error` is set
/// the route is still filled from whatever could be read, so the error can
/// be answered.
struct inbound_request {
  nlohmann::json doc; ///< an object; null for an allowed empty payload
  reply_route route;
  std::optional<request_error> error;
  /// The envelope's `deadline` (unix seconds): after it the client no
  /// longer waits for the answer (request_expired).
  std::optional<double> deadline;
};

/// How far a client's clock may run behind lulld's before its requests look
/// expired (`deadline` is the client's wall clock; MQTT v5 clients are also
/// covered by the broker's Message Expiry Interval, which needs no clock).
constexpr double request_clock_skew_sec = 30;

/// True when a request carried a `deadline` that passed more than
/// request_clock_skew_sec before `now_unix`: nobody waits for its answer,
/// so lulld acts on it no more (a lease request published while lulld was
/// down, delivered at its restart, must not hold capacity for nobody).
bool request_expired(const inbound_request& r, double now_unix);

/// Steps 1-3. `empty_ok`: an empty payload (mosquitto_pub -n) is a valid
/// request with a null document (cancels, releases, revokes).
inbound_request decode_request(const mqtt_message& msg, const request_limits& limits = {},
                               bool empty_ok = false);

/// Step 4: true when a reply may go to `topic`. `sender` is the worker the
/// request's topic names (secure mode), or nullopt when the topic names
/// nobody: those topics are writable by the admin only (broker ACL).
bool reply_allowed(const std::string& topic, const topic_names& topics, bool secure,
                   const std::optional<std::string>& sender);

/// The reply message for `body` ("v" and "request_id" added unless the body
/// has them), or nullopt when the request gave no way to answer.
std::optional<mqtt_message> make_reply(const reply_route& route, nlohmann::json body);

/// {"error":{"code":..,"message":..},"ok":false}, the body of every error reply.
nlohmann::json error_body(const request_error& e);

/// {"v":1,"request_id":..,"ok":false,"error":{"code":..,"message":..}}
std::optional<mqtt_message> make_error_reply(const reply_route& route, const request_error& e);

} // namespace lull
