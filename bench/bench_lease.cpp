// bench_lease: what a lease costs on the wire, against what the broker
// itself costs. Starts its own Mosquitto (broker-config/local.conf) and lulld
// on a free loopback port, then measures in one run:
//
//   1. a bare QoS 0 echo round trip (requester -> broker -> echo client ->
//      broker -> requester), p50/p99;
//   2. lull's grant at QoS 1 (request -> lulld -> reply), p50/p99, each
//      lease released afterwards (not timed);
//   3. grant+release cycles per second with 50 concurrent workers;
//   4. the same three with an MQTT.js generator (bench/mqttjs/lull-load.js),
//      which is not the bottleneck the way Paho C is (~5,000 QoS 1 round
//      trips/s here): bare QoS 1 echo p50, single-worker grant p50, cycles/s,
//      and lulld's CPU per cycle. Skipped when node or the npm package is
//      missing (cd bench/mqttjs && npm install).
//
// Prints figures; never fails for being slow.
//
//   bench_lease [--n 2000] [--workers 50] [--seconds 3] [--procs 5]

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

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
  void on_connect_failed(std::string, bool) override {}
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


struct cycle_result {
  std::uint64_t cycles = 0, failures = 0;
  double elapsed = 0;
  std::size_t workers = 0;
};

/// `count` workers, each on its own connection, loop grant+release from
/// `start_at` (system clock) for `seconds`.
cycle_result run_cycles(const std::string& uri, int first, int count, int seconds,
                        system_clock::time_point start_at) {
  lease_request req;
  req.cost_units = 1;
  req.job_type = "bench";
  // Connect in parallel: Paho C adds a new socket to its poll set only after
  // the current poll (1 s) returns, so serial connects take ~1 s each.
  std::vector<std::unique_ptr<lease_client>> pool(static_cast<std::size_t>(count));
  {
    std::vector<std::thread> connecting;
    for (int i = 0; i < count; ++i)
      connecting.emplace_back([&, i] {
        lease_client_options o;
        o.uri = uri;
        o.worker_id = "bench-w" + std::to_string(first + i);
        auto c = lease_client::connect(o);
        if (auto* p = std::get_if<std::unique_ptr<lease_client>>(&c))
          pool[static_cast<std::size_t>(i)] = std::move(*p);
      });
    for (auto& t : connecting)
      t.join();
    pool.erase(std::remove(pool.begin(), pool.end(), nullptr), pool.end());
  }
  std::this_thread::sleep_until(start_at);
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
  cycle_result out;
  out.elapsed = duration<double>(steady_clock::now() - t_start).count();
  out.cycles = cycles;
  out.failures = failures;
  out.workers = pool.size();
  return out;
}

/// lulld's CPU time so far (user + system), in seconds.
double cpu_seconds_of(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f)
    return 0;
  char buf[1024];
  auto len = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[len] = 0;
  const char* p = std::strrchr(buf, ')');
  unsigned long long ut = 0, st = 0;
  // Fields after the command: state is 3rd, utime the 14th, stime the 15th.
  if (!p || std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st)
              != 2)
    return 0;
  return static_cast<double>(ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// Runs bench/mqttjs/lull-load.js and returns its JSON result (null when it
/// could not run).
nlohmann::json mqttjs(const std::string& args) {
  std::string cmd = "node " LULL_SOURCE_DIR "/bench/mqttjs/lull-load.js " + args + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p)
    return nullptr;
  std::string out;
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, p))
    out.append(buf, n);
  ::pclose(p);
  return nlohmann::json::parse(out, nullptr, false);
}

bool mqttjs_available() {
  return std::system("command -v node >/dev/null 2>&1") == 0
         && ::access(LULL_SOURCE_DIR "/bench/mqttjs/node_modules/mqtt/package.json", R_OK) == 0;
}

