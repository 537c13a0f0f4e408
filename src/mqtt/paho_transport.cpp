#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include <mqtt/async_client.h>

#include "src/mqtt/fair_queue.hpp"
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

std::vector<int> tune_sockets_to(int port, std::size_t receive_buffer) {
  std::vector<int> found;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr)
    return found;
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
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
      continue; // not TCP
    if (receive_buffer > 0) {
      // The kernel doubles it for its bookkeeping; a value set here also
      // turns autotuning off for this socket.
      int bytes = static_cast<int>(std::min<std::size_t>(receive_buffer, 1 << 30));
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    }
    found.push_back(fd);
  }
  ::closedir(dir);
  return found;
}

namespace {

/// What Paho C 1.3 says when the socket closed after CONNECT was sent and
/// before any CONNACK came (MQTTAsync_cycle, state WAIT_FOR_CONNACK). A
/// refused or unreachable port and a TLS failure are reported as "TCP/TLS
/// connect failure" or without a message, a silent broker as "TCP connect
/// timeout": only this one means a broker took the CONNECT and hung up.
constexpr const char* closed_before_connack = "TCP connect completion failure";

/// Paho C++ 1.2 keeps a failure's message inside the token and hands it out
/// only through the exception a completed token throws.
std::string failure_message(const mqtt::token& tok) {
  try {
    const_cast<mqtt::token&>(tok).try_wait(); // complete: does not block
  } catch (const mqtt::exception& e) {
    return e.get_message();
  }
  return {};
}

/// Thread and lock design.
///
/// Paho calls back on its own threads (connected, connection_lost,
/// message_arrived, delivery_complete, the action listeners), mostly while
/// it holds its global mutex, and the callbacks lead back into this class:
/// lease_client's on_connected subscribes and publishes, a delivery drains
/// the overflow buffer, a published last message disconnects. Paho's
/// connect, is_connected and destroy take that global mutex (from any
/// thread but its own). Its publish, called from a thread of lull's, can
/// wait for a mutex that Paho's receiving thread holds while it calls back
/// (seen in a hung worker's stacks: the flusher inside MQTTAsync_send and
/// Paho's sending thread waiting on one mutex of Paho's, the receiving
/// thread inside the connected callback). So:
///
/// - One Paho client per MQTT version (slot_), made in the constructor and
///   never replaced or destroyed before the destructor: v5 and v3.1.1 in
///   auto, only the forced one otherwise. Paho C fixes a client's version at
///   its first connect with it, so a fallback (and a return to v5) switches
///   clients instead of remaking one. No thread reads a client pointer that
///   another writes, and a callback uses its own slot.
/// - active_ (atomic) is the version whose client is in use: publish,
///   subscribe and mqtt_version() read it once and use that slot, whatever
///   thread they run on; callbacks from the other slot are ignored. next_,
///   v5_proven_, tentative_ and stale_retries_ (atomic) are the fallback
///   decision, written by the connect-failure callback and applied by the
///   next connect().
/// - mtx_ serialises connect() (switching slots, then connecting) with
///   disconnect() and the destructor, the only calls that take Paho's
///   global mutex; they come from the owner's thread (the bridge actor, or
///   lease_client's caller), never from a callback, and no callback takes
///   mtx_, so holding it across those calls cannot deadlock. A publish that
///   races a switch lands on the stopped client, fails as disconnected and
///   waits in the overflow buffer for the next connect.
/// - overflow_mtx_ guards the overflow buffer and is held across Paho's
///   publish only. A Paho thread never waits for it: its holder may be
///   inside Paho's publish, waiting for the mutex that Paho thread holds
///   (a worker reconnecting after a broker restart published its "online"
///   from the connected callback, waited here, and the client never sent
///   another packet). Paho's threads (in_callback) only try_lock it: a
///   publish that finds it taken goes to the hand-over list (handoff_,
///   under its own mutex, never held across a call into Paho), which every
///   holder of overflow_mtx_ moves into the overflow buffer before anything
///   else, so order is kept; the flusher is woken for it. A drain that
///   finds it taken is left to its holder (drain_wanted_) or the flusher.
///
/// Flow control. A v5 broker announces how many QoS 1 publishes it takes
/// unacknowledged (Receive Maximum: Mosquitto's max_inflight_messages, 20
/// by default). Paho C keeps a publish past that window in its command
/// queue and looks at the queue again only when another command arrives or
/// after a second: a burst of replies then waits up to a second for nothing.
/// So the window is kept here: at most window_ QoS 1 publishes are in
/// Paho's hands (one below the broker's, leaving room for a subscribe and
/// the last message), the rest wait in overflow_, and each delivery (Paho
/// calls it after it freed the slot) hands the next one over, which wakes
/// Paho's sender at once. A connect that found no session drops Paho's
/// unacknowledged publishes without a delivery, so the flusher thread
/// starts the count again after a connect, drops a connection whose
/// acknowledgements the broker stopped sending (check_acks), and finishes a
/// disconnect once the buffer is out.
/// True on a Paho thread while it calls back into lull.
thread_local bool in_callback = false;

struct callback_scope {
  callback_scope() { in_callback = true; }
  ~callback_scope() { in_callback = false; }
  callback_scope(const callback_scope&) = delete;
  callback_scope& operator=(const callback_scope&) = delete;
};

class paho_transport : public mqtt_transport {
  struct slot;

public:
  paho_transport(transport_options opts, std::shared_ptr<transport_events> events)
    : opts_(std::move(opts)), events_(std::move(events)) {
    if (uses_tls(opts_.uri))
      make_ssl_options();
    int first = opts_.prefer_v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    if (first == MQTTVERSION_5 || opts_.fallback)
      slot_[0] = std::make_unique<slot>(*this, MQTTVERSION_5);
    if (first == MQTTVERSION_3_1_1 || opts_.fallback)
      slot_[1] = std::make_unique<slot>(*this, MQTTVERSION_3_1_1);
    active_ = next_ = first;
    flusher_ = std::thread([this] { flush_loop(); });
  }

