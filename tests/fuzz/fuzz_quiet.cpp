// Quiet assessments from other agents (stats/host/<id>/quiet) and bus stats.
#include <nlohmann/json.hpp>

#include "messages/codec.hpp"
#include "messages/quiet.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto doc = lull::decode(in, lull::detect_format(in, ""));
  if (!doc)
    return 0;
  try {
    auto q = lull::quiet_assessment_from_json(*doc);
    (void)lull::to_json(q).dump();
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