double num(const nlohmann::json& j, const char* a, const char* b = nullptr) {
  const auto* v = &j;
  for (const char* k : {a, b}) {
    if (!k)
      break;
    if (!v->is_object() || !v->contains(k))
      return 0;
    v = &(*v)[k];
  }
  return v->is_number() ? v->get<double>() : 0;
}

} // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  // Child mode (the multi-process load generator): --child URI FIRST COUNT SECONDS START_MS
  if (argc == 7 && std::strcmp(argv[1], "--child") == 0) {
    auto r = run_cycles(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]),
                        system_clock::time_point(milliseconds(std::atoll(argv[6]))));
    std::printf("%llu %llu %f %zu\n", static_cast<unsigned long long>(r.cycles),
                static_cast<unsigned long long>(r.failures), r.elapsed, r.workers);
    return 0;
  }
  int n = arg_int(argc, argv, "--n", 2000);
  int workers = arg_int(argc, argv, "--workers", 50);
  int seconds = arg_int(argc, argv, "--seconds", 3);
  int procs = std::max(1, arg_int(argc, argv, "--procs", 5));

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
             "--lease-worker-rate", "1e9", "--lease-worker-burst", "1e9",
             "--lease-capacity-units", "1000000", "--roles", "scheduler"};
  lo.stderr_path = "/tmp/lull-bench-lulld-" + std::to_string(::getpid()) + ".log";
  auto lulld_pid = spawn(lo, &err);
  if (!lulld_pid) {
    std::fprintf(stderr, "bench_lease: cannot start lulld: %s\n", err.c_str());
    return 0;
  }

  // The host is QUIET (the quiet assessor's job in a full lulld; this one runs
  // the scheduler alone, so a busy machine does not deny the bench).
  auto admin = make_bare(uri, "bench-admin");
  quiet_assessment q;
  q.host_id = "bench";
  q.state = quiet_state::quiet;
  q.quiet_score = 99;
  // A host is known once its agent reports: a snapshot first (retained, as
  // the agent's would arrive whenever lulld subscribes).
  admin->t->publish({"stats/host/bench", R"({"v":1,"host_id":"bench","cpu":{"count":4}})", 1,
                     true, {}, {}, {}});
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
  std::string last_answer = "no reply";
  for (int i = 0; i < 100 && w0 && !ready; ++i) {
    auto r = w0->request(req, 1s);
    if (auto* g = std::get_if<lease_grant_reply>(&r); g && g->approved) {
      w0->release(g->lease_id, 1s);
      ready = true;
    } else {
      if (g)
        last_answer = g->reason;
      std::this_thread::sleep_for(100ms); // lulld still starting
    }
  }
  if (!ready) {
    std::fprintf(stderr, "bench_lease: lulld never granted a lease (last answer: %s)\n",
                 last_answer.c_str());
    ::kill(*lulld_pid, SIGTERM);
    wait_for_exit(*lulld_pid, 3s);
    return 0;
  }

  // 1. Bare echo, QoS 0 (the target's baseline) and QoS 1 (for context).
  auto echo = make_bare(uri, "bench-echo");
  echo->on_msg = [&](const mqtt_message& m) {
    echo->t->publish({"bench/echo/rep", m.payload, m.qos, false, {}, {}, {}});
  };
  echo->t->subscribe({"bench/echo/req"}, 1);
  auto req_c = make_bare(uri, "bench-req");
  req_c->t->subscribe({"bench/echo/rep"}, 1);
  std::this_thread::sleep_for(200ms); // let both SUBACKs land before timing
  std::string payload(120, 'x'); // about a lease request's size
  auto echo_run = [&](int qos) {
    std::vector<double> us;
    for (int i = 0; i < n + 100; ++i) {
      std::uint64_t before;
      {
        std::lock_guard<std::mutex> g(req_c->mtx);
        before = req_c->received;
      }
      auto t0 = steady_clock::now();
      req_c->t->publish({"bench/echo/req", payload, qos, false, {}, {}, {}});
      std::unique_lock<std::mutex> g(req_c->mtx);
      if (!req_c->cv.wait_for(g, 2s, [&] { return req_c->received > before; }))
        continue;
      if (i >= 100) // warm-up
        us.push_back(duration<double, std::micro>(steady_clock::now() - t0).count());
    }
    return us;
  };
  auto echo_us = echo_run(0);
  auto echo1_us = echo_run(1);

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

  // 3. Grant+release cycles/s with `workers` concurrent workers: first all in
  //    this process, then spread over `procs` processes (Paho C serves all
  //    clients of a process from one receive and one send thread, which caps
  //    a single load-generating process).
  auto one = run_cycles(uri, 0, workers, seconds, system_clock::now());
  std::uint64_t cycles_multi = 0, failures_multi = 0;
  double rate_multi = 0;
  std::size_t workers_multi = 0;
  {
    auto start_at = system_clock::now() + 3s;
    auto start_ms = duration_cast<milliseconds>(start_at.time_since_epoch()).count();
    std::vector<std::pair<pid_t, std::string>> kids;
    int per = (workers + procs - 1) / procs;
    for (int p = 0, first = 0; p < procs && first < workers; ++p, first += per) {
      spawn_options so;
      so.argv = {argv[0], "--child", uri, std::to_string(1000 + first),
                 std::to_string(std::min(per, workers - first)), std::to_string(seconds),
                 std::to_string(start_ms)};
      so.stdout_path = "/tmp/lull-bench-child-" + std::to_string(::getpid()) + "-"
                       + std::to_string(p);
      if (auto pid = spawn(so))
        kids.emplace_back(*pid, so.stdout_path);
    }
    for (auto& [pid, path] : kids) {
      wait_for_exit(pid, seconds * 1s + 30s);
      if (FILE* f = std::fopen(path.c_str(), "r")) {
        unsigned long long c = 0, fl = 0;
        double el = 0;
        std::size_t w = 0;
        if (std::fscanf(f, "%llu %llu %lf %zu", &c, &fl, &el, &w) == 4 && el > 0) {
          cycles_multi += c;
          failures_multi += fl;
          rate_multi += static_cast<double>(c) / el;
          workers_multi += w;
        }
        std::fclose(f);
      }
      ::unlink(path.c_str());
    }
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;

  // 4. For context: bare QoS 1 echo round trips/s with as many concurrent
  //    requesters (each its own connection, echoed by one client as lulld
  //    answers all workers).
  std::vector<std::shared_ptr<bare_client>> reqs;
  for (int i = 0; i < workers; ++i)
    reqs.push_back(nullptr);
  {
    std::vector<std::thread> connecting;
    for (std::size_t i = 0; i < reqs.size(); ++i)
      connecting.emplace_back([&, i] {
        reqs[i] = make_bare(uri, "bench-er" + std::to_string(i));
        reqs[i]->t->subscribe({"bench/echo2/rep/" + std::to_string(i)}, 1);
      });
    for (auto& t : connecting)
      t.join();
  }
  echo->on_msg = [&](const mqtt_message& m) {
    auto idx = m.topic.substr(m.topic.rfind('/') + 1);
    echo->t->publish({"bench/echo2/rep/" + idx, m.payload, 1, false, {}, {}, {}});
  };
  echo->t->subscribe({"bench/echo2/req/+"}, 1);
  std::this_thread::sleep_for(300ms);
  std::atomic<std::uint64_t> echoes{0};
  stop = false;
  threads.clear();
  auto e_start = steady_clock::now();
  for (std::size_t i = 0; i < reqs.size(); ++i)
    threads.emplace_back([&, i] {
      auto& c = reqs[i];
      while (!stop) {
        std::uint64_t before;
        {
          std::lock_guard<std::mutex> g(c->mtx);
          before = c->received;
        }
        c->t->publish({"bench/echo2/req/" + std::to_string(i), payload, 1, false, {}, {}, {}});
        std::unique_lock<std::mutex> g(c->mtx);
        if (c->cv.wait_for(g, 2s, [&] { return c->received > before; }))
          ++echoes;
      }
    });
  std::this_thread::sleep_for(seconds * 1s);
  stop = true;
  for (auto& t : threads)
    t.join();
  double e_elapsed = duration<double>(steady_clock::now() - e_start).count();

  double e50 = pct(echo_us, 50), e99 = pct(echo_us, 99);
  double g50 = pct(grant_us, 50), g99 = pct(grant_us, 99);
  std::printf("bench_lease: %d round trips each, one broker (mosquitto, TCP_NODELAY)\n", n);
  std::printf("  bare QoS 0 echo        p50 %8.1f us   p99 %8.1f us   (%zu samples)\n", e50, e99,
              echo_us.size());
  std::printf("  bare QoS 1 echo        p50 %8.1f us   p99 %8.1f us   (%zu samples)\n",
              pct(echo1_us, 50), pct(echo1_us, 99), echo1_us.size());
  std::printf("  lull grant at QoS 1    p50 %8.1f us   p99 %8.1f us   (%zu samples)\n", g50, g99,
              grant_us.size());
  std::printf("  ratio grant/echo       p50 %8.2fx      p99 %8.2fx     (target <= 1.5x, <= 3x)\n",
              e50 > 0 ? g50 / e50 : 0, e99 > 0 ? g99 / e99 : 0);
  std::printf("  grant+release cycles   %8.0f /s with %zu workers in 1 process over %.1fs"
              " (%llu failures)\n",
              static_cast<double>(one.cycles) / one.elapsed, one.workers, one.elapsed,
              static_cast<unsigned long long>(one.failures));
  std::printf("  grant+release cycles   %8.0f /s with %zu workers in %d processes"
              " (%llu failures; target >= 5000/s)\n",
              rate_multi, workers_multi, procs, static_cast<unsigned long long>(failures_multi));

  std::printf("  bare QoS 1 echo        %8.0f round trips/s with %zu requesters"
              " (a grant+release cycle is 2 round trips)\n",
              static_cast<double>(echoes.load()) / e_elapsed, reqs.size());

  // 5. The MQTT.js generator: one broker, one lulld, the same run.
  if (!mqttjs_available()) {
    std::printf("  (MQTT.js figures skipped: needs node and `npm install` in bench/mqttjs)\n");
  } else {
    auto broker_url = "mqtt://127.0.0.1:" + std::to_string(port_of_uri(uri));
    auto secs = std::to_string(seconds);
    auto js_echo1 = mqttjs("echo --broker " + broker_url + " --seconds " + secs);
    auto js_grant1 = mqttjs("cycles --broker " + broker_url + " --seconds " + secs
                            + " --workers 1 --conns 1 --warmup 1");
    double je50 = num(js_echo1, "latency", "p50_ms") * 1000;
    double jg50 = num(js_grant1, "grant", "p50_ms") * 1000;
    std::printf("  with MQTT.js (bench/mqttjs/lull-load.js, not Paho), broker-config/local.conf"
                " (Mosquitto's default in-flight window, 20):\n");
    std::printf("  bare QoS 1 echo        p50 %8.1f us   p99 %8.1f us\n", je50,
                num(js_echo1, "latency", "p99_ms") * 1000);
    std::printf("  lull grant, 1 worker   p50 %8.1f us   p99 %8.1f us   ratio p50 %.2fx"
                " (goal <= 1.3x)\n",
                jg50, num(js_grant1, "grant", "p99_ms") * 1000, je50 > 0 ? jg50 / je50 : 0);
    // A burst: every worker asking at once, on 5 connections, with the
    // bare echo at the same concurrency beside it (goal: no grant slower
    // than 200 ms).
    for (int n : {workers, 200}) {
      double cpu0 = cpu_seconds_of(*lulld_pid);
      auto js_cycles = mqttjs("cycles --broker " + broker_url + " --seconds " + secs
                              + " --workers " + std::to_string(n) + " --conns 5 --warmup 0");
      double cpu1 = cpu_seconds_of(*lulld_pid);
      auto js_echo = mqttjs("echo --broker " + broker_url + " --seconds " + secs
                            + " --concurrency " + std::to_string(n));
      double cycles = num(js_cycles, "cycles");
      double ep99 = num(js_echo, "latency", "p99_ms");
      double gp99 = num(js_cycles, "grant", "p99_ms");
      std::printf("  grant+release cycles   %8.0f /s with %d workers on 5 connections;"
                  " lulld CPU %.0f us per cycle\n",
                  num(js_cycles, "per_sec"), n, cycles > 0 ? (cpu1 - cpu0) * 1e6 / cycles : 0);
      std::printf("    grant p50 %.2f ms  p99 %.2f ms  max %.2f ms (goal: max <= 200 ms);"
                  " bare echo p99 %.2f ms at %d in flight, %.0f round trips/s;"
                  " grant/echo p99 %.2fx\n",
                  num(js_cycles, "grant", "p50_ms"), gp99, num(js_cycles, "grant", "max_ms"),
                  ep99, n, num(js_echo, "per_sec"), ep99 > 0 ? gp99 / ep99 : 0);
    }
  }

  w0.reset();
  ::kill(*lulld_pid, SIGTERM);
  wait_for_exit(*lulld_pid, 3s);
  return 0;
}
