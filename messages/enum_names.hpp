#pragma once
/// Names of lull's enums on the wire, with the JSON library's
/// NLOHMANN_JSON_SERIALIZE_ENUM table (next to each enum) as the one list:
/// to_string() and case-insensitive parsing both read it. Enums are numbered
/// 0..N-1 in declaration order.

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "messages/util.hpp"

namespace lull {

/// The wire name of `e` ("HIGH"); the first name for a value out of range.
template <class E, std::size_t N>
const char* enum_name(E e) {
  static const auto names = [] {
    std::array<std::string, N> a;
    for (std::size_t i = 0; i < N; ++i)
      a[i] = nlohmann::json(static_cast<E>(i)).template get<std::string>();
    return a;
  }();
  auto i = static_cast<std::size_t>(e);
  return names[i < N ? i : 0].c_str();
}

/// The enum named `text` in any case ("high", "High"); nullopt for other text.
template <class E, std::size_t N>
std::optional<E> parse_enum(std::string_view text) {
  auto u = upper(text);
  for (std::size_t i = 0; i < N; ++i)
    if (upper(enum_name<E, N>(static_cast<E>(i))) == u)
      return static_cast<E>(i);
  return std::nullopt;
}

} // namespace lull