  ~paho_transport() override {
    // Callbacks check closed_; MQTTAsync_destroy (in each client's
    // destructor) makes no further calls once it returns.
    closed_ = true;
    {
      std::lock_guard<std::mutex> wake(flush_mtx_);
      flush_cv_.notify_all();
    }
    flusher_.join();
    std::lock_guard<std::mutex> guard(mtx_);
    for (auto& s : slot_)
      s.reset();
    if (int sink = sink_fd_.exchange(-1); sink >= 0)
      ::close(sink);
  }

  void connect() override {
    std::lock_guard<std::mutex> guard(mtx_);
    int want = next_.load();
    if (want != active_.load()) {
      stop_retrying(at(active_.load())); // already done by the failure callback
      active_ = want;
    }
    do_connect(at(want));
  }

  void publish(const mqtt_message& m) override {
    if (too_big(m))
      return;
    {
      std::unique_lock<std::mutex> guard(overflow_mtx_, std::defer_lock);
      if (!in_callback)
        guard.lock();
      else if (!guard.try_lock()) {
        hand_over(m); // a Paho thread never waits for it (see the class comment)
        return;
      }
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
      at(active_.load()).client->subscribe(topics, qoss);
    } catch (const mqtt::exception& e) {
      // Not connected: the bridge resubscribes on the next connect.
    }
  }

  void disconnect(const mqtt_message& last, std::chrono::milliseconds timeout) override {
    // Paho C drops a disconnect issued while a QoS 1 publish is still queued
    // (neither disconnecting nor calling back), so the last message is
    // published first and the disconnect follows its acknowledgement.
    std::lock_guard<std::mutex> guard(mtx_);
    disconnect_timeout_ms_ = static_cast<int>(timeout.count());
    auto& s = at(active_.load());
    try {
      if (!s.client->is_connected()) {
        stop_retrying(s);
        events_->on_disconnected();
        return;
      }
      if (last.topic.empty()) {
        s.client->disconnect(disconnect_timeout_ms_, nullptr, s.on_disc);
        return;
      }
      // Ahead of whatever waits in the buffer, in the slot the window keeps
      // free: the retained offline goes out however much is queued.
      auto msg = mqtt::make_message(last.topic, last.payload, last.qos, last.retain);
      if (last.qos > 0)
        ++outstanding_;
      s.client->publish(msg, nullptr, s.on_last);
    } catch (const mqtt::exception&) {
      events_->on_disconnected();
    }
  }

