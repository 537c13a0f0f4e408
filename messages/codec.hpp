#pragma once
/// Wire encodings shared by every lull message: JSON (the default, readable in
/// mosquitto_sub, Node-RED and Home Assistant) and msgpack (compact). Both
/// encode the same document tree, so a field is named and typed the same way in
/// either format.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include <string_view>

#include <nlohmann/json.hpp>

#include "messages/mqtt_message.hpp"

namespace lull {

/// Version of the payload schema; every message carries it as "v".
inline constexpr int schema_version = 1;

enum class wire_format { json, msgpack };

inline constexpr const char* json_content_type = "application/json";
inline constexpr const char* msgpack_content_type = "application/msgpack";

const char* content_type_of(wire_format f);

/// Picks the format of an inbound payload: the MQTT v5 content type when one is
/// given, otherwise detection (a JSON document starts with '{' or '[' after
/// optional whitespace; a msgpack map or array starts with a byte >= 0x80).
wire_format detect_format(std::string_view payload, std::string_view content_type);

std::string encode(const nlohmann::json& doc, wire_format f);

// -- what lull publishes, by kind: QoS, retain and content type in one place --

/// A state topic (a host's assessment, a lease's state, a host's lease list):
/// JSON, QoS 1, retained, so a late subscriber reads the latest at once.
mqtt_message retained_json(std::string topic, std::string json_text);
mqtt_message retained_json(std::string topic, const nlohmann::json& body);
/// Clears a retained topic (an empty retained payload, QoS 1).
mqtt_message cleared(std::string topic);
/// An event or notice: JSON, not retained.
mqtt_message event_json(std::string topic, std::string json_text, int qos = 0);
mqtt_message event_json(std::string topic, const nlohmann::json& body, int qos = 0);

/// Why a payload could not be decoded, with the position when known.
struct decode_error {
  enum class kind {
    too_large, ///< over the size cap, refused unread
    too_deep,  ///< nested deeper than the depth limit
    malformed, ///< not a complete document of its format
    untrusted, ///< a string that is not UTF-8 or a number that is not finite
  };
  kind what = kind::malformed;
  std::string message;
};

/// What a decoder accepts from the network. Applied before any parsing, so a
/// hostile payload costs one linear scan: nlohmann's msgpack reader recurses
/// once per nesting level and would overflow the stack on 1 MB of 0x91.
struct decode_limits {
  std::size_t max_bytes = 1024 * 1024; ///< larger payloads are refused unread
  int max_depth = 32;                  ///< arrays and objects nested deeper are refused
  /// Refuse untrusted content (see untrusted_content). Off only for a caller
  /// that reads some fields first and then calls untrusted_content itself
  /// (the request path reads a refused request's reply route).
  bool check_content = true;
};

/// The one checked decoder for every payload from the network; never throws.
/// Refuses payloads over `limits.max_bytes`, nesting deeper than
/// `limits.max_depth`, msgpack strings that are not valid UTF-8 (they could
/// not be re-encoded as JSON later), non-finite numbers (msgpack can carry
/// NaN and infinity; JSON's 1e400 reads as infinity) and trailing bytes.
/// messages/request.hpp's decode_payload and decode_request build on it.
std::optional<nlohmann::json> decode(std::string_view payload, wire_format f,
                                     decode_error* err = nullptr, decode_limits limits = {});

/// One integer field of a document, read without building the document.
struct field_probe {
  bool parent_object = false;           ///< the object that holds the field exists
  std::optional<std::int64_t> integer;  ///< the field, when it is an integer
};

/// Reads the integer at `path` (object keys from the top, e.g. {"cpu",
/// "count"}) of a JSON or msgpack payload, for a reader that needs one field
/// of a large document (the lease manager's CPU count from each host
/// snapshot). Accepts and refuses exactly what decode() does, with the same
/// limits and content checks, and where a key repeats the last one counts, as
/// in decode()'s tree; it builds no tree. nullopt: decode() would refuse the
/// payload, or it is not an object.
std::optional<field_probe> probe_integer(std::string_view payload, wire_format f,
                                         const std::vector<std::string>& path,
                                         decode_limits limits = {});

/// What makes a decoded document unfit to keep, or nullopt: a string (value
/// or key) that is not UTF-8 — msgpack carries any bytes, and dump() would
/// throw on them later — or a number that is not finite.
std::optional<std::string> untrusted_content(const nlohmann::json& doc);

/// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code
/// points above U+10FFFF).
bool valid_utf8(std::string_view s);

/// Current UTC time as RFC 3339 with second precision ("2026-11-23T10:00:30Z").
std::string utc_timestamp(std::int64_t unix_seconds);

/// Parses the timestamps utc_timestamp writes; nullopt on anything else.
std::optional<std::int64_t> parse_utc_timestamp(std::string_view text);

} // namespace lull
