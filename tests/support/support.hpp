#pragma once
/// What integration tests share: a real Mosquitto on a free loopback port
/// (from broker-config/), an MQTT test client that records what it receives
/// and waits on conditions with deadlines, and a lulld child process.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "messages/mqtt_message.hpp"
#include "src/local_broker.hpp"

// LULL_UNDER_ASAN: 1 in a build under AddressSanitizer (GCC defines
// __SANITIZE_ADDRESS__, clang 14 answers __has_feature). Such a build runs
// lulld several times slower and inflates its RSS with shadow memory.
#if defined(__SANITIZE_ADDRESS__)
#define LULL_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LULL_UNDER_ASAN 1
#endif
#endif
#ifndef LULL_UNDER_ASAN
#define LULL_UNDER_ASAN 0
#endif

namespace mqtt {
class async_client;
}

namespace lull::test {

using namespace std::chrono_literals;

/// Absolute path of a file in the source tree.
std::string source_path(const std::string& rel);
/// Absolute path of a file in the build tree.
std::string binary_path(const std::string& rel);

/// Polls `pred` until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

/// A real Mosquitto started from broker-config/<conf> on a free loopback port.
class broker {
public:
  explicit broker(const std::string& conf = "local.conf", int port = 0);
  int port() const { return impl_->port(); }
  std::string uri() const { return impl_->uri(); }
  local_broker& process() { return *impl_; }

private:
  std::unique_ptr<local_broker> impl_;
};

struct client_options {
  int mqtt_version = 5;
  std::string client_id; ///< empty: a unique one
  std::string username, password;
  mqtt_message will;     ///< topic empty: none
  /// MQTT keep-alive. A client that takes in thousands of messages while
  /// the test thread copies them (slow under the sanitizers) wants more, or
  /// a PINGRESP queued behind them ends its connection.
  std::chrono::seconds keep_alive{5};
};

/// An MQTT client for tests: connects (blocking, in the test thread),
/// subscribes, publishes, and keeps every received message.
class client {
public:
  client(const std::string& uri, client_options opts = {});
  ~client();

  /// True when connected; false with `error()` set when the broker refused.
  bool connected() const { return connected_; }
  const std::string& error() const { return error_; }
  /// Why the connection dropped, when it did.
  std::string lost() {
    std::lock_guard<std::mutex> guard(mtx_);
    return lost_;
  }

  void subscribe(const std::string& filter, int qos = 1);
  void publish(const mqtt_message& msg);
  void publish(const std::string& topic, const std::string& payload, int qos = 1,
               bool retain = false);

  /// The first received message matching `pred`, waiting up to `timeout`.
  std::optional<mqtt_message> wait_for(const std::function<bool(const mqtt_message&)>& pred,
                                       std::chrono::milliseconds timeout = 5s);
  /// The first message on exactly `topic`.
  std::optional<mqtt_message> wait_for_topic(const std::string& topic,
                                             std::chrono::milliseconds timeout = 5s);
  std::vector<mqtt_message> received();
  void clear();

  /// Drops the TCP connection without DISCONNECT so the broker fires the will.
  void abort_connection();
  /// A clean DISCONNECT (no will).
  void disconnect();

private:
  std::unique_ptr<mqtt::async_client> cli_;
  bool connected_ = false;
  std::string error_;
  std::string lost_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<mqtt_message> inbox_;
  int version_;
  int socket_fd_ = -1;
  struct callback;
  std::unique_ptr<callback> cb_;
};

/// A snapshot as `host`'s agent publishes it on stats/host/<host>: a quiet
/// host (1% CPU, `cpus` cores (1: the capacity of a host whose count is unknown), memory and disk to spare).
std::string agent_snapshot(const std::string& host, int cpus = 1);
/// Publishes agent_snapshot(host) retained, so a lulld that subscribes later
/// sees it too: a host becomes known to the lease manager only on its
/// agent's snapshot, never on an assessment alone.
void publish_agent(client& c, const std::string& host, int cpus = 1);

/// lulld as a child process, its stderr captured to a file.
class lulld {
public:
  /// `wrapper` runs before lulld (e.g. setpriv to drop privileges).
  explicit lulld(std::vector<std::string> args, std::vector<std::string> env = {},
                 std::vector<std::string> wrapper = {});
  ~lulld();

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig);
  /// Exit code after waiting up to `timeout`, or nullopt if still running.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  /// Everything lulld wrote to stderr so far.
  std::string log() const;
  /// Waits until the log contains `text`.
  bool wait_log(const std::string& text, std::chrono::milliseconds timeout = 5s);

private:
  pid_t pid_ = -1;
  std::string log_path_;
  std::optional<int> status_;
};

/// A fresh /tmp/lulld-test-data-* directory, removed with everything in it
/// when the test program exits (a later lulld of the same test may reuse it).
std::string test_data_dir();

/// What `lull ARGS...` did: its exit code (-1: did not finish in 60 s),
/// stdout and stderr.
struct cli_result {
  int code = -1;
  std::string out, err;
};

/// Runs the built `lull ARGS...` to completion, stdin from /dev/null.
cli_result lull_cli(std::vector<std::string> args);

/// The state letter of /proc/<pid>/stat (R, S, T for stopped, Z, ...); 0
/// when the process is gone.
char proc_state(int pid);

/// A lulld command line for a broker: --broker, --host-id, a private data dir.
std::vector<std::string> lulld_args(const std::string& broker_uri, const std::string& host_id,
                                    std::vector<std::string> extra = {});

} // namespace lull::test