  int mqtt_version() const override { return active_.load() == MQTTVERSION_5 ? 5 : 4; }

  publish_stats stats() const override {
    publish_stats st;
    {
      std::lock_guard<std::mutex> guard(overflow_mtx_);
      st.waiting = overflow_.size();
    }
    st.window = static_cast<std::uint64_t>(window_.load());
    st.oversize = oversize_.load();
    st.dropped = static_cast<std::uint64_t>(dropped_.load());
    st.ack_resyncs = ack_resyncs_.load();
    return st;
  }

private:
  /// One Paho client and the callbacks that name it. Paho's threads only
  /// ever reach the transport through here.
  struct slot final : mqtt::callback {
    slot(paho_transport& t, int v) : owner(t), version(v) {
      auto copts = mqtt::create_options_builder()
                     .mqtt_version(version)
                     .send_while_disconnected(false)
                     .finalize();
      client = std::make_unique<mqtt::async_client>(owner.opts_.uri, owner.opts_.client_id, copts,
                                                    nullptr);
      client->set_callback(*this);
    }
    bool active() const { return owner.active_.load() == version; }

    void connected(const std::string&) override {
      callback_scope scope;
      owner.on_connected(*this);
    }
    void connection_lost(const std::string& cause) override {
      callback_scope scope;
      if (active())
        owner.own_fd_ = -1; // nothing to drop until the next connect says which socket
      if (!owner.closed_ && active())
        owner.events_->on_connection_lost(cause.empty() ? "connection lost" : cause);
    }
    void message_arrived(mqtt::const_message_ptr m) override {
      callback_scope scope;
      if (!owner.closed_ && active()) {
        owner.arrived_.fetch_add(1, std::memory_order_relaxed);
        owner.events_->on_message(from_paho(*m));
      }
    }
    void delivery_complete(mqtt::delivery_token_ptr) override {
      callback_scope scope;
      if (!active())
        return;
      owner.delivered();
      owner.drain_overflow();
    }

    struct conn_listener : mqtt::iaction_listener {
      slot& s;
      explicit conn_listener(slot& x) : s(x) {}
      void on_failure(const mqtt::token& tok) override {
        callback_scope scope;
        s.owner.connect_failed(s, tok);
      }
      void on_success(const mqtt::token& tok) override {
        callback_scope scope;
        s.owner.connack(s, tok);
      }
    };
    /// The last message is out (or failed): disconnect now.
    struct last_listener : mqtt::iaction_listener {
      slot& s;
      explicit last_listener(slot& x) : s(x) {}
      void on_failure(const mqtt::token&) override {
        callback_scope scope;
        s.owner.last_out(s);
      }
      void on_success(const mqtt::token&) override {
        callback_scope scope;
        s.owner.last_out(s);
      }
    };
    struct disc_listener : mqtt::iaction_listener {
      slot& s;
      explicit disc_listener(slot& x) : s(x) {}
      void on_failure(const mqtt::token&) override {
        callback_scope scope;
        s.owner.disconnected();
      }
      void on_success(const mqtt::token&) override {
        callback_scope scope;
        s.owner.disconnected();
      }
    };

    paho_transport& owner;
    const int version; ///< MQTTVERSION_5 or MQTTVERSION_3_1_1, for good
    conn_listener on_conn{*this};
    last_listener on_last{*this};
    disc_listener on_disc{*this};
    std::unique_ptr<mqtt::async_client> client; ///< last: destroyed before the listeners
  };

  slot& at(int version) { return *slot_[version == MQTTVERSION_5 ? 0 : 1]; }

  /// Paho's automatic reconnect retries a failed connect by itself; a slot
  /// given up stops here (it is not connected, so this only clears Paho's
  /// "should be connected"). Safe from a callback of that slot: Paho checks
  /// the flag right after its failure callback returns.
  static void stop_retrying(slot& s) {
    try {
      s.client->disconnect(0);
    } catch (const mqtt::exception&) {
      // MQTTASYNC_DISCONNECTED, as expected
    }
  }

  // -- Paho's threads: hand over and return, never wait for mtx_ -------------

