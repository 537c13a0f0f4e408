// lulld: the lull daemon. Wires configuration, the MQTT bridge and the
// collectors together; everything else lives in actors/ and src/.

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/bus_stats.hpp"
#include "actors/ha_discovery.hpp"
#include "actors/host_collector.hpp"
#include "actors/lease_manager.hpp"
#include "actors/mqtt_bridge.hpp"
#include "actors/persister.hpp"
#include "actors/queue_dispatcher.hpp"
#include "actors/process_collector.hpp"
#include "actors/quiet_assessor.hpp"
#include "actors/service_notifier.hpp"
#include "actors/supervisor.hpp"
#include "actors/worker_registry.hpp"
#include "src/config.hpp"
#include "src/history/history_service.hpp"
#include "src/lease/lease_table.hpp"
#include "src/lease/policy.hpp"
#include "src/local_broker.hpp"
#include "src/log.hpp"
#include "src/process.hpp"
#include "src/service/logind.hpp"
#include "src/service/notify.hpp"
#include "src/store/store.hpp"

using namespace lull;

namespace {

/// broker.secure without a configured client id: an MQTT broker lets anyone
/// who knows a client id take over that session (Mosquitto closes the old
/// connection), so lulld's must not be guessable. It is made once from the
/// kernel's CSPRNG and kept in the data directory, so lulld's persistent
/// session survives restarts.
std::string secure_client_id(const std::string& data_dir, const std::string& host_id) {
  auto path = data_dir + "/mqtt-client-id";
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  std::string id;
  if (std::ifstream in(path); in && std::getline(in, id) && id.rfind("lulld-", 0) == 0
                              && id.size() > 6 && id.size() <= 120)
    return id;
  id = "lulld-" + host_id + "-" + random_lease_id().substr(0, 24);
  auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << id << "\n";
    if (!out.flush()) {
      log::warn("lulld: cannot keep the MQTT client id in {}; using {} for this run", path, id);
      return id;
    }
  }
  std::filesystem::permissions(tmp, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                               ec);
  std::filesystem::rename(tmp, path, ec);
  return id;
}

/// An exit message that overtakes the actor's mailbox. CAF queues an
/// ordinary one (anon_send_exit) behind every message already waiting: under
/// a flood of submits with 30,000 jobs queued the dispatcher had tens of
/// thousands ahead of it, each taking milliseconds, and lulld took minutes
/// to exit. Those messages were never acknowledged, so dropping them loses
/// nothing a producer was told is kept.
void exit_now(const caf::actor& a) {
  if (a)
    a->enqueue(nullptr, caf::make_message_id(caf::message_priority::high),
               caf::make_message(caf::exit_msg{a.address(), caf::exit_reason::user_shutdown}),
               nullptr);
}

