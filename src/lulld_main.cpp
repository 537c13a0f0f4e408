// lulld: the lull daemon. Wires configuration, the MQTT bridge and the
// collectors together; everything else lives in actors/ and src/.

#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/bus_stats.hpp"
#include "actors/ha_discovery.hpp"
#include "actors/host_collector.hpp"
#include "actors/mqtt_bridge.hpp"
#include "actors/process_collector.hpp"
#include "actors/quiet_assessor.hpp"
#include "actors/worker_registry.hpp"
#include "src/config.hpp"
#include "src/local_broker.hpp"
#include "src/log.hpp"
#include "src/process.hpp"

using namespace lull;

int main(int argc, char** argv) {
  // Signals are taken synchronously by sigwait below; every thread started
  // from here on (CAF's, Paho's) inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto loaded = load_config(argc, argv, lull_environment());
  if (auto* err = std::get_if<config_error>(&loaded)) {
    (err->exit_code == 0 ? std::cout : std::cerr) << err->message << std::endl;
    return err->exit_code;
  }
  auto cfg = std::get<config>(loaded);
  log::init(cfg.log_level);

  std::unique_ptr<local_broker> broker;
  if (cfg.broker.empty()) {
    auto conf = broker_config_dir(cfg.broker_config_dir) + "/local.conf";
    std::string err;
    int port = cfg.local_broker_port;
    if (port != 0 && port_accepts(port)) {
      log::warn("lulld: port {} is taken; starting the local broker on a free port", port);
      port = 0;
    }
    broker = local_broker::start(conf, port, &err);
    if (!broker) {
      log::error("lulld: no broker configured and the local one did not start: {}", err);
      return 1;
    }
    cfg.broker = broker->uri();
    log::info("lulld: no broker configured; started Mosquitto on 127.0.0.1:{} from {}",
              broker->port(), conf);
    log::info("lulld: watch it with: mosquitto_sub -h 127.0.0.1 -p {} -v -t '#'",
              broker->port());
  }

  caf::actor_system_config sys_cfg;
  add_lull_types(sys_cfg);
  // The work-stealing scheduler polls; the sharing one sleeps when idle.
  sys_cfg.set("scheduler.policy", caf::atom("sharing"));
  sys_cfg.set("scheduler.max-threads", 2);
  sys_cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{sys_cfg};

  topic_names topics{cfg.topic_prefix};
  bridge_options bopts;
  bopts.transport.uri = cfg.broker;
  bopts.transport.client_id = cfg.client_id;
  bopts.transport.username = cfg.username;
  bopts.transport.password = cfg.password;
  bopts.topics = topics;
  bopts.instance = cfg.host_id;
  auto bridge = spawn_mqtt_bridge(sys, bopts);

  std::error_code ec;
  std::filesystem::create_directories(cfg.data_dir, ec); // for its mount and size; best effort
  std::vector<caf::actor> actors;
  if (cfg.runs_collectors()) {
    host_collector_options hopts;
    hopts.probe.root = cfg.proc_root;
    hopts.probe.host_id = cfg.host_id;
    hopts.probe.mounts = cfg.mounts;
    hopts.interval = std::chrono::milliseconds(static_cast<long>(cfg.interval_sec * 1000));
    hopts.topics = topics;
    hopts.dirs = cfg.dirs;
    hopts.dir_interval_sec = cfg.dir_interval_sec;
    hopts.jitter = cfg.collector_jitter;
    hopts.timeout_sec = cfg.collector_timeout_sec;
    hopts.window_sec = cfg.window_sec;
    actors.push_back(spawn_host_collector(sys, bridge, hopts));

    process_collector_options popts;
    popts.probe.root = cfg.proc_root;
    popts.probe.host_id = cfg.host_id;
    popts.probe.watches = {"self"};
    for (auto& p : cfg.processes)
      popts.probe.watches.push_back(p);
    popts.interval_sec = cfg.process_interval_sec;
    popts.jitter = cfg.collector_jitter;
    popts.timeout_sec = cfg.collector_timeout_sec;
    popts.topics = topics;
    actors.push_back(spawn_process_collector(sys, bridge, popts));

    worker_registry_options wopts;
    wopts.host_id = cfg.host_id;
    wopts.interval_sec = cfg.worker_interval_sec;
    wopts.stale_after_sec = cfg.worker_stale_after_sec;
    wopts.dir_interval_sec = cfg.dir_interval_sec;
    wopts.topics = topics;
    actors.push_back(spawn_worker_registry(sys, bridge, wopts));

    actors.push_back(spawn_bus_stats(sys, bridge, {cfg.bus_interval_sec, topics}));
  }
  if (cfg.runs_assessor()) {
    quiet_assessor_options qopts;
    auto th = [](const std::array<double, 4>& a) { return input_thresholds{a[0], a[1], a[2], a[3]}; };
    qopts.thresholds.cpu = th(cfg.quiet_cpu);
    qopts.thresholds.mem = th(cfg.quiet_mem);
    qopts.thresholds.disk_free = th(cfg.quiet_disk_free);
    qopts.thresholds.swap = th(cfg.quiet_swap);
    qopts.thresholds.temp = th(cfg.quiet_temp);
    qopts.thresholds.bus_rps = th(cfg.quiet_bus_rps);
    qopts.thresholds.bus_p95 = th(cfg.quiet_bus_p95_ms);
    qopts.thresholds.cooldown_sec = cfg.quiet_cooldown_sec;
    qopts.thresholds.hysteresis = cfg.quiet_hysteresis;
    qopts.thresholds.stale_after_sec = cfg.quiet_stale_after_sec;
    qopts.topics = topics;
    actors.push_back(spawn_quiet_assessor(sys, bridge, qopts));
    if (cfg.ha_enabled) {
      ha_discovery_options haopts;
      haopts.discovery.prefix = cfg.ha_prefix;
      haopts.discovery.own_instance = cfg.host_id;
      haopts.discovery.snapshot_interval_sec = cfg.interval_sec;
      haopts.topics = topics;
      actors.push_back(spawn_ha_discovery(sys, bridge, haopts));
    }
  }

  log::info("lulld: host {} running roles '{}'; snapshots on {} every {}s", cfg.host_id,
            cfg.roles, topics.host_stats(cfg.host_id), cfg.interval_sec);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::info("lulld: {} received; shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  for (auto& a : actors)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  {
    caf::scoped_actor self{sys};
    self->send(bridge, shutdown_atom::value);
    self->wait_for(bridge);
  }
  if (broker)
    broker->stop();
  return 0;
}