  void on_connected(slot& s) {
    if (closed_)
      return;
    if (!s.active()) {
      // A retry of a slot given up that was already under way: one client
      // id, one connection.
      stop_retrying(s);
      return;
    }
    if (s.version == MQTTVERSION_5)
      v5_proven_ = true;
    else
      tentative_ = false; // v3.1.1 works here: kept for every reconnect
    // Without a session Paho dropped what was unacknowledged: recount.
    resync_wanted_ = true;
    wake_flusher();
    drain_overflow();
    // lulld's only connection to the broker's port is this one; where a
    // process holds several (tests), the drop of a stalled one is left to
    // the keepalive.
    auto mine = tune_sockets_to(port_of_uri(opts_.uri), opts_.receive_buffer_bytes);
    // The acknowledgement clock starts with this connection, before its
    // socket is named: check_acks reads the socket first, then the clock, so
    // it never judges a new connection by an old one's silence (the
    // descriptor number is often the same).
    last_delivery_ms_ = now_ms();
    own_fd_ = mine.size() == 1 ? mine.front() : -1;
    if (int sink = sink_fd_.exchange(-1); sink >= 0)
      ::close(sink); // the connection it stood in for is closed
    events_->on_connected(s.version == MQTTVERSION_5 ? 5 : 4);
  }

  void connect_failed(slot& s, const mqtt::token& tok) {
    if (closed_ || !s.active())
      return; // a slot given up has nothing more to say
    int rc = tok.get_return_code();
    int reason = static_cast<int>(tok.get_reason_code());
    if (reason == mqtt::MQTTPP_V3_CODE)
      reason = 0;
    // A CONNACK's refusal comes as its (positive) return or reason code;
    // Paho's own errors are negative.
    bool answered = rc > 0 || reason > 0;
    auto message = failure_message(tok);
    if (s.version == MQTTVERSION_5 && opts_.fallback) {
      // A v3.1.1-only broker answers a v5 CONNECT with "unacceptable protocol
      // version" (1) or reason 0x84: v3.1.1 from now on.
      if (rc == 1 || rc == 0x84 || reason == 0x84) {
        tentative_ = false;
        switch_from(s, MQTTVERSION_3_1_1);
        events_->on_connect_failed("broker refused MQTT v5; falling back to v3.1.1", true);
        return;
      }
      // Others (RabbitMQ's MQTT plugin) close the connection on a v5 CONNECT
      // without any CONNACK. A broker that once took v5 from this process is
      // not given up on for that (it is restarting, or behind a proxy whose
      // back end is away).
      if (!answered && message == closed_before_connack && !v5_proven_) {
        tentative_ = true;
        stale_retries_ = 0;
        switch_from(s, MQTTVERSION_3_1_1);
        events_->on_connect_failed("broker closed the MQTT v5 connection without a CONNACK;"
                                   " falling back to v3.1.1",
                                   true);
        return;
      }
    }
    if (s.version == MQTTVERSION_3_1_1 && tentative_ && !answered && message == "socket error"
        && stale_retries_++ < 2) {
      // Paho C finds a client by its socket's number. After the failure
      // callback of the dropped v5 connection returns, its receive thread
      // looks up that closed socket once more; if the v3.1.1 client has
      // just been given the same number, the lookup finds it and fails its
      // connect with "socket error" (measured: 6 of 15 `lull status` runs
      // through a v5-dropping proxy). Not the broker's answer: try again.
      switch_from(s, MQTTVERSION_3_1_1);
      events_->on_connect_failed("MQTT v3.1.1 connect cut short (socket error, a closed socket's"
                                 " number reused); falling back to v3.1.1 again",
                                 true);
      return;
    }
    if (s.version == MQTTVERSION_3_1_1 && tentative_.exchange(false)) {
      if (!answered) {
        // v3.1.1 got no answer either: the broker is away (a proxy in
        // front of it takes connections and closes them), not v3.1.1-only.
        // v5 first again, so a v5 broker coming back gets v5.
        switch_from(s, MQTTVERSION_5);
        events_->on_connect_failed(
          "connect failed over MQTT v3.1.1 too (" + (message.empty() ? "no answer" : message)
          + "): the broker looks down, not v3.1.1-only; MQTT v5 first again",
          false);
        return;
      }
      // A v3.1.1 CONNACK, even a refusal: the broker speaks v3.1.1. Kept.
    }
    std::string why = "connect failed (return code " + std::to_string(rc);
    if (reason != 0)
      why += ", reason " + std::to_string(reason);
    if (!message.empty() && message != "CONNACK return code")
      why += ", " + message;
    why += ")";
    if (s.version == MQTTVERSION_5 && !opts_.fallback && !answered
        && message == closed_before_connack)
      why += "; the broker closed the connection on the MQTT v5 CONNECT without a CONNACK,"
             " as v3.1.1-only brokers do (mqtt_version auto or 3.1.1)";
    if (ssl_opts_)
      why += "; over TLS, if the broker is up: check its certificate against the CA file"
             " (broker.ca_file, --ca-file) and the client certificate and key";
    events_->on_connect_failed(why, false);
  }

