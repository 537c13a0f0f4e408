#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <mutex>

#include <mqtt/async_client.h>

#include "src/mqtt/paho_message.hpp"
#include "src/mqtt/transport.hpp"

namespace lull {

int port_of_uri(const std::string& uri) {
  auto colon = uri.rfind(':');
  auto scheme_end = uri.find("://");
  if (colon != std::string::npos && (scheme_end == std::string::npos || colon > scheme_end + 2)) {
    auto rest = uri.substr(colon + 1);
    auto slash = rest.find('/');
    try {
      return std::stoi(rest.substr(0, slash));
    } catch (...) {
    }
  }
  return uri.rfind("ssl", 0) == 0 || uri.rfind("mqtts", 0) == 0 ? 8883 : 1883;
}

static bool uses_tls(const std::string& uri) {
  return uri.rfind("ssl://", 0) == 0 || uri.rfind("mqtts://", 0) == 0
         || uri.rfind("wss://", 0) == 0;
}

int set_nodelay_on_sockets_to(int port) {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr)
    return 0;
  while (auto* e = ::readdir(dir)) {
    int fd = std::atoi(e->d_name);
    if (fd <= 2)
      continue;
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0)
      continue;
    int peer_port = -1;
    if (peer.ss_family == AF_INET)
      peer_port = ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
    else if (peer.ss_family == AF_INET6)
      peer_port = ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port);
    if (peer_port != port)
      continue;
    int one = 1;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0)
      ++count;
  }
  ::closedir(dir);
  return count;
}

namespace {

class paho_transport : public mqtt_transport, public mqtt::callback {
public:
  paho_transport(transport_options opts, std::shared_ptr<transport_events> events)
    : opts_(std::move(opts)), events_(std::move(events)) {
    version_ = opts_.prefer_v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    if (uses_tls(opts_.uri))
      make_ssl_options();
    make_client();
  }

  ~paho_transport() override {
    // Callbacks check closed_; MQTTAsync_destroy (in the client's destructor)
    // makes no further calls once it returns.
    closed_ = true;
    std::lock_guard<std::mutex> guard(mtx_);
    client_.reset();
    retired_.clear();
  }

  void connect() override {
    std::lock_guard<std::mutex> guard(mtx_);
    if (fallback_pending_.exchange(false)) {
      version_ = MQTTVERSION_3_1_1;
      client_->set_callback(null_cb_);
      retired_.push_back(std::move(client_));
      make_client();
    }
    do_connect();
  }

  void publish(const mqtt_message& m) override {
    {
      std::lock_guard<std::mutex> guard(overflow_mtx_);
      // Once something waits, everything after it waits too: order is kept.
      drain_locked();
      if (!overflow_.empty() || !try_publish(m))
        enqueue(m);
    }
    // A (re)connect or delivery that found the buffer locked left the
    // draining to this thread.
    if (drain_wanted_.exchange(false))
      drain_overflow();
  }

  void subscribe(const std::vector<std::string>& filters, int qos) override {
    if (filters.empty())
      return;
    try {
      auto topics = mqtt::string_collection::create(filters);
      std::vector<int> qoss(filters.size(), qos);
      client_->subscribe(topics, qoss);
    } catch (const mqtt::exception& e) {
      // Not connected: the bridge resubscribes on the next connect.
    }
  }

  void disconnect(const mqtt_message& last, std::chrono::milliseconds timeout) override {
    // Paho C drops a disconnect issued while a QoS 1 publish is still queued
    // (neither disconnecting nor calling back), so the last message is
    // published first and the disconnect follows its acknowledgement.
    std::lock_guard<std::mutex> guard(mtx_);
    disconnect_timeout_ = timeout;
    try {
      if (!client_->is_connected()) {
        events_->on_disconnected();
        return;
      }
      if (last.topic.empty()) {
        client_->disconnect(static_cast<int>(timeout.count()), nullptr, listener_disc_);
        return;
      }
      auto msg = mqtt::make_message(last.topic, last.payload, last.qos, last.retain);
      client_->publish(msg, nullptr, listener_last_);
    } catch (const mqtt::exception&) {
      events_->on_disconnected();
    }
  }

  int mqtt_version() const override { return version_ == MQTTVERSION_5 ? 5 : 4; }

  // -- mqtt::callback (Paho's thread: hand over and return) ------------------

  void connected(const std::string&) override {
    if (closed_)
      return;
    drain_overflow();
    set_nodelay_on_sockets_to(port_of_uri(opts_.uri));
    events_->on_connected(mqtt_version());
  }

