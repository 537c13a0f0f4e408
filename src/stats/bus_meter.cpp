#include "src/stats/bus_meter.hpp"

#include <cmath>

#include "messages/codec.hpp"
#include "src/stats/rolling_window.hpp"

namespace lull {

namespace {

double r3(double x) { return std::round(x * 1000.0) / 1000.0; }

nlohmann::json ms_or_null(const std::vector<double>& v, double pct) {
  if (v.empty())
    return nullptr;
  return r3(percentile(v, pct) * 1000.0);
}

} // namespace

void bus_meter::push(std::vector<double>& v, double x) {
  // Past the cap, overwrite a slot chosen by the running count: a cheap
  // reservoir that stays representative of a busy interval.
  if (v.size() < max_samples_)
    v.push_back(x);
  else
    v[(in_ + out_ + v.size()) % max_samples_] = x;
}

nlohmann::json bus_meter::report(double now, std::uint64_t in_flight,
                                 const std::string& host_id, std::int64_t now_unix) {
  double elapsed = last_report_ < 0 ? 0 : now - last_report_;
  auto rate = [&](std::uint64_t n) -> nlohmann::json {
    if (elapsed <= 0)
      return nullptr;
    return r3(static_cast<double>(n) / elapsed);
  };
  bool have_handled = !handled_.empty();
  auto& main = have_handled ? handled_ : dispatch_;
  nlohmann::json j = {
    {"v", schema_version},
    {"host_id", host_id},
    {"collected_at", utc_timestamp(now_unix)},
    {"interval_sec", r3(elapsed)},
    {"msgs_in", in_},
    {"msgs_out", out_},
    {"in_per_sec", rate(in_)},
    {"out_per_sec", rate(out_)},
    {"rps", rate(in_ + out_)},
    {"errors", errors_},
    {"error_rate", in_ > 0 ? nlohmann::json(r3(static_cast<double>(errors_) / static_cast<double>(in_)))
                           : nlohmann::json(0.0)},
    {"unrouted", unrouted_},
    {"in_flight", in_flight},
    {"p50_ms", ms_or_null(main, 50)},
    {"p95_ms", ms_or_null(main, 95)},
    {"latency_source", have_handled ? "handling" : "dispatch"},
    {"dispatch_ms", {{"p50", ms_or_null(dispatch_, 50)}, {"p95", ms_or_null(dispatch_, 95)}}},
    {"handling_ms", {{"p50", ms_or_null(handled_, 50)}, {"p95", ms_or_null(handled_, 95)}}},
    {"totals", {{"in", total_in_ + in_}, {"out", total_out_ + out_}, {"errors", total_errors_ + errors_}}},
  };
  total_in_ += in_;
  total_out_ += out_;
  total_errors_ += errors_;
  in_ = out_ = errors_ = unrouted_ = 0;
  dispatch_.clear();
  handled_.clear();
  last_report_ = now;
  return j;
}

} // namespace lull