  /// The broker's CONNACK: its Receive Maximum sets the window (none: 65535
  /// under v5; v3.1.1 has no flow control), its Maximum Packet Size lowers
  /// the publish bound.
  void connack(slot& s, const mqtt::token& tok) {
    if (closed_ || !s.active())
      return;
    int receive_max = 65535;
    std::size_t packet_max = 0;
    if (s.version == MQTTVERSION_5) {
      try {
        auto rsp = tok.get_connect_response();
        const auto& props = rsp.get_properties();
        if (props.contains(mqtt::property::RECEIVE_MAXIMUM))
          receive_max = mqtt::get<uint16_t>(props, mqtt::property::RECEIVE_MAXIMUM);
        if (props.contains(mqtt::property::MAXIMUM_PACKET_SIZE))
          packet_max = mqtt::get<uint32_t>(props, mqtt::property::MAXIMUM_PACKET_SIZE);
      } catch (const std::exception&) {
        // no response properties: the defaults above
      }
    } else {
      receive_max = 1000;
    }
    window_ = std::max(1, receive_max - 1);
    broker_packet_max_ = packet_max;
    wake_flusher();
  }

  /// A QoS 1 publish was acknowledged: its slot in the window is free.
  void delivered() {
    last_delivery_ms_ = now_ms();
    arrived_at_progress_ = arrived_.load(std::memory_order_relaxed);
    int n = outstanding_.load();
    while (n > 0 && !outstanding_.compare_exchange_weak(n, n - 1)) {
    }
  }

  /// The last message is out (or failed): the disconnect follows at once,
  /// or, when publishes still wait for the window, once they are out, for
  /// at most half the disconnect timeout (Paho's disconnect gets the other
  /// half), so the owner's wait for on_disconnected covers both.
  void last_out(slot& s) {
    if (closed_)
      return;
    if (waiting_.load() == 0 && !handed_over_.load()) {
      disconnect_now(s, disconnect_timeout_ms_.load());
      return;
    }
    {
      std::lock_guard<std::mutex> guard(flush_mtx_);
      closing_ = &s;
      closing_deadline_ms_ = now_ms() + disconnect_timeout_ms_.load() / 2;
    }
    wake_flusher();
  }

  void wake_flusher() {
    std::lock_guard<std::mutex> guard(flush_mtx_);
    flush_cv_.notify_all();
  }

  static std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
  }

  /// Not a Paho thread; never holds flush_mtx_ while calling into Paho.
  void flush_loop() {
    std::unique_lock<std::mutex> lk(flush_mtx_);
    while (!closed_) {
      flush_cv_.wait_for(lk,
                         std::chrono::milliseconds(waiting_.load() > 0 || closing_ ? 20 : 1000),
                         [this] { return closed_.load() || handed_over_.load(); });
      if (closed_)
        break;
      slot* closing = closing_;
      auto deadline = closing_deadline_ms_;
      lk.unlock();
      if (resync_wanted_.exchange(false))
        recount();
      check_acks();
      {
        // Not a Paho thread: it may wait for the lock (see the class comment).
        std::lock_guard<std::mutex> guard(overflow_mtx_);
        drain_wanted_ = false;
        drain_locked();
      }
      if (closing != nullptr
          && ((waiting_.load() == 0 && !handed_over_.load()) || now_ms() >= deadline)) {
        lk.lock();
        closing_ = nullptr;
        lk.unlock();
        disconnect_now(*closing, disconnect_timeout_ms_.load() / 2);
      }
      lk.lock();
    }
  }

