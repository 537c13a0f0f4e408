#include "actors/mqtt_bridge.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"
#include "messages/util.hpp"
#include "src/log.hpp"
#include "src/stats/bus_meter.hpp"
#include "src/stats/collector_guard.hpp"
#include "src/stats/inbound_budget.hpp"

namespace lull {

namespace {

/// Sent by the bridge to itself at normal priority when it is told to shut
/// down: it arrives after every publish already queued, so those go out
/// before the disconnect.
using drained_atom = caf::atom_constant<caf::atom("drained")>;

/// How long a shutting-down bridge waits for its queued publishes before it
/// disconnects anyway (under an inbound flood the queue can be long).
constexpr std::chrono::milliseconds drain_limit{300};
/// Paho's disconnect timeout: how long it waits for messages in flight.
/// The offline publish before it is acknowledged by then, and so is every
/// publish queued ahead of it (a broker acknowledges one client's packets
/// in order); QoS 1 messages still coming in are the broker's to send again
/// (lulld's session is persistent).
constexpr std::chrono::milliseconds disconnect_limit{200};

/// The latest message on each retained topic the bridge has seen since it
/// last connected: a topic enters with a message the broker flagged as
/// retained, is updated by every later message on it, and leaves with an
/// empty payload (how MQTT clears a retained message). The broker sends
/// retained messages once per SUBSCRIBE, and the bridge subscribes once per
/// filter, so an actor that subscribes to a filter another actor already
/// holds gets the matching entries from here instead. Bounded in topics and
/// bytes; past the bounds new topics are not kept (counted, logged once).
class retained_cache {
public:
  retained_cache(std::size_t max_topics, std::size_t max_bytes)
    : max_topics_(max_topics), max_bytes_(max_bytes) {}

  void note(const mqtt_message& msg) {
    auto it = by_topic_.find(msg.topic);
    if (it == by_topic_.end()) {
      if (!msg.retain || msg.payload.empty())
        return;
      auto size = msg.topic.size() + msg.payload.size();
      if (by_topic_.size() >= max_topics_ || bytes_ + size > max_bytes_) {
        if (skipped_++ == 0)
          log::warn("mqtt bridge: not keeping retained {} for late subscribers: {} topics, {} "
                    "bytes kept already (at most {} / {})",
                    msg.topic.substr(0, 200), by_topic_.size(), bytes_, max_topics_, max_bytes_);
        return;
      }
      bytes_ += size;
      by_topic_.emplace(msg.topic, msg).first->second.hold.reset();
      return;
    }
    bytes_ -= it->second.topic.size() + it->second.payload.size();
    if (msg.payload.empty()) {
      by_topic_.erase(it);
      return;
    }
    bytes_ += msg.topic.size() + msg.payload.size();
    it->second = msg;
    it->second.retain = true;
    it->second.hold.reset(); // kept here, it holds no lane's budget
  }

  /// Calls f for each kept message whose topic `filter` matches.
  template <class F>
  void each_matching(const std::string& filter, F&& f) const {
    for (auto& [topic, msg] : by_topic_)
      if (topic_matches(filter, topic))
        f(msg);
  }

  /// On every (re)connect: the broker sends what is retained now.
  void clear() {
    by_topic_.clear();
    bytes_ = 0;
  }

  std::size_t size() const { return by_topic_.size(); }
  std::uint64_t skipped() const { return skipped_; }

private:
  std::size_t max_topics_, max_bytes_;
  std::size_t bytes_ = 0;
  std::uint64_t skipped_ = 0;
  std::unordered_map<std::string, mqtt_message> by_topic_;
};

struct subscription {
  std::string filter;
  caf::actor who;
};

/// Where inbound messages go. Paho's callback thread routes each message
/// itself, straight into the mailboxes of the actors that subscribed (one
/// hand-off and one wake-up fewer per message than through the bridge's own
/// mailbox, and a burst of work on CAF's shared threads cannot hold routing
/// up); the bridge actor adds subscriptions, counts its publishes and reads
/// the meter. One mutex guards it all: the subscriptions, the retained
/// messages kept for late subscribers and the bus meter.
class router {
public:
  router(std::size_t max_payload_bytes, std::size_t retained_max_topics,
         std::size_t retained_max_bytes, topic_names topics, budget_options budget)
    : max_bytes_(max_payload_bytes), retained_(retained_max_topics, retained_max_bytes),
      topics_(std::move(topics)), budget_(std::move(budget)) {
    meter_.start(steady_seconds());
  }

