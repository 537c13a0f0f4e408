#pragma once
/// Answers history/request: samples and rollups of a series, quiet streaks,
/// learned quiet windows, the scheduler's health, lease events and
/// decisions, each list paged to fit a reply (messages/page.hpp). Plain C++
/// over the store; the persister actor (actors/persister.cpp) owns one and
/// feeds it requests.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "messages/page.hpp"
#include "messages/request.hpp"
#include "src/store/health.hpp"
#include "src/store/store.hpp"

namespace lull {

struct history_options {
  std::string host_id;                  ///< the host a query names when it names none
  std::int64_t raw_retention_sec = 7 * 86400;
  std::int64_t rollup_retention_sec = 30 * 86400;
  std::string timezone = "local";       ///< of learned quiet windows
  std::int64_t stale_after_sec = 30;    ///< a host silent this long is unhealthy
  std::size_t max_reply_bytes = 262144; ///< lists are paged to fit
};

/// When a host counts as silent (unhealthy in its health): five of its
/// snapshot intervals (the interval key) without one, and never under 30 s.
std::int64_t host_stale_after_sec(double snapshot_interval_sec);

/// What answers read besides the store, from the persister that owns the
/// service: a flush (so an answer holds every sample received so far) and
/// its view of the hosts and of its own health.
struct history_sources {
  std::function<void()> flush;
  const std::map<std::string, host_health_input>* hosts = nullptr;
  const persister_health_input* health = nullptr;
};

class history_service {
public:
  history_service(store& db, history_options opts, history_sources sources);

  /// The answer to a request's document `req` as of `now` (unix seconds), or
  /// `error`. Lists are paged to fit max_reply_bytes as `route` encodes them.
  nlohmann::json answer(const nlohmann::json& req, const reply_route& route,
                        std::optional<request_error>& error, std::int64_t now);

  /// A host's learned quiet windows as stats/host/<host>/quiet_hours carries
  /// them; nullopt when they cannot be read.
  std::optional<nlohmann::json> quiet_hours(const std::string& host, std::int64_t now);

private:
  store& db_;
  history_options opts_;
  history_sources sources_;
};

} // namespace lull