  /// Publishes wait for acknowledgements the broker dropped: Mosquitto 2.0
  /// (with Debian's fix for CVE-2023-28366) drops every packet, PUBACKs
  /// included, for a client whose queue already holds max_queued_messages,
  /// which a flood on lulld's subscriptions fills. Paho keeps those
  /// publishes in flight for good and, its window full, sends nothing more:
  /// replies, status, all of it, until the connection ends. So when nothing
  /// was acknowledged for ack_timeout while the broker kept sending (twice
  /// that in silence), the connection is dropped: Paho reconnects within a
  /// second to the same session and resends what was unacknowledged.
  void check_acks() {
    if (outstanding_.load() <= 0 || closing_ != nullptr || opts_.ack_timeout.count() <= 0)
      return;
    int fd = own_fd_.load(); // before the clock (see on_connected)
    if (fd < 0)
      return; // not connected, or the socket is not known
    auto quiet_ms = now_ms() - last_delivery_ms_.load();
    bool traffic = arrived_.load(std::memory_order_relaxed) != arrived_at_progress_.load();
    auto limit = opts_.ack_timeout.count() * (traffic ? 1 : 2);
    if (quiet_ms < limit)
      return;
    auto port = port_of_uri(opts_.uri);
    auto now_there = tune_sockets_to(port, 0);
    // Still the one socket to the broker (not a number reused since).
    if (now_there.size() != 1 || now_there.front() != fd) {
      last_delivery_ms_ = now_ms(); // nothing to drop: look again later
      return;
    }
    ++ack_resyncs_;
    report("mqtt transport: the broker acknowledged none of " + std::to_string(outstanding_.load())
           + " publishes for " + std::to_string(quiet_ms) + " ms"
           + (traffic ? " while it kept sending (its queue for this client was full and it "
                        "dropped the acknowledgements: max_queued_messages)"
                      : "")
           + "; reconnecting to resend them (" + std::to_string(ack_resyncs_.load())
           + " such reconnects so far)");
    own_fd_ = -1;
    last_delivery_ms_ = now_ms();
    end_connection(fd);
  }

