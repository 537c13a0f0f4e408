// Lease requests and lease actions (heartbeat, release, report), JSON or msgpack.
#include "messages/lease.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto decoded = lull::decode_lease_payload(in, "");
  if (auto* d = std::get_if<lull::decoded_payload>(&decoded)) {
    (void)lull::parse_lease_request(d->doc, true);
    (void)lull::parse_lease_request(d->doc, false);
    for (auto* action : {"heartbeat", "release", "report", "revoke"})
      (void)lull::parse_lease_action(d->doc, action);
    (void)lull::peek_string(d->doc, "request_id");
  }
  return 0;
}
