#include "messages/util.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <chrono>
#include <random>

namespace lull {

std::int64_t unix_seconds_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<double> parse_duration_sec(const std::string& text) {
  if (text.empty())
    return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  // strtod takes "nan", "inf" and 1e999 (infinity): none is a duration.
  if (end == text.c_str() || !std::isfinite(v) || v < 0)
    return std::nullopt;
  std::string unit(end);
  double scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1;
  else if (unit == "ms")
    scale = 0.001;
  else if (unit == "m")
    scale = 60;
  else if (unit == "h")
    scale = 3600;
  else if (unit == "d")
    scale = 86400;
  else
    return std::nullopt;
  double sec = v * scale;
  if (!std::isfinite(sec))
    return std::nullopt;
  return sec;
}

std::optional<std::uint64_t> counter_delta(std::uint64_t before, std::uint64_t after) {
  if (after >= before)
    return after - before;
  // A 32-bit counter that wrapped: before was near 2^32 and after is small.
  constexpr std::uint64_t wrap32 = std::uint64_t{1} << 32;
  if (before < wrap32)
    return (wrap32 - before) + after;
  // A 64-bit counter going backwards means the interface was reset.
  return std::nullopt;
}

double percentile(std::vector<double> values, double pct) {
  if (values.empty())
    return 0;
  auto rank = static_cast<std::size_t>(std::ceil(pct / 100.0 * static_cast<double>(values.size())));
  rank = std::clamp<std::size_t>(rank, 1, values.size());
  std::nth_element(values.begin(), values.begin() + static_cast<long>(rank - 1), values.end());
  return values[rank - 1];
}

bool fill_random(unsigned char* buf, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    auto r = ::getrandom(buf + got, n - got, 0);
    if (r < 0)
      break;
    got += static_cast<std::size_t>(r);
  }
  if (got == n)
    return true;
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  got = 0;
  while (got < n) {
    auto r = ::read(fd, buf + got, n - got);
    if (r <= 0)
      break;
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  return got == n;
}

std::string random_lease_id() {
  unsigned char bytes[16];
  if (!fill_random(bytes, sizeof bytes)) {
    // No kernel randomness at all: fall back to a seeded engine rather than
    // stop granting; the ids are still unique, if less unguessable.
    static std::mt19937_64 eng{std::random_device{}()};
    for (auto& b : bytes)
      b = static_cast<unsigned char>(eng());
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(32);
  for (auto b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 0xf];
  }
  return out;
}

} // namespace lull