  /// Routes one inbound message; `arrived` is when Paho handed it over
  /// (monotonic seconds). Each subscriber gets the same immutable message.
  /// Before any actor sees it: the size cap, then the message's lane budget
  /// (its source's rate, the lane's room); what is shed is counted and
  /// named in a log line every 10 s.
  void route(mqtt_message msg, double arrived) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_)
      return; // the actors it would go to are stopping too
    ++msgs_in_;
    meter_.on_in();
    if (msg.payload.size() > max_bytes_) {
      // One size cap before any decoding: no actor sees such a payload.
      if (oversize_++ % 100 == 0)
        log::warn("mqtt bridge: dropped {} bytes on {} (at most {} accepted; {} dropped so far)",
                  msg.payload.size(), msg.topic.substr(0, 200), max_bytes_, oversize_);
      meter_.on_handled(0, false);
      return;
    }
    auto cls = classify_inbound(topics_.strip(msg.topic));
    auto d = budget_.admit(cls, msg.topic.size() + msg.payload.size(), arrived);
    if (arrived - last_shed_report_ >= shed_report_every)
      report_shed_locked(arrived);
    if (d.v != inbound_budget::verdict::accept) {
      inbound_shed().fetch_add(1, std::memory_order_relaxed);
      meter_.on_handled(0, false);
      return;
    }
    msg.hold = std::move(d.hold);
    retained_.note(msg);
    caf::message shared;
    for (auto& sub : subs_) {
      if (!topic_matches(sub.filter, msg.topic))
        continue;
      if (shared.empty())
        shared = caf::make_message(inbound_atom::value, msg);
      caf::anon_send(sub.who, shared);
    }
    if (shared.empty())
      meter_.on_unrouted();
    meter_.on_dispatch(steady_seconds() - arrived);
  }

  /// Adds `who` for `filter`; true when no actor held the filter before
  /// (the bridge then subscribes at the broker, which sends what is
  /// retained). Otherwise, while connected, `who` gets the retained
  /// messages kept for the filter: the broker sent them to whoever
  /// subscribed first. Under the same lock as routing, so `who` gets each
  /// message either from here or routed, never both and never neither.
  bool subscribe(const std::string& filter, const caf::actor& who, bool connected) {
    std::lock_guard<std::mutex> lock(mu_);
    bool known = std::any_of(subs_.begin(), subs_.end(),
                             [&](auto& x) { return x.filter == filter; });
    subs_.push_back({filter, who});
    if (known && connected)
      retained_.each_matching(filter, [&](const mqtt_message& m) {
        caf::anon_send(who, inbound_atom::value, m);
      });
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

  /// On every (re)connect, before Paho hands over the session's messages:
  /// the broker sends what is retained now.
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

  /// One warning per source that lost messages since the last report.
  void report_shed_locked(double now) {
    if (now - last_shed_report_ < shed_report_every)
      return;
    last_shed_report_ = now;
    for (auto& line : budget_.report(now))
      log::warn("mqtt bridge: {}", line);
  }

  mutable std::mutex mu_;
  std::size_t max_bytes_;
  bool stopping_ = false;
  std::vector<subscription> subs_;
  retained_cache retained_;
  bus_meter meter_;
  std::uint64_t msgs_in_ = 0, oversize_ = 0;
  topic_names topics_;
  inbound_budget budget_;
  double last_shed_report_ = 0;
};

/// Paho's callback thread ends here. Connection events become one anon_send
/// to the bridge (held weakly, so callbacks arriving after it quit are
/// dropped); inbound messages are routed on this thread.
class bridge_events : public transport_events {
public:
  bridge_events(caf::actor_addr bridge, std::shared_ptr<lull::router> router,
                std::shared_ptr<std::atomic<std::uint64_t>> in_flight)
    : bridge_(std::move(bridge)), router_(std::move(router)), in_flight_(std::move(in_flight)) {}