  /// Ends the TCP connection on `fd` so that only Paho's receiving thread
  /// sees it end. shutdown(SHUT_RDWR) made Paho's sending thread fail a
  /// write at the moment its receiving thread closed the session, and
  /// Paho C 1.3.12 then freed a queued publish's topic on one thread while
  /// the other read it (AddressSanitizer: heap-use-after-free in Paho's
  /// threads). Instead the descriptor number is given a socket whose reads
  /// end at once and whose writes succeed (a socket pair, its other end
  /// shut for writing and kept as a sink): the broker's connection closes,
  /// Paho reads the end, closes the session on its receiving thread as for
  /// a broker that went away, and reconnects; its sender never sees an
  /// error. The sink is closed at the next connect, after Paho has closed
  /// the descriptor.
  void end_connection(int fd) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) != 0) {
      ::shutdown(fd, SHUT_RDWR);
      return;
    }
    ::shutdown(pair[1], SHUT_WR); // pair[0] reads the end at once
    if (::dup3(pair[0], fd, O_CLOEXEC) < 0) {
      ::close(pair[0]);
      ::close(pair[1]);
      ::shutdown(fd, SHUT_RDWR);
      return;
    }
    ::close(pair[0]);
    int old = sink_fd_.exchange(pair[1]);
    if (old >= 0)
      ::close(old);
  }

  /// Starts the count again after a connect (a session not kept dropped
  /// what was unacknowledged, without a delivery). Publishes a kept session
  /// resends are then in Paho's hands uncounted: Paho holds the few past
  /// the broker's window in its own queue for a while, a delay, never a
  /// stall. (Paho's list of pending tokens is no count to trust here: it
  /// keeps those of publishes a dropped session lost.)
  void recount() {
    std::lock_guard<std::mutex> guard(overflow_mtx_);
    outstanding_ = 0;
    last_delivery_ms_ = now_ms();
  }

  /// Larger than the broker takes: dropped and reported (rate-limited).
  bool too_big(const mqtt_message& m) {
    std::size_t limit = opts_.max_publish_bytes;
    if (auto b = broker_packet_max_.load(); b > 0)
      limit = std::min(limit, b);
    // Fixed header, topic length, packet id and the properties lull sets.
    std::size_t size = m.topic.size() + m.payload.size() + m.content_type.size()
                       + m.response_topic.size() + m.correlation_data.size() + 32;
    if (limit == 0 || size <= limit)
      return false;
    if (oversize_++ % 100 == 0)
      report("mqtt transport: not publishing " + std::to_string(size) + " bytes to "
             + m.topic.substr(0, 200) + ": larger than the " + std::to_string(limit)
             + "-byte limit (" + std::to_string(oversize_.load()) + " such so far)");
    return true;
  }

  /// Gives `s` up for `version`: the owner's next connect() uses it.
  void switch_from(slot& s, int version) {
    next_ = version;
    stop_retrying(s);
  }

  void disconnect_now(slot& s, int timeout_ms) {
    if (closed_)
      return;
    try {
      s.client->disconnect(timeout_ms, nullptr, s.on_disc);
    } catch (const mqtt::exception&) {
      events_->on_disconnected();
    }
  }
  void disconnected() {
    if (!closed_)
      events_->on_disconnected();
  }

  /// Publishes now; false when Paho's in-flight window (or its offline
  /// buffer) is full and the message should wait for a delivery to complete.
  bool try_publish(const mqtt_message& m) {
    bool counted = m.qos > 0;
    if (counted && outstanding_.load() >= window_.load())
      return false; // waits for a delivery
    auto& s = at(active_.load());
    auto msg = to_paho(m, s.version == MQTTVERSION_5);
    if (counted && outstanding_.fetch_add(1) == 0) {
      // The first in flight: its wait for an acknowledgement starts now.
      last_delivery_ms_ = now_ms();
      arrived_at_progress_ = arrived_.load(std::memory_order_relaxed);
    }
    try {
      s.client->publish(msg);
      return true;
    } catch (const mqtt::exception& e) {
      if (counted)
        --outstanding_;
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
    if (overflow_.push(m) && ++dropped_ % 1000 == 1)
      report("mqtt transport: " + std::to_string(overflow_.size())
             + " messages waiting for the broker; dropped the oldest of the topic with the most ("
             + std::to_string(dropped_.load()) + " so far)");
    waiting_ = overflow_.size();
    if (overflow_.size() == 1)
      flush_cv_.notify_all(); // the flusher's watch shortens (no lock: a hint)
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

  /// From a Paho thread that found overflow_mtx_ taken: the message waits
  /// in the hand-over list for the lock's holder, or the flusher, woken now.
  void hand_over(const mqtt_message& m) {
    {
      std::lock_guard<std::mutex> guard(handoff_mtx_);
      handoff_.push_back(m);
      handed_over_ = true;
    }
    drain_wanted_ = true;
    wake_flusher();
  }

  /// Caller holds overflow_mtx_: what Paho's threads handed over joins the
  /// overflow buffer, behind what waits there already.
  void take_handed_over() {
    if (!handed_over_.load())
      return;
    std::deque<mqtt_message> got;
    {
      std::lock_guard<std::mutex> guard(handoff_mtx_);
      got.swap(handoff_);
      handed_over_ = false;
    }
    for (auto& m : got)
      enqueue(m);
  }

  void drain_locked() {
    take_handed_over();
    while (!overflow_.empty() && !closed_ && try_publish(overflow_.front()))
      overflow_.pop_front();
    waiting_ = overflow_.size();
  }

  /// The one publish buffer: messages Paho cannot take now (disconnected, or
  /// its in-flight window full) wait in overflow_, a line per topic served
  /// in turn (fair_queue), the oldest of the longest line dropped first.
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

  void do_connect(slot& s) {
    auto b = mqtt::connect_options_builder();
    b.mqtt_version(s.version)
      .keep_alive_interval(std::chrono::seconds(opts_.keep_alive_sec))
      .connect_timeout(std::chrono::seconds(5))
      .automatic_reconnect(opts_.reconnect_min, opts_.reconnect_max)
      .max_inflight(65535);
    if (s.version == MQTTVERSION_5) {
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
      s.client->connect(b.finalize(), nullptr, s.on_conn);
    } catch (const mqtt::exception& e) {
      events_->on_connect_failed(e.what(), false);
    }
  }

  transport_options opts_;
  std::shared_ptr<transport_events> events_;
  std::unique_ptr<mqtt::ssl_options> ssl_opts_; ///< set for ssl://, mqtts://, wss://
  std::atomic<bool> closed_{false};
  std::atomic<int> active_{MQTTVERSION_5}; ///< the version (slot) in use
  std::atomic<int> next_{MQTTVERSION_5};   ///< the version the next connect() uses
  std::atomic<bool> v5_proven_{false};     ///< a v5 connection succeeded once
  /// v3.1.1 chosen because a v5 CONNECT was dropped, and no v3.1.1 CONNACK
  /// has confirmed it yet.
  std::atomic<bool> tentative_{false};
  std::atomic<int> stale_retries_{0}; ///< v3.1.1 attempts retried in this round (at most 2)
  std::atomic<int> disconnect_timeout_ms_{1000};
  std::atomic<long> dropped_{0};
  std::mutex mtx_; ///< connect, disconnect, destruction (see above)
  mutable std::mutex overflow_mtx_;
  std::atomic<bool> drain_wanted_{false};
  std::mutex handoff_mtx_; ///< handoff_ only; never held across a call into Paho
  std::deque<mqtt_message> handoff_; ///< from Paho's threads that found overflow_mtx_ taken
  std::atomic<bool> handed_over_{false}; ///< handoff_ is not empty
  fair_queue overflow_{static_cast<std::size_t>(std::max(1, opts_.max_buffered))}; ///< waiting for the broker or room in Paho's window
  std::unique_ptr<slot> slot_[2];     ///< [0] v5, [1] v3.1.1; fixed after the constructor

  // Flow control (see the class comment).
  std::atomic<std::uint64_t> arrived_{0};           ///< messages received, all time
  std::atomic<std::uint64_t> arrived_at_progress_{0}; ///< arrived_ at the last acknowledgement
  std::atomic<int> own_fd_{-1};                     ///< this connection's socket, when known
  std::atomic<int> sink_fd_{-1}; ///< end_connection's sink, until the next connect
  std::atomic<std::uint64_t> ack_resyncs_{0};
  std::atomic<int> window_{19};       ///< until a CONNACK says: Mosquitto's default, less one
  std::atomic<int> outstanding_{0};   ///< QoS 1 publishes in Paho's hands, unacknowledged
  std::atomic<std::size_t> waiting_{0}; ///< overflow_.size(), readable without the lock
  std::atomic<std::size_t> broker_packet_max_{0};
  std::atomic<std::uint64_t> oversize_{0};
  std::atomic<std::int64_t> last_delivery_ms_{0};
  std::atomic<bool> resync_wanted_{false};
  std::mutex flush_mtx_;
  std::condition_variable flush_cv_;
  slot* closing_ = nullptr; ///< under flush_mtx_: the last message is out, disconnect pending
  std::int64_t closing_deadline_ms_ = 0;
  std::thread flusher_; ///< last: started after everything it reads
};

} // namespace

namespace {

/// Paho C's own OpenSSL init loads every error string and the OpenSSL config
/// up front: measured here, ~1.5 MB more RSS for a lulld that never uses TLS.
/// OpenSSL >= 1.1 initialises itself on first use, so ssl:// still works.
/// MQTTAsync_global_init also re-initialises Paho's global mutexes, so it
/// runs before main, while no Paho thread can hold them: ThreadSanitizer
/// caught it re-initialising them under a running client when a process
/// (a test) had used Paho before its first transport.
const bool paho_initialised = [] {
  MQTTAsync_init_options inits = MQTTAsync_init_options_initializer;
  inits.do_openssl_init = 0;
  MQTTAsync_global_init(&inits);
  return true;
}();

} // namespace

std::unique_ptr<mqtt_transport> make_paho_transport(transport_options opts,
                                                    std::shared_ptr<transport_events> events) {
  (void)paho_initialised;
  return std::make_unique<paho_transport>(std::move(opts), std::move(events));
}

} // namespace lull
