#include "tests/support/support.hpp"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <atomic>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <mqtt/async_client.h>

#include "messages/host_snapshot.hpp"
#include "messages/util.hpp"
#include "src/mqtt/paho_message.hpp"
#include "src/mqtt/transport.hpp"
#include "src/process.hpp"

namespace lull::test {

std::string source_path(const std::string& rel) { return std::string(LULL_SOURCE_DIR) + "/" + rel; }
std::string binary_path(const std::string& rel) { return std::string(LULL_BINARY_DIR) + "/" + rel; }

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(10ms);
  }
}

broker::broker(const std::string& conf, int port) {
  std::string err;
  impl_ = local_broker::start(source_path("broker-config/" + conf), port, &err);
  if (!impl_)
    throw std::runtime_error("cannot start mosquitto: " + err);
}

struct client::callback : mqtt::callback {
  client* self;
  explicit callback(client* c) : self(c) {}
  void connection_lost(const std::string& cause) override {
    std::lock_guard<std::mutex> guard(self->mtx_);
    self->lost_ = cause.empty() ? "connection lost" : cause;
  }
  void message_arrived(mqtt::const_message_ptr m) override {
    auto out = from_paho(*m);
    {
      std::lock_guard<std::mutex> guard(self->mtx_);
      self->inbox_.push_back(std::move(out));
    }
    self->cv_.notify_all();
  }
};

namespace {
std::vector<int> sockets_to(int port) {
  std::vector<int> out;
  for (int fd = 3; fd < 4096; ++fd) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0
        && peer.sin_family == AF_INET && ntohs(peer.sin_port) == port)
      out.push_back(fd);
  }
  return out;
}

std::string unique_client_id() {
  static std::atomic<int> n{0};
  return "test-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}
} // namespace

client::client(const std::string& uri, client_options opts) : version_(opts.mqtt_version) {
  int ver = opts.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
  auto copts = mqtt::create_options_builder().mqtt_version(ver).finalize();
  cli_ = std::make_unique<mqtt::async_client>(
    uri, opts.client_id.empty() ? unique_client_id() : opts.client_id, copts, nullptr);
  cb_ = std::make_unique<callback>(this);
  cli_->set_callback(*cb_);
  auto b = mqtt::connect_options_builder();
  b.mqtt_version(ver).connect_timeout(std::chrono::seconds(5)).keep_alive_interval(
    opts.keep_alive);
  if (ver == MQTTVERSION_5)
    b.clean_start(true);
  else
    b.clean_session(true);
  if (!opts.username.empty())
    b.user_name(opts.username).password(opts.password);
  if (!opts.will.topic.empty())
    b.will(mqtt::message(opts.will.topic, opts.will.payload, opts.will.qos, opts.will.retain));
  auto before = sockets_to(port_of_uri(uri));
  try {
    cli_->connect(b.finalize())->wait();
    connected_ = true;
    for (int fd : sockets_to(port_of_uri(uri)))
      if (std::find(before.begin(), before.end(), fd) == before.end())
        socket_fd_ = fd;
  } catch (const mqtt::exception& e) {
    error_ = e.what();
  }
}

client::~client() {
  try {
    if (cli_ && cli_->is_connected())
      cli_->disconnect(0)->wait_for(std::chrono::seconds(2));
  } catch (...) {
  }
}

void client::subscribe(const std::string& filter, int qos) {
  cli_->subscribe(filter, qos)->wait();
}

void client::publish(const mqtt_message& m) {
  cli_->publish(to_paho(m, version_ == 5))->wait_for(std::chrono::seconds(5));
}

void client::publish(const std::string& topic, const std::string& payload, int qos,
                     bool retain) {
  publish(mqtt_message{topic, payload, qos, retain, {}, {}, {}});
}

std::optional<mqtt_message>
client::wait_for(const std::function<bool(const mqtt_message&)>& pred,
                 std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard(mtx_);
  std::optional<mqtt_message> found;
  // Each message is tested once: after the first pass only what arrived
  // since. Testing the whole inbox on every arrival holds the lock that
  // Paho's receiving thread needs for as long as the pass takes, and with
  // thousands of messages kept (and -O0 sanitizers) the client then reads
  // its socket slower than the broker sends: replies queue behind the
  // backlog until the broker drops them.
  std::size_t checked = 0;
  cv_.wait_for(guard, timeout, [&] {
    if (checked > inbox_.size()) // cleared meanwhile
      checked = 0;
    for (; checked < inbox_.size(); ++checked)
      if (pred(inbox_[checked])) {
        found = inbox_[checked];
        return true;
      }
    return false;
  });
  return found;
}

std::optional<mqtt_message> client::wait_for_topic(const std::string& topic,
                                                   std::chrono::milliseconds timeout) {
  return wait_for([&](const mqtt_message& m) { return m.topic == topic; }, timeout);
}

