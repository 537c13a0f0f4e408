#pragma once
/// Where lulld's inbound messages go. The transport's callback thread routes
/// each message itself, straight to the actors that subscribed (one hand-off
/// and one wake-up fewer per message than through the bridge's mailbox, and
/// a burst of work on the actors' threads cannot hold routing up); the
/// bridge actor adds subscriptions, counts its publishes and reads the
/// meter. One mutex guards it all: the subscriptions, the retained messages
/// kept for late subscribers and the bus meter.
///
/// Free of CAF: `Delivery` says how a message reaches a subscriber. lulld's
/// bridge (actors/mqtt_bridge.cpp) packs it once into a CAF message that
/// every subscribing actor shares; tests collect what each subscriber got.
///   struct Delivery {
///     using handle = ...;   // a subscriber
///     using packet = ...;   // what is sent, built once per routed message
///     packet pack(const mqtt_message&);
///     void send(const handle&, const packet&);
///   };

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "messages/mqtt_message.hpp"
#include "messages/topics.hpp"
#include "messages/util.hpp"
#include "src/bus/retained_cache.hpp"
#include "src/log.hpp"
#include "src/stats/bus_meter.hpp"
#include "src/stats/inbound_budget.hpp"

namespace lull {

struct router_options {
  std::size_t max_payload_bytes = 1 << 20; ///< larger payloads are dropped unread
  std::size_t retained_max_topics = 10000;
  std::size_t retained_max_bytes = 16 << 20;
  topic_names topics;
  budget_options budget = budget_options::defaults();
  /// Counts every message shed by a lane budget (scheduler/status reads
  /// it); none when null.
  std::atomic<std::uint64_t>* shed_total = nullptr;
};

template <class Delivery>
class inbound_router {
public:
  using handle = typename Delivery::handle;

  explicit inbound_router(router_options opts, Delivery delivery = {})
    : opts_(std::move(opts)), delivery_(std::move(delivery)),
      retained_(opts_.retained_max_topics, opts_.retained_max_bytes), budget_(opts_.budget) {
    meter_.start(steady_seconds());
  }

  /// Routes one inbound message; `arrived` is when the transport handed it
  /// over (monotonic seconds). Each subscriber gets the same packet. Before
  /// any subscriber sees it: the size cap, then the message's lane budget
  /// (its source's rate, the lane's room); what is shed is counted and named
  /// in a log line every 10 s.
  void route(mqtt_message msg, double arrived) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_)
      return; // the subscribers it would go to are stopping too
    ++msgs_in_;
    meter_.on_in();
    if (msg.payload.size() > opts_.max_payload_bytes) {
      // One size cap before any decoding: no subscriber sees such a payload.
      if (oversize_++ % 100 == 0)
        log::warn("mqtt bridge: dropped {} bytes on {} (at most {} accepted; {} dropped so far)",
                  msg.payload.size(), msg.topic.substr(0, 200), opts_.max_payload_bytes,
                  oversize_);
      meter_.on_handled(0, false);
      return;
    }
    auto cls = classify_inbound(opts_.topics.strip(msg.topic));
    auto d = budget_.admit(cls, msg.topic.size() + msg.payload.size(), arrived);
    if (arrived - last_shed_report_ >= shed_report_every)
      report_shed_locked(arrived);
    if (d.v != inbound_budget::verdict::accept) {
      if (opts_.shed_total != nullptr)
        opts_.shed_total->fetch_add(1, std::memory_order_relaxed);
      meter_.on_handled(0, false);
      return;
    }
    msg.hold = std::move(d.hold);
    if (retained_.note(msg) == retained_cache::noted::refused && retained_.refused() == 1)
      log::warn("mqtt bridge: not keeping retained {} for late subscribers: {} topics, {} "
                "bytes kept already (at most {} / {})",
                msg.topic.substr(0, 200), retained_.size(), retained_.bytes(),
                retained_.max_topics(), retained_.max_bytes());
    std::optional<typename Delivery::packet> packet;
    for (auto& sub : subs_) {
      if (!topic_matches(sub.filter, msg.topic))
        continue;
      if (!packet)
        packet = delivery_.pack(msg);
      delivery_.send(sub.who, *packet);
    }
    if (!packet)
      meter_.on_unrouted();
    meter_.on_dispatch(steady_seconds() - arrived);
  }

  /// Adds `who` for `filter`; true when no subscriber held the filter before
  /// (the bridge then subscribes at the broker, which sends what is
  /// retained). Otherwise, while connected, `who` gets the retained messages
  /// kept for the filter: the broker sent them to whoever subscribed first.
  /// Under the same lock as routing, so `who` gets each message either from
  /// here or routed, never both and never neither.
  bool subscribe(const std::string& filter, const handle& who, bool connected) {
    std::lock_guard<std::mutex> lock(mu_);
    bool known = std::any_of(subs_.begin(), subs_.end(),
                             [&](auto& x) { return x.filter == filter; });
    subs_.push_back({filter, who});
    if (known && connected)
      retained_.each_matching(filter,
                              [&](const mqtt_message& m) { delivery_.send(who, delivery_.pack(m)); });
    return !known;
  }

  /// Every filter held, once each (subscribed on every connect).
  std::vector<std::string> filters() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (auto& sub : subs_)
      if (std::find(out.begin(), out.end(), sub.filter) == out.end())
        out.push_back(sub.filter);
    return out;
  }

  /// On every (re)connect, before the transport hands over the session's
  /// messages: the broker sends what is retained now.
  void connected() {
    std::lock_guard<std::mutex> lock(mu_);
    retained_.clear();
  }

  /// From here on nothing is routed; the subscribers are let go.
  void stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    subs_.clear();
  }

  template <class F>
  auto with_meter(F&& f) {
    std::lock_guard<std::mutex> lock(mu_);
    return f(meter_);
  }

  std::uint64_t msgs_in() const {
    std::lock_guard<std::mutex> lock(mu_);
    return msgs_in_;
  }
  std::uint64_t oversize() const {
    std::lock_guard<std::mutex> lock(mu_);
    return oversize_;
  }
  std::size_t retained_kept() const {
    std::lock_guard<std::mutex> lock(mu_);
    return retained_.size();
  }

  /// Per lane: queued now, shed by rate and for room so far.
  nlohmann::json lanes() {
    std::lock_guard<std::mutex> lock(mu_);
    report_shed_locked(steady_seconds());
    auto out = nlohmann::json::object();
    for (std::size_t i = 0; i < inbound_lane_count; ++i) {
      auto lane = static_cast<inbound_lane>(i);
      auto c = budget_.counts(lane);
      out[lane_name(lane)] = {{"queued", c.queued_msgs},     {"queued_bytes", c.queued_bytes},
                              {"admitted", c.admitted},      {"rate_limited", c.rate_limited},
                              {"lane_full", c.lane_full}};
    }
    return out;
  }

private:
  static constexpr double shed_report_every = 10;

  struct subscription {
    std::string filter;
    handle who;
  };

  /// One warning per source that lost messages since the last report.
  void report_shed_locked(double now) {
    if (now - last_shed_report_ < shed_report_every)
      return;
    last_shed_report_ = now;
    for (auto& line : budget_.report(now))
      log::warn("mqtt bridge: {}", line);
  }

  router_options opts_;
  Delivery delivery_;
  mutable std::mutex mu_;
  bool stopping_ = false;
  std::vector<subscription> subs_;
  retained_cache retained_;
  bus_meter meter_;
  std::uint64_t msgs_in_ = 0, oversize_ = 0;
  inbound_budget budget_;
  double last_shed_report_ = 0;
};

} // namespace lull
