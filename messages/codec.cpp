#include "messages/codec.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>
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

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned cp = 0, min = 0;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < len)
      return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

namespace {

/// Nesting depth of a JSON text, counting brackets outside strings. Stops at
/// the first level past `max_depth`; the parser checks everything else.
bool json_depth_ok(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

/// One iterative pass over a msgpack document: its structure is complete,
/// containers nest at most `max_depth` deep, nothing follows the document
/// and, with `content`, strings are UTF-8 and floats finite. Returns what is
/// wrong (its kind in `kind`), or an empty string.
std::string msgpack_check(std::string_view in, int max_depth, bool content,
                          decode_error::kind& kind) {
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  std::size_t i = 0;
  std::vector<std::uint64_t> open; // items still expected per open container
  auto at = [&](const char* what) {
    return std::string(what) + " at byte " + std::to_string(i);
  };
  auto be = [&](std::size_t off, int bytes) {
    std::uint64_t v = 0;
    for (int k = 0; k < bytes; ++k)
      v = (v << 8) | p[off + k];
    return v;
  };
  std::uint64_t expected = 1; // the top-level document
  while (expected > 0) {
    if (i >= n)
      return at("msgpack document ends early");
    unsigned c = p[i];
    std::size_t head = 1;
    std::uint64_t skip = 0, children = 0;
    bool container = false, is_str = false;
    auto need = [&](std::size_t bytes) { return n - i >= bytes; };
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
    } else if (c >= 0x80 && c <= 0x8f) {
      container = true, children = 2ull * (c & 0x0f);
    } else if (c >= 0x90 && c <= 0x9f) {
      container = true, children = c & 0x0f;
    } else if (c >= 0xa0 && c <= 0xbf) {
      is_str = true, skip = c & 0x1f;
    } else {
      switch (c) {
        case 0xc4: case 0xc5: case 0xc6: { // bin 8/16/32
          int w = c == 0xc4 ? 1 : c == 0xc5 ? 2 : 4;
          if (!need(1 + w))
            return at("msgpack bin header ends early");
          head = 1 + w, skip = be(i + 1, w);
          break;
        }
        case 0xc7: case 0xc8: case 0xc9: { // ext 8/16/32
          int w = c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4;
          if (!need(2 + w))
            return at("msgpack ext header ends early");
          head = 2 + w, skip = be(i + 1, w);
          break;
        }
        case 0xca: case 0xcb: { // float 32/64
          int w = c == 0xca ? 4 : 8;
          if (!need(1 + w))
            return at("msgpack float ends early");
          double v;
          if (w == 4) {
            auto bits = static_cast<std::uint32_t>(be(i + 1, 4));
            float f;
            std::memcpy(&f, &bits, 4);
            v = f;
          } else {
            auto bits = be(i + 1, 8);
            std::memcpy(&v, &bits, 8);
          }
          if (content && !std::isfinite(v)) {
            kind = decode_error::kind::untrusted;
            return at("msgpack number is not finite (NaN or infinity)");
          }
          head = 1 + w;
          break;
        }
        case 0xcc: case 0xd0: head = 2; break;
        case 0xcd: case 0xd1: head = 3; break;
        case 0xce: case 0xd2: head = 5; break;
        case 0xcf: case 0xd3: head = 9; break;
        case 0xd4: head = 3; break; // fixext 1..16: type + data
        case 0xd5: head = 4; break;
        case 0xd6: head = 6; break;
        case 0xd7: head = 10; break;
        case 0xd8: head = 18; break;
        case 0xd9: case 0xda: case 0xdb: { // str 8/16/32
          int w = c == 0xd9 ? 1 : c == 0xda ? 2 : 4;
          if (!need(1 + w))
            return at("msgpack string header ends early");
          head = 1 + w, skip = be(i + 1, w), is_str = true;
          break;
        }
        case 0xdc: case 0xdd: case 0xde: case 0xdf: { // array/map 16/32
          int w = (c == 0xdc || c == 0xde) ? 2 : 4;
          if (!need(1 + w))
            return at("msgpack container header ends early");
          head = 1 + w, container = true, children = be(i + 1, w);
          if (c >= 0xde)
            children *= 2;
          break;
        }
        default:
          return at("msgpack type byte 0xc1 is never used");
      }
    }
    if (!need(head) || n - i - head < skip)
      return at("msgpack value ends early");
    if (content && is_str && !valid_utf8(in.substr(i + head, skip))) {
      kind = decode_error::kind::untrusted;
      return at("msgpack string is not valid UTF-8");
    }
    i += head + skip;
    --expected;
    if (container && children > 0) {
      if (static_cast<int>(open.size()) + 1 > max_depth) {
        kind = decode_error::kind::too_deep;
        return at(("msgpack nesting deeper than " + std::to_string(max_depth)).c_str());
      }
      // Every item takes at least one byte: a count beyond what is left is a lie.
      if (children > n - i)
        return at("msgpack container holds more items than bytes left");
      open.push_back(expected);
      expected = children;
    }
    while (expected == 0 && !open.empty()) {
      expected = open.back();
      open.pop_back();
    }
  }
  if (i != n)
    return at("msgpack document is followed by extra bytes");
  return {};
}

} // namespace

