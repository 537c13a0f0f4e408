#pragma once
/// Number formatting shared by the lease table's files: the seconds and
/// rates and percentages its reasons print.

#include <cstdio>
#include <string>

namespace lull {

/// One decimal: "12.5".
inline std::string fmt_sec(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", s);
  return buf;
}

/// Whole units: "71".
inline std::string fmt_whole(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

/// A percentage as whole units: "71".
inline std::string fmt_pct(double pct) { return fmt_whole(pct); }

} // namespace lull
