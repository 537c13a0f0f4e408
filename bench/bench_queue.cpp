// The job queue through a real Mosquitto and lulld (with its SQLite file),
// printed as figures (never fails):
//
//  1. submit -> dispatch latency on a quiet host: a worker waits on
//     scheduler/job/next (long poll); a producer submits; the time until the
//     worker holds the job and its lease. p50/p99 over --n jobs.
//  2. jobs per second dispatched (next -> job + lease -> release with an
//     outcome) with --workers workers draining a full queue.
//
// Usage: bench_queue [--n 200] [--workers 10] [--jobs 2000]

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "messages/util.hpp"
#include "src/client/lease_client.hpp"
#include "src/local_broker.hpp"
#include "src/process.hpp"

using namespace lull;
using namespace std::chrono;
using namespace std::chrono_literals;

namespace {

int arg_int(int argc, char** argv, const char* name, int dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0)
      return std::atoi(argv[i + 1]);
  return dflt;
}

std::unique_ptr<lease_client> connect_as(const std::string& uri, const std::string& id) {
  lease_client_options o;
  o.uri = uri;
  o.worker_id = id;
  auto c = lease_client::connect(o);
  if (auto* e = std::get_if<std::string>(&c)) {
    std::fprintf(stderr, "bench_queue: %s\n", e->c_str());
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<lease_client>>(c));
}

double pct(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

nlohmann::json job_body(int i) {
  return {{"job_type", "bench"}, {"cost_units", 1}, {"host_id", "qbench"},
          {"producer", "p" + std::to_string(i % 3)}, {"payload", {{"i", i}}}};
}

} // namespace