  void on_connected(int version) override {
    router_->connected();
    send(conn_ok_atom::value, version);
  }
  void on_connect_failed(std::string reason, bool retry_now) override {
    send(conn_fail_atom::value, std::move(reason), retry_now);
  }
  void on_connection_lost(std::string reason) override {
    send(conn_lost_atom::value, std::move(reason));
  }
  /// Counts the message in flight while it is routed.
  void on_message(mqtt_message msg) override {
    in_flight_->fetch_add(1, std::memory_order_relaxed);
    router_->route(std::move(msg), steady_seconds());
    in_flight_->fetch_sub(1, std::memory_order_relaxed);
  }
  void on_disconnected() override { send(disc_done_atom::value); }

private:
  template <class... Ts>
  void send(Ts&&... xs) {
    if (auto hdl = caf::actor_cast<caf::actor>(bridge_))
      caf::anon_send(hdl, std::forward<Ts>(xs)...);
  }
  caf::actor_addr bridge_;
  std::shared_ptr<lull::router> router_;
  std::shared_ptr<std::atomic<std::uint64_t>> in_flight_;
};

struct bridge_state {
  std::unique_ptr<mqtt_transport> transport;
  std::shared_ptr<lull::router> router;
  std::vector<caf::actor> online_watchers;
  std::vector<caf::actor> offline_watchers;
  bool connected = false;
  bool ever_connected = false;
  bool stopping = false;
  bool disconnecting = false;
  std::chrono::milliseconds backoff{250};
  std::uint64_t msgs_out = 0, reconnects = 0;
  std::shared_ptr<std::atomic<std::uint64_t>> in_flight
    = std::make_shared<std::atomic<std::uint64_t>>(0);
  static inline const char* name = "mqtt_bridge";
};

caf::behavior bridge_impl(caf::stateful_actor<bridge_state>* self, bridge_options opts) {
  auto& st = self->state;
  st.router = std::make_shared<lull::router>(opts.max_payload_bytes, opts.retained_max_topics,
                                             opts.retained_max_bytes, opts.topics, opts.budget);
  auto availability = opts.topics.availability(opts.instance);
  opts.transport.will = {availability, "offline", 1, true, {}, {}, {}};
  if (!opts.transport.on_error)
    opts.transport.on_error = [](const std::string& what) { log::error("{}", what); };
  auto factory = opts.factory ? opts.factory : transport_factory(make_paho_transport);
  st.transport = factory(opts.transport, std::make_shared<bridge_events>(
                                           self->address(), st.router, st.in_flight));
  st.transport->connect();
  log::info("mqtt bridge: connecting to {} as {}", opts.transport.uri, opts.transport.client_id);
  // Whatever way the bridge ends, Paho's thread routes nothing more.
  self->attach_functor([router = st.router] { router->stop(); });

  auto publish = [self](mqtt_message msg) {
    ++self->state.msgs_out;
    self->state.router->with_meter([](bus_meter& m) { m.on_out(); });
    self->state.transport->publish(msg);
  };

  return {
    [=](subscribe_atom, const std::string& filter, caf::actor who) {
      auto& s = self->state;
      // Every filter is subscribed on connect; a new one now, when connected
      // (the broker sends what is retained).
      if (s.router->subscribe(filter, who, s.connected) && s.connected)
        s.transport->subscribe({filter}, 1);
    },
    [=](online_atom, caf::actor who) {
      self->state.online_watchers.push_back(who);
      if (self->state.connected)
        self->send(who, online_atom::value);
    },
    [=](offline_atom, caf::actor who) {
      self->state.offline_watchers.push_back(who);
      if (!self->state.connected)
        self->send(who, offline_atom::value);
    },
    [=](publish_atom, mqtt_message& msg) { publish(std::move(msg)); },
    // An inbound message handed to the bridge itself is routed like one
    // from Paho's callback.
    [=](inbound_atom, const mqtt_message& msg) { self->state.router->route(msg, steady_seconds()); },
    [=](handled_atom, double latency_sec, bool ok) {
      self->state.router->with_meter([&](bus_meter& m) { m.on_handled(latency_sec, ok); });
    },
    [=](bus_atom) {
      auto& s = self->state;
      auto report = s.router->with_meter([&](bus_meter& m) {
        return m.report(steady_seconds(), s.in_flight->load(), opts.instance, unix_seconds_now());
      });
      report["reconnects"] = s.reconnects;
      report["oversize"] = s.router->oversize();
      report["retained_kept"] = s.router->retained_kept();
      report["handler_failures"] = inbound_failures().load();
      report["shed"] = inbound_shed().load();
      report["lanes"] = s.router->lanes();
      auto out = s.transport->stats();
      report["out_waiting"] = out.waiting;
      report["out_window"] = out.window;
      report["out_oversize"] = out.oversize;
      report["out_ack_resyncs"] = out.ack_resyncs;
      report["out_dropped"] = out.dropped;
      report["connected"] = s.connected;
      return report.dump();
    },
    [=](conn_ok_atom, int version) {
      auto& s = self->state;
      if (s.stopping)
        return;
      if (s.ever_connected)
        ++s.reconnects;
      s.connected = s.ever_connected = true;
      s.backoff = std::chrono::milliseconds(250);
      log::info("mqtt bridge: connected to {} (MQTT {})", opts.transport.uri,
                version == 5 ? "v5" : "v3.1.1");
      publish({availability, "online", 1, true, {}, {}, {}});
      s.transport->subscribe(s.router->filters(), 1);
      for (auto& w : s.online_watchers)
        self->send(w, online_atom::value);
    },
    [=](conn_fail_atom, const std::string& reason, bool retry_now) {
      auto& s = self->state;
      if (s.stopping)
        return;
      s.connected = false;
      for (auto& w : s.offline_watchers)
        self->send(w, offline_atom::value);
      if (retry_now) { // the transport switched MQTT version
        log::warn("mqtt bridge: {} ({}); v3.1.1 from now on", reason, opts.transport.uri);
        self->send(self, connect_atom::value); // at once, with the other version
        return;
      }
      log::warn("mqtt bridge: {} to {}; retrying in {} ms", reason, opts.transport.uri,
                s.backoff.count());
      self->delayed_send(self, s.backoff, connect_atom::value);
      s.backoff = std::min(s.backoff * 2, std::chrono::milliseconds(
                                            std::chrono::seconds(opts.transport.reconnect_max)));
    },
    [=](connect_atom) {
      if (!self->state.connected && !self->state.stopping)
        self->state.transport->connect();
    },
    [=](conn_lost_atom, const std::string& reason) {
      auto& s = self->state;
      s.connected = false;
      log::warn("mqtt bridge: {}; reconnecting automatically", reason);
      for (auto& w : s.offline_watchers)
        self->send(w, offline_atom::value);
    },
    [=](stats_atom) {
      auto& s = self->state;
      return caf::make_message(s.router->msgs_in(), s.msgs_out, s.reconnects, s.connected);
    },
    // lulld sends this ahead of everything queued (high priority), so that
    // an inbound flood cannot hold it back: from here on inbound messages
    // are dropped unrouted, and publishes already queued still go out
    // before the disconnect (drained_atom queues behind them), for at most
    // drain_limit.
    [=](shutdown_atom) {
      auto& s = self->state;
      if (s.stopping)
        return;
      s.stopping = true;
      s.router->stop();
      self->send(self, drained_atom::value);
      self->delayed_send(self, drain_limit, drained_atom::value);
    },
    [=](drained_atom) {
      auto& s = self->state;
      if (!s.stopping || s.disconnecting)
        return;
      s.disconnecting = true;
      log::debug("mqtt bridge: queued publishes sent; publishing offline and disconnecting");
      if (s.connected) {
        ++s.msgs_out;
        s.router->with_meter([](bus_meter& m) { m.on_out(); });
        s.transport->disconnect({availability, "offline", 1, true, {}, {}, {}},
                                disconnect_limit);
        self->delayed_send(self, std::chrono::milliseconds(1000), disc_done_atom::value, true);
      } else {
        self->send(self, disc_done_atom::value);
      }
    },
    [=](disc_done_atom, bool) {
      if (self->state.disconnecting) {
        log::warn("mqtt bridge: the broker did not confirm offline and the disconnect within "
                  "1s; closing the connection");
        self->quit();
      }
    },
    [=](disc_done_atom) {
      if (self->state.disconnecting) {
        log::info("mqtt bridge: disconnected");
        self->quit();
      }
    },
  };
}

} // namespace

caf::actor spawn_mqtt_bridge(caf::actor_system& sys, bridge_options opts) {
  return sys.spawn(bridge_impl, std::move(opts));
}

} // namespace lull