  void connection_lost(const std::string& cause) override {
    if (closed_)
      return;
    events_->on_connection_lost(cause.empty() ? "connection lost" : cause);
  }

  void message_arrived(mqtt::const_message_ptr m) override {
    if (closed_)
      return;
    events_->on_message(from_paho(*m));
  }

  void delivery_complete(mqtt::delivery_token_ptr) override { drain_overflow(); }

private:
  struct connect_listener : mqtt::iaction_listener {
    paho_transport* self;
    explicit connect_listener(paho_transport* s) : self(s) {}
    void on_failure(const mqtt::token& tok) override {
      if (!self->closed_)
        self->connect_failed(tok);
    }
    void on_success(const mqtt::token&) override {}
  };
  /// Publishes now; false when Paho's in-flight window (or its offline
  /// buffer) is full and the message should wait for a delivery to complete.
  bool try_publish(const mqtt_message& m) {
    auto msg = to_paho(m, version_ == MQTTVERSION_5);
    try {
      client_->publish(msg);
      return true;
    } catch (const mqtt::exception& e) {
      if (e.get_return_code() == MQTTASYNC_MAX_MESSAGES_INFLIGHT
          || e.get_return_code() == MQTTASYNC_MAX_BUFFERED_MESSAGES
          || e.get_return_code() == MQTTASYNC_DISCONNECTED)
        return false;
      ++dropped_;
      report("mqtt transport: dropped a message to " + m.topic + ": " + e.what());
      return true;
    }
  }

  /// Caller holds overflow_mtx_.
  void enqueue(const mqtt_message& m) {
    if (overflow_.size() >= max_buffered()) {
      overflow_.pop_front();
      if (++dropped_ % 1000 == 1)
        report("mqtt transport: " + std::to_string(overflow_.size())
               + " messages waiting for the broker; dropped the oldest ("
               + std::to_string(dropped_.load()) + " so far)");
    }
    overflow_.push_back(m);
  }

  /// From Paho's callback thread: never wait for the lock (the thread that
  /// holds it may be inside Paho, waiting for this one); whoever holds it
  /// drains when it lets go (drain_wanted_).
  void drain_overflow() {
    drain_wanted_ = true;
    std::unique_lock<std::mutex> guard(overflow_mtx_, std::try_to_lock);
    if (guard.owns_lock()) {
      drain_wanted_ = false;
      drain_locked();
    }
  }

  void drain_locked() {
    while (!overflow_.empty() && !closed_ && try_publish(overflow_.front()))
      overflow_.pop_front();
  }

  struct last_listener : mqtt::iaction_listener {
    paho_transport* self;
    explicit last_listener(paho_transport* s) : self(s) {}
    void on_failure(const mqtt::token&) override { self->disconnect_now(); }
    void on_success(const mqtt::token&) override { self->disconnect_now(); }
  };
  void disconnect_now() {
    if (closed_)
      return;
    try {
      client_->disconnect(static_cast<int>(disconnect_timeout_.count()), nullptr, listener_disc_);
    } catch (const mqtt::exception&) {
      events_->on_disconnected();
    }
  }
  struct disc_listener : mqtt::iaction_listener {
    paho_transport* self;
    explicit disc_listener(paho_transport* s) : self(s) {}
    void on_failure(const mqtt::token&) override {
      if (!self->closed_)
        self->events_->on_disconnected();
    }
    void on_success(const mqtt::token&) override {
      if (!self->closed_)
        self->events_->on_disconnected();
    }
  };

  /// The one publish buffer: messages Paho cannot take now (disconnected, or
  /// its in-flight window full) wait in overflow_, oldest dropped first.
  /// Paho's own offline buffer stays off so there is no second one.
  std::size_t max_buffered() const {
    return static_cast<std::size_t>(std::max(1, opts_.max_buffered));
  }

  void report(const std::string& what) {
    if (opts_.on_error)
      opts_.on_error(what);
    else
      std::fprintf(stderr, "%s\n", what.c_str());
  }

  /// TLS options, made once. No error handler: Paho's C++ wrapper registers
  /// it with a pointer to the ssl_options object, and the copies a connect
  /// makes leave that pointer dangling, so a failed handshake would call
  /// into freed memory. A TLS failure is named by the URI scheme instead.
  void make_ssl_options() {
    auto ssl = mqtt::ssl_options_builder();
    ssl.enable_server_cert_auth(true).verify(true);
    if (!opts_.ca_file.empty())
      ssl.trust_store(opts_.ca_file);
    if (!opts_.cert_file.empty())
      ssl.key_store(opts_.cert_file);
    if (!opts_.key_file.empty())
      ssl.private_key(opts_.key_file);
    ssl_opts_ = std::make_unique<mqtt::ssl_options>(ssl.finalize());
  }

