// JSON and msgpack decoding of any inbound payload: never a crash, and a
// document that decoded can always be re-encoded in both formats.
#include "messages/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  for (auto f : {lull::wire_format::json, lull::wire_format::msgpack}) {
    lull::decode_error err;
    if (auto doc = lull::decode(in, f, &err)) {
      (void)doc->dump(); // throws on invalid UTF-8: the decoder must not let it through
      (void)lull::encode(*doc, lull::wire_format::msgpack);
    }
  }
  (void)lull::detect_format(in, "");
  return 0;
}
