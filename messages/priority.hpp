#pragma once
/// One priority vocabulary for leases and jobs: the wire names, parsing in
/// any case, and the few rules that depend on nothing but the priority.

#include <cstddef>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "messages/enum_names.hpp"

namespace lull {

/// How urgent a piece of work is, lowest first. A lease asks for LOW, NORMAL
/// or HIGH; a job may also be BACKGROUND, handed out after every other queued
/// job and leased as LOW.
enum class work_priority { background, low, normal, high };

NLOHMANN_JSON_SERIALIZE_ENUM(work_priority, {{work_priority::background, "BACKGROUND"},
                                             {work_priority::low, "LOW"},
                                             {work_priority::normal, "NORMAL"},
                                             {work_priority::high, "HIGH"}})

/// "BACKGROUND", "LOW", "NORMAL" or "HIGH".
inline const char* to_string(work_priority p) { return enum_name<work_priority, 4>(p); }

/// Any case ("high", "High"); nullopt for anything else.
inline std::optional<work_priority> parse_priority(std::string_view text) {
  return parse_enum<work_priority, 4>(text);
}

/// A lease's priority: LOW, NORMAL or HIGH (BACKGROUND is a job's only).
inline std::optional<work_priority> parse_lease_priority(std::string_view text) {
  auto p = parse_priority(text);
  if (p == work_priority::background)
    return std::nullopt;
  return p;
}

/// HIGH work skips windows, load and the QUIET rule; everything below waits
/// for a host that can afford it and is suspended when the host is wanted.
constexpr bool below_high(work_priority p) { return p != work_priority::high; }

/// The lease a job asks for: BACKGROUND as LOW, the others as themselves.
constexpr work_priority lease_priority_of(work_priority job) {
  return job == work_priority::background ? work_priority::low : job;
}

/// The queue's order, most urgent first: 0 for HIGH ... 3 for BACKGROUND.
constexpr std::size_t urgency(work_priority p) {
  return static_cast<std::size_t>(work_priority::high) - static_cast<std::size_t>(p);
}

} // namespace lull
