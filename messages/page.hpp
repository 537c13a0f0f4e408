#pragma once
/// Replies that fit (docs/queue.md, docs/persistence.md, "Paged replies").
/// Every reply lulld sends stays under a byte budget,
/// `limits.max_reply_bytes`, well below the broker's largest packet: a
/// reply the broker refuses ends lulld's connection, and a QoS 1 reply in a
/// persistent session is sent again on every reconnect.
///
/// A list reply carries as many items as fit (at most the request's
/// `limit`) and, when more remain, `next`: an opaque cursor that the next
/// request passes as `cursor` to go on after the last item sent. Cursors
/// name the last item's key (key-set pagination), so items added meanwhile
/// neither shift a page nor repeat one. A reply that cannot be made to fit
/// (one item alone, or a whole answer that does not page) is the error
/// ReplyTooLarge naming the budget.

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "messages/request.hpp"

namespace lull {

/// limits.max_reply_bytes: its default and the bounds lulld accepts. The
/// upper bound leaves room under Mosquitto's `message_size_limit 1000000`
/// (every shipped broker config) for the topic and properties of a packet.
inline constexpr std::size_t default_max_reply_bytes = 256 * 1024;
inline constexpr std::size_t min_max_reply_bytes = 4096;
inline constexpr std::size_t max_max_reply_bytes = 900000;

/// Free text from the bus (a lease event's reason, a host's error) is kept
/// and answered up to this many bytes, then cut with clip_text's marker.
inline constexpr std::size_t max_text_bytes = 1024;
/// An id-like field from the bus (worker, lease, host, event name).
inline constexpr std::size_t max_id_text_bytes = 256;

/// `s` when it has at most `max_bytes` bytes; else its start, cut at a
/// UTF-8 character boundary, and "... [truncated from N bytes]", together
/// at most `max_bytes` (so clipping twice changes nothing).
std::string clip_text(std::string s, std::size_t max_bytes = max_text_bytes);

/// The size in bytes of the payload make_reply(route, body) would publish.
std::size_t reply_size(const reply_route& route, const nlohmann::json& body);

/// ReplyTooLarge: `what` takes `bytes`, more than the budget allows.
request_error reply_too_large(const std::string& what, std::size_t bytes, std::size_t max_bytes);

/// nullopt when the reply fits `max_bytes`, else ReplyTooLarge naming `what`.
std::optional<request_error> check_reply_size(const reply_route& route,
                                              const nlohmann::json& body,
                                              std::size_t max_bytes,
                                              const std::string& what = "the reply");

/// One item of a list reply.
struct page_item {
  nlohmann::json value;
  std::string cursor; ///< the `cursor` that goes on after this item
  std::string key;    ///< lists that are objects (decisions' workers): the item's key
  std::string name;   ///< for ReplyTooLarge: "job j-4f3a", "lease event 17"
};

struct page_spec {
  std::string field;          ///< the list in the body ("jobs", "events", ...)
  bool object = false;        ///< the list is an object keyed by page_item::key
  std::size_t limit = 100;    ///< at most this many items
  std::size_t max_bytes = default_max_reply_bytes;
};

/// Fills `body[spec.field]` with the longest run of items, from item 0, that
/// keeps the reply (as make_reply(route, ...) encodes it, in the route's
/// format) within spec.max_bytes and holds at most spec.limit items, and
/// sets `body["next"]` to the last one's cursor when items remain. Items
/// are made on demand by `item(i)` for i < `count` (the caller's candidates
/// in order; pass one more than the limit to tell whether more remain), so
/// only those considered are built. ReplyTooLarge when the first item alone
/// cannot fit.
std::variant<nlohmann::json, request_error>
build_page(const reply_route& route, nlohmann::json body, std::size_t count,
           const std::function<page_item(std::size_t)>& item, const page_spec& spec);

/// A request's `limit` (an integer from 1 to `max_limit`, `default_limit`
/// when absent) and `cursor` (a string of at most 512 bytes, empty when
/// absent); an InvalidRequest naming the field otherwise.
struct page_args {
  std::size_t limit = 100;
  std::string cursor;
};
std::variant<page_args, request_error> parse_page_args(const nlohmann::json& req,
                                                       std::size_t default_limit,
                                                       std::size_t max_limit);

/// InvalidRequest for a `cursor` that is not one this list gave.
request_error bad_cursor(const std::string& cursor);

} // namespace lull
