#pragma once
/// Bounds on what clients can make lulld hold (limits.*, docs/security.md):
/// the bridge, the quiet assessor, Home Assistant discovery, the lease table,
/// the queue and the persister each take the ones they enforce.

#include <cstddef>

#include "messages/page.hpp"

namespace lull {

struct limits_settings {
  std::size_t max_hosts = 256;      ///< hosts assessed, leased on and announced
  std::size_t max_parked = 1000;    ///< scheduler/job/next requests waiting at once
  std::size_t max_payload = 1048576; ///< inbound bytes per message, checked before decoding
  /// The largest reply lulld sends (job lists and history queries page
  /// within it); 4096 to 900000, under the broker's message_size_limit.
  std::size_t max_reply_bytes = default_max_reply_bytes;
  double host_forget_after_sec = 86400; ///< a host silent this long is forgotten
  std::size_t max_series_per_worker = 256; ///< distinct series one source may name
  std::size_t max_series = 20000;          ///< distinct series of all sources together
};

} // namespace lull
