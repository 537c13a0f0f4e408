// The one request path of job, history and lease topics: decode, envelope,
// route, inbox rule, reply.
#include "messages/request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lull::mqtt_message msg;
  msg.topic = "scheduler/job/submit";
  msg.payload.assign(reinterpret_cast<const char*>(data), size);
  auto r = lull::decode_request(msg, {64 * 1024, 32}, size % 2 == 0);
  (void)lull::reply_allowed(r.route.topic, lull::topic_names{""}, true, std::string("w1"));
  auto reply = r.error ? lull::make_error_reply(r.route, *r.error)
                       : lull::make_reply(r.route, {{"ok", true}});
  (void)reply;
  (void)lull::decode_payload(msg.payload, "");
  return 0;
}
