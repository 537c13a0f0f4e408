#pragma once
/// The small helpers every part of lull shares, each in one place: clocks,
/// durations, ASCII case, percentiles and unguessable ids (topic helpers are
/// in messages/topics.hpp). Plain C++ and libc only, so the client library
/// carries them without the server.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lull {

/// Unix time in whole seconds (the wall clock).
std::int64_t unix_seconds_now();
/// A monotonic clock in seconds (steady_clock), for intervals and TTLs.
double steady_seconds();

/// ASCII upper and lower case ("high" <-> "HIGH"); other bytes unchanged.
std::string upper(std::string_view s);
std::string lower(std::string_view s);

/// Parses "2s", "500ms", "1.5m", "1h", "7d" or a bare number of seconds.
std::optional<double> parse_duration_sec(const std::string& text);

/// Difference of two monotonically increasing counters, tolerant of a wrap of
/// a 32-bit (or 64-bit) kernel counter; nullopt when the counter was reset.
std::optional<std::uint64_t> counter_delta(std::uint64_t before, std::uint64_t after);

/// Nearest-rank percentile (0-100) of unsorted values: the smallest value
/// with at least pct % of values at or below it; 0 for none.
double percentile(std::vector<double> values, double pct);

/// Fills `buf` from the kernel's CSPRNG (getrandom, else /dev/urandom);
/// false when neither gave `n` bytes.
bool fill_random(unsigned char* buf, std::size_t n);
/// 32 hex characters from the kernel's CSPRNG: lease ids, job ids, nonces.
std::string random_lease_id();

} // namespace lull