/// The hard deadline: if lulld has not exited `timeout` after the stop
/// signal (or a second SIGTERM/SIGINT arrives first) this thread logs what
/// is still running and ends the process. Every acknowledged job and lease
/// is already committed (WAL), and an unfinished transaction is rolled back
/// when the database is next opened; samples not yet flushed are lost.
void arm_shutdown_deadline(sigset_t signals, std::chrono::duration<double> timeout,
                           std::shared_ptr<std::atomic<const char*>> step,
                           std::shared_ptr<std::atomic<bool>> died, pid_t own_broker) {
  std::thread([=]() mutable {
    auto until = std::chrono::steady_clock::now() + timeout;
    int sig = -1;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
        until - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        break;
      timespec ts{static_cast<time_t>(left.count() / 1000000000),
                  static_cast<long>(left.count() % 1000000000)};
      sig = sigtimedwait(&signals, nullptr, &ts);
      if (sig >= 0 || errno != EINTR)
        break;
    }
    if (sig > 0)
      log::warn("lulld: second {} while {}; exiting now", sig == SIGINT ? "SIGINT" : "SIGTERM",
                step->load());
    else
      log::warn("lulld: shutdown took longer than {:.1f}s (still {}); exiting now; acknowledged "
                "jobs and leases are in the database, samples not yet written are lost",
                timeout.count(), step->load());
    // The Mosquitto lulld started goes with it, even on a double Ctrl-C:
    // nothing of lulld's is left listening.
    if (own_broker > 0)
      ::kill(own_broker, SIGTERM);
    spdlog::default_logger()->flush();
    std::fflush(nullptr);
    _exit(died->load() ? 1 : 0);
  }).detach();
}

} // namespace

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
  // Checked or printed, the configuration is all: no lock, database, broker
  // or connection.
  if (cfg.action != config::action_kind::run)
    for (auto& w : cfg.warnings)
      std::cerr << "lulld: warning: " << w << std::endl;
  if (cfg.action == config::action_kind::check) {
    std::cout << "lulld: configuration OK ("
              << (cfg.config_file.empty() ? "no file" : cfg.config_file) << ")" << std::endl;
    return 0;
  }
  if (cfg.action == config::action_kind::print) {
    std::cout << print_config(cfg) << std::flush;
    return 0;
  }
  log::init(cfg.log_level);
  for (auto& w : cfg.warnings)
    log::warn("lulld: {}", w);

  // One lulld per data directory: two would hand out the same fencing
  // tokens and the same queued jobs. The lock goes with the process (even
  // on kill -9); the file keeps the pid for the message.
  std::error_code ec;
  std::filesystem::create_directories(cfg.data_dir, ec);
  int lock_fd = ::open((cfg.data_dir + "/lulld.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd >= 0 && ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    auto n = ::pread(lock_fd, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' '))
      pid.pop_back();
    log::error("lulld: another lulld (pid {}) uses {}; stop it or give this one its own "
               "--data-dir", pid, cfg.data_dir);
    return 1;
  }
  if (lock_fd >= 0) {
    auto text = std::to_string(::getpid()) + "\n";
    if (::ftruncate(lock_fd, 0) != 0 || ::pwrite(lock_fd, text.data(), text.size(), 0) < 0)
      log::warn("lulld: cannot write its pid to {}/lulld.lock", cfg.data_dir);
  } else {
    log::warn("lulld: cannot lock {}/lulld.lock ({}); another lulld on the same data "
              "directory would not be noticed", cfg.data_dir, std::strerror(errno));
  }

  // The database first: a newer, corrupt or unwritable file stops lulld
  // before it touches the broker. Only the scheduler role keeps state; an
  // agent that only collects never opens it (SQLite's pages stay off a Pi).
  std::shared_ptr<store> db;
  if (cfg.runs_scheduler()) {
    auto opened = store::open(cfg.db);
    if (auto* err = std::get_if<std::string>(&opened)) {
      log::error("lulld: {}", *err);
      return 1;
    }
    db = std::move(std::get<std::unique_ptr<store>>(opened));
    log::info("lulld: database {} (schema {})", cfg.db, db->schema_version());
  }

  if (cfg.transport.client_id.empty())
    cfg.transport.client_id = secure_client_id(cfg.data_dir, cfg.host_id);

  std::unique_ptr<local_broker> broker;
  int port = cfg.local_broker_port;
  std::string why_not;
  if (cfg.transport.uri.empty() && port != 0 && port_accepts(port)) {
    // A broker already on the port (Debian's mosquitto service listens on
    // 127.0.0.1:1883 out of the box): use it rather than start a second one
    // beside it, so `lull` and every other local client find lulld on the
    // port they try first.
    if (mqtt_broker_accepts(port, 2000, &why_not)) {
      cfg.transport.uri = "tcp://127.0.0.1:" + std::to_string(port);
      log::info("lulld: no broker configured; using the MQTT broker already listening on "
                "127.0.0.1:{} (set broker to choose another)", port);
    } else {
      log::warn("lulld: port {} is taken by something that is not a usable MQTT broker ({}); "
                "starting the local broker on a free port", port, why_not);
      port = 0;
    }
  }
  if (cfg.transport.uri.empty()) {
    auto conf = broker_config_dir(cfg.broker_config_dir) + "/local.conf";
    std::string err;
    broker = local_broker::start(conf, port, &err);
    if (!broker) {
      log::error("lulld: no broker configured and the local one did not start: {}", err);
      return 1;
    }
    cfg.transport.uri = broker->uri();
    log::info("lulld: no broker configured; started Mosquitto on 127.0.0.1:{} from {}",
              broker->port(), conf);
    log::info("lulld: watch it with: mosquitto_sub -h 127.0.0.1 -p {} -v -t '#'",
              broker->port());
    // `lull` on this host reads it when no broker is configured.
    if (!broker->write_uri_file(cfg.data_dir + "/" + broker_uri_file, &err))
      log::warn("lulld: {}; lull on this host will need --broker {}", err, broker->uri());
  }

  caf::actor_system_config sys_cfg;
  add_lull_types(sys_cfg);
  // The work-stealing scheduler polls; the sharing one sleeps when idle.
  sys_cfg.set("scheduler.policy", caf::atom("sharing"));
  sys_cfg.set("scheduler.max-threads", 2);
  sys_cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{sys_cfg};

  topic_names topics{cfg.topic_prefix};
  // Each actor takes the settings of the sections it uses whole. Set here
  // besides: this lulld's identity, topics and roles; the secure-mode keys
  // several services share (broker.secure, broker.admin_user,
  // lease.high_users); and the few values that join keys of different
  // sections, each with why.
  bridge_options bopts;
  bopts.transport = cfg.transport;
  bopts.topics = topics;
  bopts.instance = cfg.host_id;
  bopts.limits = cfg.limits;
  auto bridge = spawn_mqtt_bridge(sys, bopts);

  std::filesystem::create_directories(cfg.data_dir, ec); // for its mount and size; best effort
  std::vector<caf::actor> actors;
  std::vector<supervised> watched{{"mqtt bridge", bridge}};
  auto keep = [&](const char* name, caf::actor a) {
    actors.push_back(a);
    watched.push_back({name, a});
  };
  caf::actor host_collector;
  if (cfg.runs_collectors()) {
    host_collector_options hopts;
    hopts.host_id = cfg.host_id;
    hopts.collect = cfg.collect;
    hopts.topics = topics;
    hopts.leases_in_process = cfg.runs_scheduler();
    if (cfg.collect.logind)
      hopts.logind = service::logind_over_dbus();
    host_collector = spawn_host_collector(sys, bridge, hopts);
    keep("host collector", host_collector);

    process_collector_options popts;
    popts.host_id = cfg.host_id;
    popts.collect = cfg.collect;
    popts.topics = topics;
    keep("process collector", spawn_process_collector(sys, bridge, popts));

    worker_registry_options wopts;
    wopts.host_id = cfg.host_id;
    wopts.collect = cfg.collect;
    wopts.topics = topics;
    keep("worker registry", spawn_worker_registry(sys, bridge, wopts));

    keep("bus stats", spawn_bus_stats(sys, bridge, {cfg.collect, topics}));
  }
  if (cfg.runs_assessor()) {
    quiet_assessor_options qopts;
    qopts.thresholds = cfg.quiet;
    qopts.limits = cfg.limits;
    qopts.topics = topics;
    keep("quiet assessor", spawn_quiet_assessor(sys, bridge, qopts));
  }
  // Home Assistant: the assessor announces a device per host, the scheduler
  // its own device (queue, database, a pause switch per host).
  if (cfg.ha.enabled && (cfg.runs_assessor() || cfg.runs_scheduler())) {
    ha_discovery_options haopts;
    haopts.discovery.ha = cfg.ha;
    haopts.discovery.own_instance = cfg.host_id;
    haopts.discovery.hosts = cfg.runs_assessor();
    haopts.discovery.scheduler = cfg.runs_scheduler();
    // Sensors read from snapshots expire after a few missed ones, and a
    // host's mounts are read again every tenth or so: both follow the host
    // collector's interval.
    haopts.discovery.snapshot_interval_sec = cfg.collect.interval_sec;
    haopts.discovery.owner_idle_sec = cfg.quiet.owner_idle_sec;
    haopts.topics = topics;
    haopts.limits = cfg.limits;
    keep("ha discovery", spawn_ha_discovery(sys, bridge, haopts));
  }

  // One scheduler per fleet: a collectors-only agent on a Pi must not answer
  // lease requests too.
  caf::actor leases, dispatcher, persister;
  if (cfg.runs_scheduler()) {
    lease_manager_options lopts;
    lopts.service.topics = topics;
    lopts.service.security = cfg.security;
    // lease.* completed from the quiet and limits keys it shares.
    lopts.service.policy = effective_lease_policy(cfg.lease, cfg.quiet, cfg.limits);
    // Each actor that writes gets its own SQLite connection (WAL serializes
    // the writers); the file was checked and migrated above.
    auto connection = [&]() -> std::shared_ptr<store> {
      auto c = store::open(cfg.db);
      if (auto* err = std::get_if<std::string>(&c)) {
        log::error("lulld: {}", *err);
        std::exit(1);
      }
      auto conn = std::move(std::get<std::unique_ptr<store>>(c));
      // Checkpoints are the persister's (after each flush): a lease or job
      // commit that ran one waited milliseconds for it. 10,000 WAL pages
      // (40 MB) is the backstop should the persister fall behind.
      conn->set_autocheckpoint(10000);
      return std::shared_ptr<store>(std::move(conn));
    };
    lopts.db = connection();
    lopts.local_agent = host_collector;
    lopts.local_host = cfg.host_id;
    leases = spawn_lease_manager(sys, bridge, lopts);

    queue_dispatcher_options qopts;
    qopts.service.topics = topics;
    // A job costs the units its lease would.
    qopts.service.costs = lopts.service.policy.costs;
    qopts.service.limits = cfg.limits;
    qopts.service.security = cfg.security;
    qopts.queue = cfg.queue;
    dispatcher = spawn_queue_dispatcher(sys, bridge, leases, connection(), qopts);
    persister_options popts;
    popts.timezone = cfg.lease.timezone; // of the learned quiet windows
    popts.security = cfg.security;
    popts.topics = topics;
    popts.host_id = cfg.host_id;
    popts.persist = cfg.persist;
    popts.limits = cfg.limits;
    // The dispatcher purges old finished jobs when it starts; a lulld that
    // runs for weeks has the persister's purges remove them as they age.
    popts.finished_jobs_retention_sec = qopts.finished_retention_sec;
    popts.stale_after_sec = host_stale_after_sec(cfg.collect.interval_sec);
    popts.status_to = leases;
    persister = spawn_persister(sys, bridge, db, popts);
  }

  // Under systemd (Type=notify): READY=1 once the actors answer, STATUS=
  // lines, and watchdog pings while they go on answering.
  auto service_manager = service::settings_from_environment();
  if (service_manager.enabled) {
    service_notifier_options nopts;
    nopts.broker = cfg.transport.uri;
    nopts.watchdog = service_manager.watchdog.count() > 0;
    if (nopts.watchdog)
      nopts.interval = std::max(std::chrono::milliseconds(100),
                                std::chrono::duration_cast<std::chrono::milliseconds>(
                                  service_manager.watchdog / 2));
    nopts.notify = [](const std::string& state) {
      if (!service::notify(state))
        log::warn("lulld: cannot reach the service manager (NOTIFY_SOCKET)");
    };
    keep("service notifier", spawn_service_notifier(sys, bridge, leases, std::move(nopts)));
  }

  for (auto& [name, a] : std::vector<supervised>{
         {"lease manager", leases}, {"queue dispatcher", dispatcher}, {"persister", persister}})
    if (a)
      watched.push_back({name, a});
  // An actor that dies while lulld runs stops lulld with status 1, so that its
  // service manager restarts it whole (state comes back from the database and
  // retained topics); SIGTERM to ourselves ends the sigwait below.
  supervisor_options sopts;
  auto stopping = sopts.stopping;
  auto died = std::make_shared<std::atomic<bool>>(false);
  sopts.on_death = [died](const std::string&) {
    died->store(true);
    kill(getpid(), SIGTERM);
  };
  auto supervisor = spawn_supervisor(sys, watched, sopts);

  log::info("lulld: host {} running roles '{}'; snapshots on {} every {}s", cfg.host_id,
            cfg.roles, topics.host_stats(cfg.host_id), cfg.collect.interval_sec);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  stopping->store(true);
  if (died->load())
    log::error("lulld: an actor died; shutting down with status 1");
  else
    log::info("lulld: {} received; shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  if (service_manager.enabled)
    service::notify(std::string("STOPPING=1\nSTATUS=stopping: ")
                    + (died->load() ? "an actor died" : sig == SIGINT ? "SIGINT" : "SIGTERM"));
  // Bounded: every step below is, and shutdown_timeout ends lulld anyway.
  auto step = std::make_shared<std::atomic<const char*>>("stopping the actors");
  arm_shutdown_deadline(stop_signals, std::chrono::duration<double>(cfg.shutdown_timeout_sec),
                        step, died, broker ? broker->pid() : -1);
  auto t0 = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // The bridge stays up (so the replies of requests being handled go out)
  // until the actors that answer requests are down, for at most 60 % of
  // shutdown_timeout; it then has the rest but 10 % to publish offline
  // and disconnect.
  auto actors_until = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                             std::chrono::duration<double>(cfg.shutdown_timeout_sec * 0.6));
  double actors_sec = 0;
  auto bridge_until = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                             std::chrono::duration<double>(cfg.shutdown_timeout_sec * 0.9));
  {
    caf::scoped_actor self{sys};
    std::map<caf::actor_addr, const char*> waiting;
    auto watch = [&](const caf::actor& a, const char* name) {
      if (!a)
        return;
      self->monitor(a);
      waiting[a.address()] = name;
    };
    // Returns false when `until` passed first; `waiting` then names who is left.
    auto wait_down = [&](std::chrono::steady_clock::time_point until) {
      while (!waiting.empty()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
        if (left.count() <= 0)
          return false;
        bool timed_out = false;
        self->receive(
          [&](const caf::down_msg& dm) {
            if (auto it = waiting.find(dm.source); it != waiting.end()) {
              log::debug("lulld: {} down after {:.3f}s", it->second, since());
              waiting.erase(it);
            }
          },
          caf::after(left) >> [&] { timed_out = true; });
        if (timed_out)
          return false;
      }
      return true;
    };
    auto who = [&] {
      std::string names;
      for (auto& [addr, name] : waiting)
        names += (names.empty() ? "" : ", ") + std::string(name);
      return names;
    };
    exit_now(supervisor);
    for (auto& a : actors)
      exit_now(a);
    exit_now(dispatcher);
    exit_now(leases);
    watch(dispatcher, "queue dispatcher");
    watch(leases, "lease manager");
    if (persister) {
      // Writes the samples it holds in one transaction, then quits.
      self->send<caf::message_priority::high>(persister, shutdown_atom::value);
      watch(persister, "persister");
    }
    if (!wait_down(actors_until))
      log::warn("lulld: {} still busy after {:.2f}s; disconnecting anyway", who(), since());
    actors_sec = since();
    step->store("disconnecting from the broker");
    waiting.clear();
    watch(bridge, "mqtt bridge");
    self->send<caf::message_priority::high>(bridge, shutdown_atom::value);
    if (!wait_down(bridge_until))
      log::warn("lulld: the broker did not confirm the disconnect within {:.2f}s", since());
  }
  step->store("waiting for the actors to finish");
  sys.await_all_actors_done();
  log::debug("lulld: every actor finished after {:.3f}s", since());
  step->store("closing the database");
  db.reset(); // the last connection: SQLite checkpoints the WAL into the file
  log::info("lulld: stopped in {:.2f}s (actors {:.2f}s, then the broker {:.2f}s)", since(),
            actors_sec, since() - actors_sec);
  step->store("stopping the actor system");
  if (broker)
    broker->stop();
  return died->load() ? 1 : 0;
}
