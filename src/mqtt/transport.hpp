#pragma once
/// lull's own view of an MQTT connection. The bridge actor talks to this
/// interface; paho_transport implements it over Eclipse Paho, and tests can
/// substitute their own. Implementations never block the caller on the
/// network: results arrive through transport_events, possibly on another
/// thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "messages/mqtt_message.hpp"

namespace lull {

struct transport_events {
  virtual ~transport_events() = default;
  virtual void on_connected(int mqtt_version) = 0;
  /// `retry_now`: the transport switched MQTT version (a v5 CONNECT
  /// refused or dropped, docs/fleet.md) and the next connect() should come
  /// at once, not after a back-off.
  virtual void on_connect_failed(std::string reason, bool retry_now) = 0;
  virtual void on_connection_lost(std::string reason) = 0;
  virtual void on_message(mqtt_message msg) = 0;
  virtual void on_disconnected() = 0;
};

struct transport_options {
  std::string uri;
  std::string client_id;
  std::string username;
  std::string password;
  mqtt_message will;                  ///< last will (topic empty: none)
  int keep_alive_sec = 30;
  /// Paho's automatic reconnect after a lost connection. A retry every
  /// second (a refused connect costs one SYN) puts lulld and its clients back
  /// on the broker within about a second of its return, well inside any
  /// lease's TTL; a longer backoff would let a broker restart end leases.
  std::chrono::seconds reconnect_min{1};
  std::chrono::seconds reconnect_max{1};
  int max_buffered = 10000;           ///< publishes kept while disconnected (oldest dropped)
  /// The largest publish (topic + payload + properties, bytes) ever sent:
  /// a bigger one is dropped and reported, never handed to the broker (a
  /// broker drops a client whose packet exceeds its limit, and a QoS 1
  /// message in a persistent session would be resent on every reconnect).
  /// The broker's own Maximum Packet Size from its v5 CONNACK lowers it.
  std::size_t max_publish_bytes = 1000000;
  /// The socket's receive buffer (SO_RCVBUF, bytes; 0: the kernel's
  /// autotuning, up to net.ipv4.tcp_rmem's 32 MiB on Debian). What lulld has
  /// not read yet waits here, so a flood on its subscriptions delays every
  /// message behind it by this much; capped, the backlog stays in the broker,
  /// which drops QoS 0 beyond max_queued_messages. 256 KiB keeps a LAN link
  /// full (a window of 128 KiB covers 1 Gbit/s at 1 ms round trip).
  std::size_t receive_buffer_bytes = 256 * 1024;
  /// QoS 1 publishes unacknowledged this long while the broker kept sending
  /// (or twice as long in silence) mean the broker dropped the
  /// acknowledgements: Mosquitto 2.0 drops every packet, PUBACKs included,
  /// for a client whose queue holds max_queued_messages, and Paho then holds
  /// all publishing behind a window that never frees. The transport drops
  /// the connection and Paho's reconnect resends them (docs/collectors.md).
  std::chrono::milliseconds ack_timeout{1500};
  /// Where the transport reports what it had to drop (default: stderr).
  std::function<void(const std::string&)> on_error;
  /// MQTT v5 Maximum Packet Size announced in CONNECT (0: none): the broker
  /// drops a bigger packet for this client rather than sending it, so a
  /// flood of huge payloads never reaches (or grows) the process.
  int max_packet_size = 1024 * 1024;
  /// MQTT version: v5 first (prefer_v5) and, with `fallback`, v3.1.1 when
  /// the broker refuses v5 in its CONNACK or closes a v5 CONNECT without one
  /// (as RabbitMQ's MQTT plugin does), unless v5 worked before; back to v5
  /// when v3.1.1 gets no answer either (docs/fleet.md). A fallback's
  /// connect failure says retry_now.
  /// `mqtt_version` auto = both true; 5 = prefer_v5 only; 3.1.1 = neither.
  bool prefer_v5 = true;
  bool fallback = true;
  /// TLS (ssl:// or mqtts:// URIs): the CA that signed the broker's
  /// certificate (empty: the system's trust store), and this client's
  /// certificate and key for brokers that take identities from certificates.
  /// The broker's certificate and host name are always verified.
  std::string ca_file, cert_file, key_file;
};

/// mqtt_version as lull's keys spell it: "auto" (prefer_v5 and fallback),
/// "5" (prefer_v5 only) or "3.1.1" (neither).
inline std::string mqtt_version_name(const transport_options& t) {
  return !t.prefer_v5 ? "3.1.1" : t.fallback ? "auto" : "5";
}

/// Sets prefer_v5 and fallback from "auto", "5" or "3.1.1"; false (and `t`
/// unchanged) for anything else.
inline bool set_mqtt_version(transport_options& t, const std::string& version) {
  if (version != "auto" && version != "5" && version != "3.1.1")
    return false;
  t.prefer_v5 = version != "3.1.1";
  t.fallback = version == "auto";
  return true;
}

class mqtt_transport {
public:
  virtual ~mqtt_transport() = default;
  /// Starts connecting; reports on_connected or on_connect_failed.
  virtual void connect() = 0;
  virtual void publish(const mqtt_message& msg) = 0;
  virtual void subscribe(const std::vector<std::string>& filters, int qos) = 0;
  /// Publishes `last` (when its topic is set), waits for the broker to take
  /// it, then disconnects cleanly (no last will); reports on_disconnected.
  virtual void disconnect(const mqtt_message& last, std::chrono::milliseconds timeout) = 0;
  /// MQTT version of the current or last connection (5 or 4).
  virtual int mqtt_version() const = 0;
  /// Counters of the publish path (zero for transports that keep none).
  struct publish_stats {
    std::uint64_t waiting = 0;   ///< publishes waiting for the broker's window now
    std::uint64_t window = 0;    ///< QoS 1 publishes allowed unacknowledged at once
    std::uint64_t oversize = 0;  ///< publishes dropped as larger than max_publish_bytes
    std::uint64_t dropped = 0;   ///< publishes dropped for a full buffer or an error
    std::uint64_t ack_resyncs = 0; ///< reconnects after acknowledgements the broker dropped
  };
  virtual publish_stats stats() const { return {}; }
};

std::unique_ptr<mqtt_transport> make_paho_transport(transport_options opts,
                                                    std::shared_ptr<transport_events> events);

/// Sets TCP_NODELAY on every TCP socket of this process connected to
/// `port` on loopback or elsewhere (and SO_RCVBUF to `receive_buffer` when
/// not 0). Paho C never sets it, and without it a QoS 1 request/response
/// waits on Nagle + delayed ACK (~40-88 ms). Returns the sockets it found.
std::vector<int> tune_sockets_to(int port, std::size_t receive_buffer = 0);

/// The port of an MQTT URI ("tcp://127.0.0.1:1883" -> 1883; default 1883/8883).
int port_of_uri(const std::string& uri);

} // namespace lull
