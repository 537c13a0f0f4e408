// history/request bodies, and the series a stats payload would add.
#include "messages/codec.hpp"
#include "messages/topics.hpp"
#include "src/store/series.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto doc = lull::decode(in, lull::detect_format(in, ""));
  if (!doc)
    return 0;
  (void)lull::parse_history_query(*doc, "h");
  lull::topic_names topics{""};
  for (auto* topic : {"stats/host/h", "stats/worker/w", "stats/bus", "stats/host/h/quiet"})
    if (auto src = lull::classify_topic(topics, topic, "h"))
      (void)lull::extract_points(*src, *doc, 1795000000);
  return 0;
}
