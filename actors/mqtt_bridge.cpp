#include "actors/mqtt_bridge.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "actors/actor_util.hpp"
#include "actors/collector_atoms.hpp"
#include "messages/util.hpp"
#include "src/bus/router.hpp"
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

/// How the router (src/bus/router.hpp) reaches an actor: one CAF message
/// per routed message, shared by every actor that subscribed to it.
struct actor_delivery {
  using handle = caf::actor;
  using packet = caf::message;
  packet pack(const mqtt_message& msg) const { return caf::make_message(inbound_atom::value, msg); }
  void send(const handle& who, const packet& p) const { caf::anon_send(who, p); }
};

using bridge_router = inbound_router<actor_delivery>;

/// lull/<instance>/availability: "online" or "offline" as plain text,
/// retained (Home Assistant's availability topic).
mqtt_message availability_message(const std::string& topic, const char* state) {
  mqtt_message m;
  m.topic = topic;
  m.payload = state;
  m.qos = 1;
  m.retain = true;
  return m;
}

/// Paho's callback thread ends here. Connection events become one anon_send
/// to the bridge (held weakly, so callbacks arriving after it quit are
/// dropped); inbound messages are routed on this thread.
class bridge_events : public transport_events {
public:
  bridge_events(caf::actor_addr bridge, std::shared_ptr<bridge_router> router,
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
  std::shared_ptr<bridge_router> router_;
  std::shared_ptr<std::atomic<std::uint64_t>> in_flight_;
};

struct bridge_state {
  std::unique_ptr<mqtt_transport> transport;
  std::shared_ptr<bridge_router> router;
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
  router_options ropts;
  ropts.max_payload_bytes = opts.limits.max_payload;
  ropts.retained_max_topics = opts.retained_max_topics;
  ropts.retained_max_bytes = opts.retained_max_bytes;
  ropts.topics = opts.topics;
  ropts.budget = opts.budget;
  ropts.shed_total = &inbound_shed();
  st.router = std::make_shared<bridge_router>(std::move(ropts));
  auto availability = opts.topics.availability(opts.instance);
  opts.transport.will = availability_message(availability, "offline");
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
      publish(availability_message(availability, "online"));
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
        s.transport->disconnect(availability_message(availability, "offline"),
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