  void make_client() {
    auto copts = mqtt::create_options_builder()
                   .mqtt_version(version_)
                   .send_while_disconnected(false)
                   .finalize();
    client_ = std::make_unique<mqtt::async_client>(opts_.uri, opts_.client_id, copts, nullptr);
    client_->set_callback(*this);
  }

  void do_connect() {
    auto b = mqtt::connect_options_builder();
    b.mqtt_version(version_)
      .keep_alive_interval(std::chrono::seconds(opts_.keep_alive_sec))
      .connect_timeout(std::chrono::seconds(5))
      .automatic_reconnect(opts_.reconnect_min, opts_.reconnect_max)
      .max_inflight(65535);
    if (version_ == MQTTVERSION_5) {
      // A session that outlives short outages keeps subscriptions and QoS 1
      // messages; lull resubscribes on every connect anyway.
      mqtt::properties props{{mqtt::property::SESSION_EXPIRY_INTERVAL, 300}};
      if (opts_.max_packet_size > 0)
        props.add({mqtt::property::MAXIMUM_PACKET_SIZE, opts_.max_packet_size});
      b.clean_start(false).properties(props);
    } else {
      b.clean_session(false);
    }
    if (!opts_.username.empty())
      b.user_name(opts_.username).password(opts_.password);
    if (ssl_opts_)
      b.ssl(*ssl_opts_);
    if (!opts_.will.topic.empty())
      b.will(mqtt::message(opts_.will.topic, opts_.will.payload, opts_.will.qos,
                           opts_.will.retain));
    try {
      client_->connect(b.finalize(), nullptr, listener_conn_);
    } catch (const mqtt::exception& e) {
      events_->on_connect_failed(e.what());
    }
  }

  void connect_failed(const mqtt::token& tok) {
    int rc = tok.get_return_code();
    int reason = static_cast<int>(tok.get_reason_code());
    // A v3.1.1-only broker answers a v5 CONNECT with "unacceptable protocol
    // version" (1) or reason 0x84: fall back to v3.1.1 and try at once.
    if (version_ == MQTTVERSION_5 && opts_.fallback && (rc == 1 || reason == 0x84 || rc == 0x84)) {
      events_->on_connect_failed("broker refused MQTT v5; falling back to v3.1.1");
      fallback_pending_ = true;
      return;
    }
    std::string why = "connect failed (return code " + std::to_string(rc);
    if (reason != 0)
      why += ", reason " + std::to_string(reason);
    why += ")";
    if (ssl_opts_)
      why += "; over TLS, if the broker is up: check its certificate against the CA file"
             " (broker.ca_file, --ca-file) and the client certificate and key";
    events_->on_connect_failed(why);
  }

private:
  struct null_callback : mqtt::callback {};
  transport_options opts_;
  std::shared_ptr<transport_events> events_;
  std::unique_ptr<mqtt::ssl_options> ssl_opts_; ///< set for ssl://, mqtts://, wss://
  std::unique_ptr<mqtt::async_client> client_;
  std::vector<std::unique_ptr<mqtt::async_client>> retired_; ///< v5 clients replaced by a fallback
  std::mutex mtx_;
  int version_;
  std::atomic<bool> fallback_pending_{false};
  std::atomic<long> dropped_{0};
  std::mutex overflow_mtx_;
  std::atomic<bool> drain_wanted_{false};
  std::deque<mqtt_message> overflow_; ///< waiting for the broker or room in Paho's window
  null_callback null_cb_;
  connect_listener listener_conn_{this};
  disc_listener listener_disc_{this};
  last_listener listener_last_{this};
  std::atomic<bool> closed_{false};
  std::chrono::milliseconds disconnect_timeout_{1000};
};

} // namespace

std::unique_ptr<mqtt_transport> make_paho_transport(transport_options opts,
                                                    std::shared_ptr<transport_events> events) {
  // Paho C's own OpenSSL init loads every error string and the OpenSSL config
  // up front: measured here, ~1.5 MB more RSS for a lulld that never uses TLS.
  // OpenSSL >= 1.1 initialises itself on first use, so ssl:// still works.
  static std::once_flag paho_init;
  std::call_once(paho_init, [] {
    MQTTAsync_init_options inits = MQTTAsync_init_options_initializer;
    inits.do_openssl_init = 0;
    MQTTAsync_global_init(&inits);
  });
  return std::make_unique<paho_transport>(std::move(opts), std::move(events));
}

} // namespace lull
