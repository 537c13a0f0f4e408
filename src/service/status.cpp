#include "src/service/status.hpp"

#include <ctime>

namespace lull {

namespace {

std::string utc(std::int64_t t) {
  auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string count(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

} // namespace

service_status::service_status(std::string broker, bool scheduler, std::int64_t started)
    : broker_(std::move(broker)), scheduler_(scheduler), started_(started) {
  // systemd reads one line per assignment.
  for (auto& c : broker_)
    if (c == '\n' || c == '\r')
      c = ' ';
}

void service_status::connection(bool up, std::int64_t now) {
  if (up) {
    up_ = ever_up_ = true;
    down_since_.reset();
    return;
  }
  if (up_ || (ever_up_ && !down_since_))
    down_since_ = now;
  up_ = false;
}

void service_status::counts(std::uint64_t hosts, std::uint64_t active_leases,
                            std::uint64_t queued_jobs) {
  counted_ = true;
  hosts_ = hosts;
  leases_ = active_leases;
  queued_ = queued_jobs;
}

std::string service_status::line(std::int64_t now) const {
  std::string out;
  if (up_)
    out = "connected to " + broker_;
  else if (down_since_)
    out = "broker " + broker_ + " unreachable since " + utc(*down_since_);
  else if (!ever_up_ && now - started_ >= connect_grace_sec)
    out = "broker " + broker_ + " unreachable since " + utc(started_);
  else
    out = "connecting to " + broker_;
  if (scheduler_ && counted_)
    out += "; " + count(hosts_, "host", "hosts") + ", "
           + count(leases_, "active lease", "active leases") + ", "
           + count(queued_, "job queued", "jobs queued");
  return out;
}

} // namespace lull