std::optional<std::string> untrusted_content(const nlohmann::json& doc) {
  std::vector<const nlohmann::json*> todo{&doc};
  while (!todo.empty()) {
    auto* j = todo.back();
    todo.pop_back();
    // JSON's parser takes 1e400 as infinity; msgpack carries NaN as is.
    if (j->is_number_float() && !std::isfinite(j->get<double>()))
      return std::string("a number is not finite (NaN or infinity)");
    if (j->is_string() && !valid_utf8(j->get_ref<const std::string&>()))
      return std::string("a string is not valid UTF-8");
    if (j->is_object())
      for (auto& [k, v] : j->items()) {
        if (!valid_utf8(k))
          return std::string("a key is not valid UTF-8");
        todo.push_back(&v);
      }
    else if (j->is_array())
      for (auto& x : *j)
        todo.push_back(&x);
  }
  return std::nullopt;
}

std::optional<nlohmann::json> decode(std::string_view payload, wire_format f,
                                     decode_error* err, decode_limits limits) {
  using kind = decode_error::kind;
  auto fail = [&](kind k, std::string what) -> std::optional<nlohmann::json> {
    if (err != nullptr)
      *err = decode_error{k, std::move(what)};
    return std::nullopt;
  };
  if (payload.size() > limits.max_bytes)
    return fail(kind::too_large, "payload is " + std::to_string(payload.size())
                                   + " bytes; at most " + std::to_string(limits.max_bytes)
                                   + " accepted");
  if (f == wire_format::msgpack) {
    kind k = kind::malformed;
    if (auto what = msgpack_check(payload, limits.max_depth, limits.check_content, k);
        !what.empty())
      return fail(k, std::move(what));
  } else if (!json_depth_ok(payload, limits.max_depth)) {
    return fail(kind::too_deep, "JSON nesting deeper than " + std::to_string(limits.max_depth));
  }
  try {
    auto doc = f == wire_format::msgpack
                 ? nlohmann::json::from_msgpack(payload.begin(), payload.end())
                 : nlohmann::json::parse(payload.begin(), payload.end());
    if (limits.check_content)
      if (auto what = untrusted_content(doc))
        return fail(kind::untrusted, std::move(*what));
    return doc;
  } catch (const nlohmann::json::exception& e) {
    // nlohmann's messages start with "[json.exception.parse_error.101] ".
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos)
      what = what.substr(pos + 2);
    return fail(kind::malformed, std::move(what));
  } catch (const std::exception& e) {
    return fail(kind::malformed, e.what());
  }
}

namespace {

/// SAX events of one document: the content checks of untrusted_content, and
/// the field at `path` (the last of a repeated key wins).
class probe_handler {
public:
  using json = nlohmann::json;
  explicit probe_handler(const std::vector<std::string>& path) : path_(path) {}