int main(int argc, char** argv) {
  int n = arg_int(argc, argv, "--n", 200);
  int workers = arg_int(argc, argv, "--workers", 10);
  int jobs = arg_int(argc, argv, "--jobs", 2000);

  std::string err;
  auto broker = local_broker::start(broker_config_dir("") + "/local.conf", 0, &err);
  if (!broker) {
    std::fprintf(stderr, "bench_queue: cannot start mosquitto: %s\n", err.c_str());
    return 0;
  }
  auto uri = broker->uri();
  auto dir = "/tmp/lull-bench-queue-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  spawn_options lo;
  lo.argv = {LULL_BINARY_DIR "/src/lulld", "--broker", uri, "--host-id", "qb-lulld",
             "--data-dir", dir, "--log-level", "warn", "--lease-grant-rate", "1e9",
             "--lease-grant-burst", "1e9", "--lease-max-global", "100000",
             "--lease-max-per-worker", "100000", "--lease-capacity-units", "1000000",
             "--lease-lock-delay", "0", "--interval", "60s", "--quiet-stale-after", "1h"};
  lo.stderr_path = dir + "/lulld.log";
  auto lulld_pid = spawn(lo, &err);
  if (!lulld_pid) {
    std::fprintf(stderr, "bench_queue: cannot start lulld: %s\n", err.c_str());
    return 0;
  }
  auto finish = [&] {
    ::kill(*lulld_pid, SIGTERM);
    wait_for_exit(*lulld_pid, 3s);
    std::filesystem::remove_all(dir);
  };

  auto producer = connect_as(uri, "producer");
  auto worker = connect_as(uri, "worker-0");
  if (!producer || !worker) {
    finish();
    return 0;
  }
  // The host is QUIET (the quiet assessor's job in a full lulld).
  nlohmann::json q = {{"v", 1}, {"host_id", "qbench"}, {"state", "QUIET"},
                      {"quiet_score", 99}, {"reasons", nlohmann::json::array()},
                      {"assessed_at", "2026-01-01T00:00:00Z"}};
  // Wait until the dispatcher answers.
  bool ready = false;
  for (int i = 0; i < 100 && !ready; ++i) {
    auto r = producer->call(producer->topic("scheduler/job/list"), {{"limit", 1}}, 300ms);
    ready = std::holds_alternative<nlohmann::json>(r);
  }
  if (!ready) {
    std::fprintf(stderr, "bench_queue: lulld's queue never answered\n");
    finish();
    return 0;
  }

  // A call publishes and waits; nothing answers on this topic, so it only
  // publishes the assessment (not retained: this lulld is already running).
  // A host is known once its agent reports: a snapshot first.
  // (A quiet one, so this lulld's assessor agrees with the assessment below.)
  producer->call(producer->topic("stats/host/qbench"),
                 nlohmann::json{{"v", 1}, {"host_id", "qbench"}, {"collected_at", utc_timestamp(unix_seconds_now())},
                  {"cpu", {{"total_pct", 1.0}, {"count", 4}}},
                  {"mem", {{"used_pct", 20.0}, {"available_pct", 80.0}}},
                  {"swap", {{"used_pct", 0.0}}},
                  {"disks", {{{"mount", "/"}, {"free_pct", 50.0}}}}},
                 1ms);
  producer->call(producer->topic("stats/host/qbench/quiet"), q, 1ms);
  // 1. submit -> dispatch latency with a parked worker.
  std::vector<double> lat_ms;
  for (int i = 0; i < n; ++i) {
    std::atomic<bool> got{false};
    steady_clock::time_point t0, t1;
    std::string lease_id;
    std::thread w([&] {
      auto r = worker->call(worker->topic("scheduler/job/next"),
                            {{"types", {"bench"}}, {"host_id", "qbench"}, {"wait_sec", 10}}, 15s);
      t1 = steady_clock::now();
      if (auto* j = std::get_if<nlohmann::json>(&r); j && !(*j)["job"].is_null()) {
        lease_id = (*j)["lease"].value("lease_id", "");
        got = true;
      }
    });
    std::this_thread::sleep_for(5ms); // the worker's request is parked first
    t0 = steady_clock::now();
    producer->call(producer->topic("scheduler/job/submit"), job_body(i), 5s);
    w.join();
    if (got) {
      lat_ms.push_back(duration<double, std::milli>(t1 - t0).count());
      worker->release(lease_id, 5s, "done", {{"outcome", "succeeded"}});
    }
  }
  std::printf("queue: submit -> dispatch latency over %zu jobs: p50 %.2f ms  p99 %.2f ms\n",
              lat_ms.size(), pct(lat_ms, 0.5), pct(lat_ms, 0.99));

  // 2. Throughput with a full queue.
  for (int i = 0; i < jobs; ++i)
    producer->call(producer->topic("scheduler/job/submit"), job_body(i), 5s);
  std::vector<std::unique_ptr<lease_client>> ws;
  for (int i = 0; i < workers; ++i)
    if (auto c = connect_as(uri, "worker-" + std::to_string(i + 1)))
      ws.push_back(std::move(c));
  std::atomic<int> done{0};
  auto t0 = steady_clock::now();
  std::vector<std::thread> threads;
  for (auto& c : ws)
    threads.emplace_back([&, cl = c.get()] {
      while (done.load() < jobs) {
        auto r = cl->call(cl->topic("scheduler/job/next"),
                          {{"types", {"bench"}}, {"host_id", "qbench"}, {"wait_sec", 1}}, 5s);
        auto* j = std::get_if<nlohmann::json>(&r);
        if (!j || (*j)["job"].is_null()) {
          if (done.load() >= jobs)
            break;
          continue;
        }
        cl->release((*j)["lease"].value("lease_id", ""), 5s, "done", {{"outcome", "succeeded"}});
        ++done;
      }
    });
  for (auto& t : threads)
    t.join();
  double secs = duration<double>(steady_clock::now() - t0).count();
  std::printf("queue: %d jobs dispatched and completed by %zu workers in %.2f s: %.0f jobs/s\n",
              done.load(), ws.size(), secs, done.load() / secs);
  finish();
  return 0;
}
