// Lease requests and lease actions (heartbeat, release, report), JSON or msgpack.
#include "messages/lease.hpp"
#include "messages/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto decoded = lull::decode_payload(in, "");
  if (auto* doc = std::get_if<nlohmann::json>(&decoded)) {
    (void)lull::parse_lease_request(*doc, true);
    (void)lull::parse_lease_request(*doc, false);
    for (auto* action : {"heartbeat", "release", "report", "revoke"})
      (void)lull::parse_lease_action(*doc, action);
    (void)lull::peek_string(*doc, "request_id");
  }
  return 0;
}