  bool null() { return value({}); }
  bool boolean(bool) { return value({}); }
  bool number_integer(json::number_integer_t v) { return value(v); }
  bool number_unsigned(json::number_unsigned_t v) {
    if (v > static_cast<json::number_unsigned_t>(std::numeric_limits<std::int64_t>::max()))
      return value({}); // an integer, but not one lull could hold
    return value(static_cast<std::int64_t>(v));
  }
  bool number_float(json::number_float_t v, const json::string_t&) {
    if (!std::isfinite(v))
      return refuse("a number is not finite (NaN or infinity)");
    return value({});
  }
  bool string(json::string_t& v) {
    if (!valid_utf8(v))
      return refuse("a string is not valid UTF-8");
    return value({});
  }
  bool binary(json::binary_t&) { return value({}); }
  bool start_object(std::size_t) {
    bool on = opened(true);
    frames_.push_back({on, false});
    return true;
  }
  bool key(json::string_t& k) {
    if (!valid_utf8(k))
      return refuse("a key is not valid UTF-8");
    auto& f = frames_.back();
    auto level = on_path_level();
    f.key_matches = f.on_path && level < path_.size() && k == path_[level];
    return true;
  }
  bool end_object() {
    frames_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    opened(false);
    frames_.push_back({false, false});
    return true;
  }
  bool end_array() {
    frames_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

  bool root_object = false;
  bool refused = false;
  field_probe result;

private:
  struct frame {
    bool on_path;     ///< this object is the one at path[0 .. depth-1]
    bool key_matches; ///< its current key is the next name on the path
  };
  /// Objects on the path enclosing the current position.
  std::size_t on_path_level() const {
    std::size_t n = 0;
    for (auto& f : frames_)
      n += f.on_path ? 1 : 0;
    return n - 1;
  }
  bool refuse(const char*) {
    refused = true;
    return false;
  }
  /// A container starts at the current position; true when it is an object
  /// that continues the path.
  bool opened(bool is_object) {
    if (frames_.empty()) {
      root_object = is_object;
      return is_object;
    }
    auto& f = frames_.back();
    if (!f.key_matches)
      return false;
    auto level = on_path_level(); // the index of this value's key in path_
    if (level + 1 == path_.size()) {
      result.integer.reset(); // the field, but a container
      return false;
    }
    // An object on the way to the field: a repeated key replaces it.
    result = {};
    if (level + 2 == path_.size())
      result.parent_object = is_object;
    return is_object;
  }
  /// A scalar at the current position (`v`: when it is an integer).
  bool value(std::optional<std::int64_t> v) {
    if (frames_.empty())
      return true; // a scalar document: not an object
    auto& f = frames_.back();
    if (!f.key_matches)
      return true;
    if (on_path_level() + 1 == path_.size())
      result.integer = v;
    else
      result = {}; // on the way to the field, a scalar: no field
    return true;
  }

  const std::vector<std::string>& path_;
  std::vector<frame> frames_;
};

} // namespace

std::optional<field_probe> probe_integer(std::string_view payload, wire_format f,
                                         const std::vector<std::string>& path,
                                         decode_limits limits) {
  if (path.empty() || payload.size() > limits.max_bytes)
    return std::nullopt;
  if (f == wire_format::msgpack) {
    decode_error::kind k = decode_error::kind::malformed;
    if (!msgpack_check(payload, limits.max_depth, limits.check_content, k).empty())
      return std::nullopt;
  } else if (!json_depth_ok(payload, limits.max_depth)) {
    return std::nullopt;
  }
  probe_handler h(path);
  bool ok = false;
  try {
    ok = f == wire_format::msgpack
           ? nlohmann::json::sax_parse(payload.begin(), payload.end(), &h,
                                       nlohmann::json::input_format_t::msgpack)
           : nlohmann::json::sax_parse(payload.begin(), payload.end(), &h);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!ok || h.refused || !h.root_object)
    return std::nullopt;
  return h.result;
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

mqtt_message retained_json(std::string topic, std::string json_text) {
  mqtt_message m;
  m.topic = std::move(topic);
  m.payload = std::move(json_text);
  m.qos = 1;
  m.retain = true;
  m.content_type = json_content_type;
  return m;
}

mqtt_message retained_json(std::string topic, const nlohmann::json& body) {
  return retained_json(std::move(topic), encode(body, wire_format::json));
}

mqtt_message cleared(std::string topic) {
  mqtt_message m;
  m.topic = std::move(topic);
  m.qos = 1;
  m.retain = true;
  return m;
}

mqtt_message event_json(std::string topic, std::string json_text, int qos) {
  mqtt_message m;
  m.topic = std::move(topic);
  m.payload = std::move(json_text);
  m.qos = qos;
  m.content_type = json_content_type;
  return m;
}

mqtt_message event_json(std::string topic, const nlohmann::json& body, int qos) {
  return event_json(std::move(topic), encode(body, wire_format::json), qos);
}

} // namespace lull
