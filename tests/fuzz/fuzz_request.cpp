// The request path shared by job and history topics: decode, route, reply.
#include "messages/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lull::mqtt_message msg;
  msg.topic = "scheduler/job/submit";
  msg.payload.assign(reinterpret_cast<const char*>(data), size);
  auto r = lull::decode_request(msg, 64 * 1024);
  auto reply = r.error ? lull::make_error_reply(r.route, r.error->first, r.error->second)
                       : lull::make_reply(r.route, {{"ok", true}});
  (void)reply;
  return 0;
}
