// JSON and msgpack decoding of any inbound payload: never a crash, and a
// document that decoded can always be re-encoded in both formats. The
// tree-less probe_integer must agree with decode() on every input: it accepts
// what decode() accepts and reads the same field.
#include <cstdlib>

#include "messages/codec.hpp"

namespace {

/// What probe_integer must answer, read from decode()'s tree.
std::optional<lull::field_probe> reference(const std::optional<nlohmann::json>& doc,
                                           const std::vector<std::string>& path) {
  if (!doc || !doc->is_object())
    return std::nullopt;
  lull::field_probe r;
  const nlohmann::json* at = &*doc;
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    auto it = at->find(path[i]);
    if (it == at->end() || !it->is_object())
      return r;
    at = &*it;
  }
  r.parent_object = true;
  auto it = at->find(path.back());
  if (it != at->end() && it->is_number_integer()
      && (it->is_number_unsigned()
            ? it->get<std::uint64_t>()
                <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
            : true))
    r.integer = it->get<std::int64_t>();
  return r;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  static const std::vector<std::string> path{"cpu", "count"};
  for (auto f : {lull::wire_format::json, lull::wire_format::msgpack}) {
    lull::decode_error err;
    auto doc = lull::decode(in, f, &err);
    if (doc) {
      (void)doc->dump(); // throws on invalid UTF-8: the decoder must not let it through
      (void)lull::encode(*doc, lull::wire_format::msgpack);
    }
    auto probed = lull::probe_integer(in, f, path);
    auto want = reference(doc, path);
    if (probed.has_value() != want.has_value()
        || (probed && (probed->parent_object != want->parent_object
                       || probed->integer != want->integer)))
      std::abort(); // the probe and the tree disagree
  }
  (void)lull::detect_format(in, "");
  return 0;
}
