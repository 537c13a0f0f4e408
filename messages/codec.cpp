#include "messages/codec.hpp"

#include <cstdio>
#include <ctime>

namespace lull {

const char* content_type_of(wire_format f) {
  return f == wire_format::msgpack ? msgpack_content_type : json_content_type;
}

wire_format detect_format(std::string_view payload, std::string_view content_type) {
  if (content_type == msgpack_content_type || content_type == "application/x-msgpack")
    return wire_format::msgpack;
  if (content_type == json_content_type)
    return wire_format::json;
  for (unsigned char c : payload) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
      continue;
    return c >= 0x80 ? wire_format::msgpack : wire_format::json;
  }
  return wire_format::json;
}

std::string encode(const nlohmann::json& doc, wire_format f) {
  if (f == wire_format::msgpack) {
    auto bytes = nlohmann::json::to_msgpack(doc);
    return std::string(bytes.begin(), bytes.end());
  }
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<nlohmann::json> decode(std::string_view payload, wire_format f,
                                     decode_error* err) {
  try {
    if (f == wire_format::msgpack)
      return nlohmann::json::from_msgpack(payload.begin(), payload.end());
    return nlohmann::json::parse(payload.begin(), payload.end());
  } catch (const nlohmann::json::exception& e) {
    if (err != nullptr) {
      // nlohmann's messages start with "[json.exception.parse_error.101] ".
      std::string what = e.what();
      if (auto pos = what.find("] "); pos != std::string::npos)
        what = what.substr(pos + 2);
      err->message = what;
    }
    return std::nullopt;
  }
}

std::string utc_timestamp(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::optional<std::int64_t> parse_utc_timestamp(std::string_view text) {
  std::tm tm{};
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  std::string copy(text);
  char z = 0;
  if (std::sscanf(copy.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &s, &z)
        != 7
      || z != 'Z')
    return std::nullopt;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<std::int64_t>(timegm(&tm));
}

} // namespace lull