std::vector<mqtt_message> client::received() {
  std::lock_guard<std::mutex> guard(mtx_);
  return inbox_;
}

void client::clear() {
  std::lock_guard<std::mutex> guard(mtx_);
  inbox_.clear();
}

void client::abort_connection() {
  // Shut the socket down under Paho: the broker sees the connection drop
  // without a DISCONNECT and publishes the will.
  if (socket_fd_ >= 0)
    ::shutdown(socket_fd_, SHUT_RDWR);
}

void client::disconnect() {
  try {
    cli_->disconnect()->wait_for(std::chrono::seconds(2));
  } catch (...) {
  }
}

lulld::lulld(std::vector<std::string> args, std::vector<std::string> env,
             std::vector<std::string> wrapper) {
  char tmpl[] = "/tmp/lulld-test-log-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ::close(fd);
  log_path_ = tmpl;
  spawn_options o;
  o.argv = wrapper;
  o.argv.push_back(binary_path("src/lulld"));
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.extra_env = std::move(env);
  o.stderr_path = log_path_;
  o.stdout_path = log_path_;
  std::string err;
  auto pid = spawn(o, &err);
  if (!pid)
    throw std::runtime_error(err);
  pid_ = *pid;
}

lulld::~lulld() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait_exit(2s);
  }
  ::unlink(log_path_.c_str());
}

bool lulld::running() {
  if (status_)
    return false;
  return !wait_exit(0ms).has_value();
}

void lulld::signal(int sig) { ::kill(pid_, sig); }

std::optional<int> lulld::wait_exit(std::chrono::milliseconds timeout) {
  if (status_)
    return exit_code_of(*status_);
  if (auto st = wait_for_exit(pid_, timeout)) {
    status_ = *st;
    return exit_code_of(*st);
  }
  return std::nullopt;
}

std::string lulld::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool lulld::wait_log(const std::string& text, std::chrono::milliseconds timeout) {
  return wait_until([&] { return log().find(text) != std::string::npos; }, timeout);
}

namespace {

/// Removes the test data directories when the test program ends.
struct data_dirs {
  std::mutex mtx;
  std::vector<std::string> dirs;
  ~data_dirs() {
    for (auto& d : dirs) {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  }
};

data_dirs& all_data_dirs() {
  static data_dirs dirs;
  return dirs;
}

} // namespace

std::string test_data_dir() {
  char tmpl[] = "/tmp/lulld-test-data-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  auto& all = all_data_dirs();
  std::lock_guard<std::mutex> guard(all.mtx);
  all.dirs.push_back(dir);
  return dir;
}

char proc_state(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() ? 0 : text[close + 2];
}

std::vector<std::string> lulld_args(const std::string& broker_uri, const std::string& host_id,
                                    std::vector<std::string> extra) {
  std::string dir = test_data_dir();
  std::vector<std::string> args = {"--broker", broker_uri, "--host-id", host_id,
                                   "--data-dir", dir, "--log-level", "debug"};
  // Whoever types on the machine running the tests is not what they test:
  // owner presence is off unless a test turns it on (integration_presence).
  if (std::find(extra.begin(), extra.end(), "--quiet-owner-idle") == extra.end())
    args.insert(args.end(), {"--quiet-owner-idle", "0"});
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

cli_result lull_cli(std::vector<std::string> args) {
  static std::atomic<int> n{0};
  auto base = "/tmp/lull-cli-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
  spawn_options o;
  o.argv = {binary_path("src/lull")};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.stdout_path = base + ".out";
  o.stderr_path = base + ".err";
  o.stdin_path = "/dev/null";
  cli_result r;
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  if (auto pid = spawn(o)) {
    if (auto st = wait_for_exit(*pid, std::chrono::seconds(60)))
      r.code = exit_code_of(*st);
    else
      ::kill(*pid, SIGKILL), wait_for_exit(*pid, std::chrono::seconds(5));
  }
  r.out = slurp(o.stdout_path);
  r.err = slurp(o.stderr_path);
  std::error_code ec;
  std::filesystem::remove(o.stdout_path, ec);
  std::filesystem::remove(o.stderr_path, ec);
  return r;
}

std::string agent_snapshot(const std::string& host, int cpus) {
  host_snapshot s;
  s.host_id = host;
  s.collected_at = unix_seconds_now();
  s.cpu_pct = 1;
  s.cpu_count = cpus;
  s.mem_used_pct = 20;
  s.swap_used_pct = 0;
  s.disks.push_back({"/", 1000, 500, 50.0});
  s.cpu_temp_c = 40;
  return to_json(s).dump();
}

void publish_agent(client& c, const std::string& host, int cpus) {
  c.publish("stats/host/" + host, agent_snapshot(host, cpus), 1, true);
}

} // namespace lull::test
