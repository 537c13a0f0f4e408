#include "messages/page.hpp"

#include <vector>

#include "messages/codec.hpp"

namespace lull {

namespace {

using json = nlohmann::json;

/// What `,"next":` (JSON) or the key "next" (msgpack) adds besides the
/// cursor itself.
constexpr std::size_t next_key_bytes = 8;
/// msgpack's array and map headers grow from 1 byte (up to 15 entries) to 3
/// and then 5: the base is measured with an empty list, so room for both the
/// list's header and the body's own (one more key: "next").
constexpr std::size_t header_slack = 8;

std::size_t next_cost(const std::string& cursor, wire_format f) {
  return next_key_bytes + encode(json(cursor), f).size();
}

} // namespace

std::string clip_text(std::string s, std::size_t max_bytes) {
  if (s.size() <= max_bytes)
    return s;
  // The marker counts: clipped text is at most max_bytes, so clipping it
  // again (when answered) keeps it as it is.
  auto marker = "... [truncated from " + std::to_string(s.size()) + " bytes]";
  if (marker.size() >= max_bytes)
    marker.clear();
  std::size_t cut = max_bytes - marker.size();
  // Back to the first byte of a character (never into a UTF-8 sequence).
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
    --cut;
  s.resize(cut);
  s += marker;
  return s;
}

std::size_t reply_size(const reply_route& route, const json& body) {
  if (body.contains("v") && body.contains("request_id"))
    return encode(body, route.format).size();
  json full = body;
  if (!full.contains("v"))
    full["v"] = schema_version;
  if (!full.contains("request_id"))
    full["request_id"] = route.request_id;
  return encode(full, route.format).size();
}

request_error reply_too_large(const std::string& what, std::size_t bytes, std::size_t max_bytes) {
  return {error_code::reply_too_large,
          what + " takes " + std::to_string(bytes) + " bytes, over this lulld's limit of "
            + std::to_string(max_bytes) + " bytes per reply (limits.max_reply_bytes)"};
}

std::optional<request_error> check_reply_size(const reply_route& route, const json& body,
                                              std::size_t max_bytes, const std::string& what) {
  auto n = reply_size(route, body);
  if (n <= max_bytes)
    return std::nullopt;
  return reply_too_large(what, n, max_bytes);
}

std::variant<json, request_error> build_page(const reply_route& route, json body,
                                             std::size_t count,
                                             const std::function<page_item(std::size_t)>& item,
                                             const page_spec& spec) {
  auto fmt = route.format;
  auto empty_list = [&] { return spec.object ? json::object() : json::array(); };
  body.erase("next");
  body[spec.field] = empty_list();
  auto base = reply_size(route, body) + header_slack;
  std::vector<page_item> taken;
  bool more = false;
  auto used = base;
  for (std::size_t i = 0; i < count; ++i) {
    if (taken.size() >= spec.limit) {
      more = true;
      break;
    }
    auto it = item(i);
    auto cost = encode(it.value, fmt).size() + 1; // the separator
    if (spec.object)
      cost += encode(json(it.key), fmt).size() + 1;
    bool last = i + 1 == count;
    // Room for `next` unless this is the last candidate.
    auto needed = used + cost + (last ? 0 : next_cost(it.cursor, fmt));
    if (needed > spec.max_bytes) {
      if (taken.empty())
        return reply_too_large(it.name.empty() ? std::string("an item") : it.name,
                               base + cost, spec.max_bytes);
      more = true;
      break;
    }
    used += cost;
    taken.push_back(std::move(it));
  }
  // The estimate above is an upper bound; the encoded reply decides.
  while (true) {
    auto list = empty_list();
    for (auto& t : taken) {
      if (spec.object)
        list[t.key] = t.value;
      else
        list.push_back(t.value);
    }
    body[spec.field] = std::move(list);
    if (more && !taken.empty())
      body["next"] = taken.back().cursor;
    else
      body.erase("next");
    auto n = reply_size(route, body);
    if (n <= spec.max_bytes)
      return body;
    if (taken.size() <= 1)
      return reply_too_large(taken.empty() || taken[0].name.empty() ? std::string("an item")
                                                                    : taken[0].name,
                             n, spec.max_bytes);
    taken.pop_back();
    more = true;
  }
}

std::variant<page_args, request_error> parse_page_args(const json& req, std::size_t default_limit,
                                                       std::size_t max_limit) {
  page_args a;
  a.limit = default_limit;
  if (!req.is_object())
    return a;
  if (auto it = req.find("limit"); it != req.end() && !it->is_null()) {
    bool ok = it->is_number_unsigned() ? it->get<std::uint64_t>() >= 1
                                       : it->is_number_integer() && it->get<std::int64_t>() >= 1;
    if (!ok)
      return request_error{error_code::invalid_request,
                           "field 'limit' must be an integer from 1 to "
                             + std::to_string(max_limit)};
    a.limit = std::min<std::size_t>(it->get<std::uint64_t>(), max_limit);
  }
  if (auto it = req.find("cursor"); it != req.end() && !it->is_null()) {
    if (!it->is_string() || it->get_ref<const std::string&>().size() > 512)
      return request_error{error_code::invalid_request,
                           "field 'cursor' must be the string a reply gave as 'next'"};
    a.cursor = it->get<std::string>();
  }
  return a;
}

request_error bad_cursor(const std::string& cursor) {
  return {error_code::invalid_request,
          "field 'cursor': '" + clip_text(cursor, 64)
            + "' is not a cursor of this list; pass the 'next' of the reply before"};
}

} // namespace lull
