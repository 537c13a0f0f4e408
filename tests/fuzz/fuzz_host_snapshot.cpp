// Host snapshots from other agents (stats/host/<id>). The parser reports a
// malformed snapshot by throwing nlohmann's exceptions, which its callers
// catch; anything else escaping is a bug.
#include <nlohmann/json.hpp>

#include "messages/codec.hpp"
#include "messages/host_snapshot.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto doc = lull::decode(in, lull::detect_format(in, ""));
  if (!doc)
    return 0;
  try {
    auto s = lull::host_snapshot_from_json(*doc);
    (void)lull::to_json(s).dump();
  } catch (const nlohmann::json::exception&) {
  } catch (const std::invalid_argument&) { // std::stoul on a bad "raw"
  } catch (const std::out_of_range&) {
  }
  return 0;
}
