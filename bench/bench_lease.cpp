// bench_lease: what a lease costs on the wire, against what the broker
// itself costs. Starts its own Mosquitto (broker-config/local.conf) and lulld
// on a free loopback port, then measures in one run:
//
//   1. a bare QoS 0 echo round trip (requester -> broker -> echo client ->
//      broker -> requester), p50/p99;
//   2. lull's grant at QoS 1 (request -> lulld -> reply), p50/p99, each
//      lease released afterwards (not timed);
//   3. grant+release cycles per second with 50 concurrent workers.
//
// Prints figures; never fails for being slow.
//
//   bench_lease [--n 2000] [--workers 50] [--seconds 3]

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "messages/quiet.hpp"
#include "src/client/lease_client.hpp"
#include "src/local_broker.hpp"
#include "src/process.hpp"

using namespace lull;
using namespace std::chrono;

namespace {

/// A bare MQTT client on lull's transport (TCP_NODELAY, like lull's own).
struct bare_client : transport_events {
  std::mutex mtx;
  std::condition_variable cv;
  bool connected = false;
  std::uint64_t received = 0;
  std::function<void(const mqtt_message&)> on_msg;
  std::unique_ptr<mqtt_transport> t;

  void on_connected(int) override {
    std::lock_guard<std::mutex> g(mtx);
    connected = true;
    cv.notify_all();
  }
  void on_connect_failed(std::string) override {}
  void on_connection_lost(std::string) override {}
  void on_message(mqtt_message m) override {
    if (on_msg)
      on_msg(m);
    std::lock_guard<std::mutex> g(mtx);
    ++received;
    cv.notify_all();
  }
  void on_disconnected() override {}
};

std::shared_ptr<bare_client> make_bare(const std::string& uri, const std::string& id) {
  auto c = std::make_shared<bare_client>();
  transport_options o;
  o.uri = uri;
  o.client_id = id;
  c->t = make_paho_transport(o, c);
  c->t->connect();
  std::unique_lock<std::mutex> g(c->mtx);
  c->cv.wait_for(g, 5s, [&] { return c->connected; });
  return c;
}

double pct(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int arg_int(int argc, char** argv, const char* name, int def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0)
      return std::atoi(argv[i + 1]);
  return def;
}

} // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  int n = arg_int(argc, argv, "--n", 2000);
  int workers = arg_int(argc, argv, "--workers", 50);
  int seconds = arg_int(argc, argv, "--seconds", 3);

  std::string err;
  auto broker = local_broker::start(broker_config_dir("") + "/local.conf", 0, &err);
  if (!broker) {
    std::fprintf(stderr, "bench_lease: cannot start mosquitto: %s\n", err.c_str());
    return 0;
  }
  auto uri = broker->uri();
  // lulld with the backstops opened up: this measures the path, not the policy.
  spawn_options lo;
  lo.argv = {LULL_BINARY_DIR "/src/lulld", "--broker", uri, "--host-id", "bench",
             "--data-dir", "/tmp/lull-bench-" + std::to_string(::getpid()), "--log-level",
             "warn", "--lease-grant-rate", "1e9", "--lease-grant-burst", "1e9",
             "--lease-max-global", "100000", "--lease-max-per-worker", "100000",
             "--lease-capacity-units", "1000000", "--interval", "60s"};
  lo.stderr_path = "/tmp/lull-bench-lulld-" + std::to_string(::getpid()) + ".log";
  auto lulld_pid = spawn(lo, &err);
  if (!lulld_pid) {
    std::fprintf(stderr, "bench_lease: cannot start lulld: %s\n", err.c_str());
    return 0;
  }

  // The host is QUIET (the quiet assessor's job in a full lulld).
  auto admin = make_bare(uri, "bench-admin");
  quiet_assessment q;
  q.host_id = "bench";
  q.state = quiet_state::quiet;
  q.quiet_score = 99;
  admin->t->publish({"stats/host/bench/quiet", to_json(q).dump(), 1, true, {}, {}, {}});

  auto connect_worker = [&](const std::string& id) -> std::unique_ptr<lease_client> {
    lease_client_options o;
    o.uri = uri;
    o.worker_id = id;
    auto c = lease_client::connect(o);
    if (auto* e = std::get_if<std::string>(&c)) {
      std::fprintf(stderr, "bench_lease: %s\n", e->c_str());
      return nullptr;
    }
    return std::move(std::get<std::unique_ptr<lease_client>>(c));
  };
  lease_request req;
  req.cost_units = 1;
  req.job_type = "bench";
  // Wait until lulld answers with a grant.
  auto w0 = connect_worker("bench-0");
  bool ready = false;
  for (int i = 0; i < 100 && w0 && !ready; ++i) {
    auto r = w0->request(req, 1s);
    if (auto* g = std::get_if<lease_grant_reply>(&r); g && g->approved) {
      w0->release(g->lease_id, 1s);
      ready = true;
    } else {
      std::this_thread::sleep_for(100ms); // lulld still starting
    }
  }
  if (!ready) {
    std::fprintf(stderr, "bench_lease: lulld never granted a lease\n");
    ::kill(*lulld_pid, SIGTERM);
    wait_for_exit(*lulld_pid, 3s);
    return 0;
  }

  // 1. Bare QoS 0 echo.
  auto echo = make_bare(uri, "bench-echo");
  echo->on_msg = [&](const mqtt_message& m) {
    echo->t->publish({"bench/echo/rep", m.payload, 0, false, {}, {}, {}});
  };
  echo->t->subscribe({"bench/echo/req"}, 0);
  auto req_c = make_bare(uri, "bench-req");
  req_c->t->subscribe({"bench/echo/rep"}, 0);
  std::this_thread::sleep_for(200ms); // let both SUBACKs land before timing
  std::vector<double> echo_us;
  std::string payload(120, 'x'); // about a lease request's size
  for (int i = 0; i < n + 100; ++i) {
    std::uint64_t before;
    {
      std::lock_guard<std::mutex> g(req_c->mtx);
      before = req_c->received;
    }
    auto t0 = steady_clock::now();
    req_c->t->publish({"bench/echo/req", payload, 0, false, {}, {}, {}});
    std::unique_lock<std::mutex> g(req_c->mtx);
    if (!req_c->cv.wait_for(g, 2s, [&] { return req_c->received > before; }))
      continue;
    if (i >= 100) // warm-up
      echo_us.push_back(duration<double, std::micro>(steady_clock::now() - t0).count());
  }

  // 2. lull's grant at QoS 1.
  std::vector<double> grant_us;
  for (int i = 0; i < n + 100; ++i) {
    auto t0 = steady_clock::now();
    auto r = w0->request(req, 2s);
    auto dt = duration<double, std::micro>(steady_clock::now() - t0).count();
    auto* g = std::get_if<lease_grant_reply>(&r);
    if (!g || !g->approved)
      continue;
    if (i >= 100)
      grant_us.push_back(dt);
    w0->release(g->lease_id, 2s);
  }

  // 3. Grant+release cycles/s with `workers` concurrent workers.
  std::vector<std::unique_ptr<lease_client>> pool;
  for (int i = 0; i < workers; ++i)
    if (auto c = connect_worker("bench-w" + std::to_string(i)))
      pool.push_back(std::move(c));
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> cycles{0}, failures{0};
  std::vector<std::thread> threads;
  auto t_start = steady_clock::now();
  for (auto& c : pool)
    threads.emplace_back([&, cl = c.get()] {
      while (!stop) {
        auto r = cl->request(req, 5s);
        auto* g = std::get_if<lease_grant_reply>(&r);
        if (!g || !g->approved) {
          ++failures;
          continue;
        }
        if (std::holds_alternative<call_error>(cl->release(g->lease_id, 5s)))
          ++failures;
        else
          ++cycles;
      }
    });
  std::this_thread::sleep_for(seconds * 1s);
  stop = true;
  for (auto& t : threads)
    t.join();
  double elapsed = duration<double>(steady_clock::now() - t_start).count();

  double e50 = pct(echo_us, 50), e99 = pct(echo_us, 99);
  double g50 = pct(grant_us, 50), g99 = pct(grant_us, 99);
  std::printf("bench_lease: %d round trips each, one broker (mosquitto, TCP_NODELAY)\n", n);
  std::printf("  bare QoS 0 echo        p50 %8.1f us   p99 %8.1f us   (%zu samples)\n", e50, e99,
              echo_us.size());
  std::printf("  lull grant at QoS 1    p50 %8.1f us   p99 %8.1f us   (%zu samples)\n", g50, g99,
              grant_us.size());
  std::printf("  ratio grant/echo       p50 %8.2fx      p99 %8.2fx     (target <= 1.5x, <= 3x)\n",
              e50 > 0 ? g50 / e50 : 0, e99 > 0 ? g99 / e99 : 0);
  std::printf("  grant+release cycles   %8.0f /s with %zu workers over %.1fs"
              " (%llu failures; target >= 5000/s)\n",
              static_cast<double>(cycles.load()) / elapsed, pool.size(), elapsed,
              static_cast<unsigned long long>(failures.load()));

  pool.clear();
  w0.reset();
  ::kill(*lulld_pid, SIGTERM);
  wait_for_exit(*lulld_pid, 3s);
  return 0;
}
