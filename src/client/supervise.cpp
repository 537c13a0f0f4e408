#include "src/client/supervise.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "src/process.hpp"

namespace lull {

using namespace std::chrono;

namespace {

std::string fmt(double sec) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", sec);
  return buf;
}

/// The line "0::<path>" of /proc/self/cgroup: this process's cgroup v2 group.
std::optional<std::string> own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0)
      return line.substr(3);
  return std::nullopt;
}

/// Where the cgroup2 hierarchy is mounted (field 5 of /proc/self/mountinfo).
std::optional<std::string> cgroup2_mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    auto dash = line.find(" - cgroup2 ");
    if (dash == std::string::npos)
      continue;
    std::istringstream fields(line.substr(0, dash));
    std::string f, mount;
    for (int i = 0; i < 5 && fields >> f; ++i)
      if (i == 4)
        mount = f;
    if (!mount.empty())
      return mount;
  }
  return std::nullopt;
}

} // namespace

std::optional<std::uint64_t> process_start_time(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos)
    return std::nullopt;
  std::istringstream rest(text.substr(close + 1));
  std::string f;
  // Fields after the command name: state is the 1st, starttime the 20th.
  for (int i = 0; i < 20; ++i)
    if (!(rest >> f))
      return std::nullopt;
  try {
    return static_cast<std::uint64_t>(std::stoull(f));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::unique_ptr<lease_cgroup> lease_cgroup::make(const std::string& lease_id, std::string* why) {
  auto mount = cgroup2_mount();
  auto own = own_cgroup();
  if (!mount || !own) {
    if (why)
      *why = "no cgroup v2 hierarchy";
    return nullptr;
  }
  auto g = std::unique_ptr<lease_cgroup>(new lease_cgroup());
  auto base = *own == "/" ? std::string() : *own;
  g->rel_ = base + "/" + lease_cgroup_name(lease_id);
  g->dir_ = *mount + g->rel_;
  if (::mkdir(g->dir_.c_str(), 0755) != 0 && errno != EEXIST) {
    if (why)
      *why = "cannot make " + g->dir_ + ": " + std::strerror(errno);
    return nullptr;
  }
  // Moving a process in needs write access to the group's cgroup.procs (and
  // the common ancestor's): try with ourselves' parent's rights later; check
  // that the file is writable now.
  if (::access((g->dir_ + "/cgroup.procs").c_str(), W_OK) != 0) {
    if (why)
      *why = "cannot write " + g->dir_ + "/cgroup.procs: " + std::strerror(errno);
    ::rmdir(g->dir_.c_str());
    return nullptr;
  }
  return g;
}

lease_cgroup::~lease_cgroup() {
  // Processes that outlived the command (escaped daemons) keep the group; it
  // is removed once they are gone, by the next rmdir of whoever looks.
  for (int i = 0; i < 50 && ::rmdir(dir_.c_str()) != 0 && errno == EBUSY; ++i)
    ::usleep(20000);
}

bool lease_cgroup::freeze(bool on) {
  int fd = ::open((dir_ + "/cgroup.freeze").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool ok = ::write(fd, on ? "1" : "0", 1) == 1;
  ::close(fd);
  return ok;
}

int wait_signal(const sigset_t& set, duration<double> timeout) {
  if (timeout.count() < 0)
    timeout = duration<double>(0);
  timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout.count());
  ts.tv_nsec = static_cast<long>((timeout.count() - static_cast<double>(ts.tv_sec)) * 1e9);
  int sig = ::sigtimedwait(&set, nullptr, &ts);
  return sig < 0 ? 0 : sig;
}

sigset_t block_supervise_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1})
    sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

supervise_result run_under_lease(lease_client& client, const lease_grant_reply& lease,
                                 const supervise_options& opts) {
  supervise_result res;
  auto say = [&](const std::string& text) {
    if (opts.say)
      opts.say(text);
  };
  // Notices about this lease (revoke, expiry) interrupt the wait below.
  // Shared with the callback, which may still run on the MQTT thread after
  // this function returned.
  struct lost_state {
    std::mutex mtx;
    std::string reason;
    bool preempted = false;
    bool reconnected = false;
    std::optional<bool> suspend; ///< from a suspended / resumed notice
    std::string suspend_reason;
  };
  auto lost = std::make_shared<lost_state>();
  // Back on the broker after an outage: heartbeat at once rather than at the
  // next interval, so lulld hears from this holder as soon as it can.
  client.on_reconnect([lost] {
    {
      std::lock_guard<std::mutex> guard(lost->mtx);
      lost->reconnected = true;
    }
    ::kill(::getpid(), SIGUSR1);
  });
  client.watch(lease.lease_id, [lost](const lease_notice& n) {
    if (n.state == "REVOKED" || n.state == "EXPIRED") {
      {
        std::lock_guard<std::mutex> guard(lost->mtx);
        lost->reason = n.state + ": " + n.reason;
        lost->preempted = n.preempted;
      }
      ::kill(::getpid(), SIGUSR1);
    } else if (n.suspended) {
      {
        std::lock_guard<std::mutex> guard(lost->mtx);
        lost->suspend = n.suspended;
        lost->suspend_reason = n.reason;
      }
      ::kill(::getpid(), SIGUSR1);
    }
  });

  // The notice subscription is in place once a later request on the same
  // connection is answered, so a heartbeat now also catches a revoke that
  // came before the subscription took effect (else seen only a heartbeat
  // interval later).
  {
    auto hb = client.heartbeat(lease.lease_id, std::chrono::milliseconds(5000));
    if (auto* e = std::get_if<call_error>(&hb); e && !e->timed_out) {
      client.watch(lease.lease_id, nullptr);
      client.on_reconnect(nullptr);
      res.lost = true;
      res.lost_reason = e->error.message;
      res.start_error = "lease lost before the command started: " + e->error.message;
      return res;
    }
  }

  std::unique_ptr<lease_cgroup> group;
  if (opts.use_cgroup) {
    std::string why;
    group = lease_cgroup::make(lease.lease_id, &why);
    if (group)
      res.cgroup = group->path();
  }
  spawn_options so;
  so.argv = opts.cmd;
  so.new_process_group = true;
  so.low_priority = opts.low_priority;
  if (group)
    so.cgroup_procs = group->dir() + "/cgroup.procs";
  // In a terminal's foreground, hand the terminal to the command's group as a
  // shell would, and take it back when the command ends.
  bool tty_handed = opts.stdin_path.empty() && ::isatty(0) && ::tcgetpgrp(0) == ::getpgrp();
  so.foreground_tty = tty_handed;
  so.extra_env = opts.extra_env;
  so.extra_env.push_back("LULL_LEASE_ID=" + lease.lease_id);
  so.extra_env.push_back("LULL_FENCING_TOKEN=" + std::to_string(lease.fencing_token));
  so.stdin_path = opts.stdin_path;
  auto pid = spawn(so, &res.start_error);
  if (!pid) {
    client.watch(lease.lease_id, nullptr);
    client.on_reconnect(nullptr);
    return res;
  }
  res.started = true;
  auto give_tty = [&](pid_t to) {
    if (!tty_handed)
      return;
    auto old = ::signal(SIGTTOU, SIG_IGN);
    ::tcsetpgrp(0, to);
    ::signal(SIGTTOU, old);
  };
  give_tty(*pid);
  // Tell lulld which processes are this lease's, so the host agent counts
  // them as lull's load, not the owner's.
  lease_process proc;
  proc.pid = *pid;
  proc.pid_start = process_start_time(*pid);
  proc.cgroup = res.cgroup;
  client.heartbeat(lease.lease_id, std::chrono::milliseconds(2000), proc);

  auto interval = duration<double>(std::max(0.2, lease.heartbeat_interval_sec));
  auto ttl = duration<double>(lease.ttl_sec);
  // Cut off from lulld, the holder cannot know whether its lease lives on
  // (lulld renews every lease when it is back on the broker). Its units stay
  // reserved for lock_delay after an expiry, so the child may keep running
  // that much past the TTL; it is stopped early enough that even its grace
  // period ends inside that bound.
  auto cut_off_bound =
    ttl + duration<double>(std::max(0.0, lease.lock_delay_sec - std::max(0.0, opts.grace_sec)));
  auto next_hb = steady_clock::now() + duration_cast<steady_clock::duration>(interval);
  auto last_ok = steady_clock::now();
  std::string refused_said;
  std::optional<steady_clock::time_point> kill_at;
  int status = 0;
  // The yield policy: lulld suspends the lease while the host's owner needs
  // it; the work is stopped (its cgroup frozen, else SIGSTOP to its group)
  // and continued when the lease is resumed.
  bool stopped = false;
  auto set_stopped = [&](bool on, const std::string& why) {
    if (on == stopped)
      return;
    stopped = on;
    bool frozen = group && group->freeze(on);
    if (!frozen)
      ::kill(-*pid, on ? SIGSTOP : SIGCONT);
    if (on)
      say("lease suspended (" + why + "); " + opts.cmd.front() + " stopped ("
          + (frozen ? "cgroup frozen" : "SIGSTOP") + ")");
    else
      say("lease resumed; " + opts.cmd.front() + " continues");
  };
  auto stop_child = [&](const std::string& why) {
    if (kill_at)
      return;
    say(why + "; stopping " + opts.cmd.front() + " (SIGTERM, SIGKILL after " + opts.grace_text
        + ")");
    ::kill(-*pid, SIGTERM); // the whole process group
    if (stopped) {
      // A stopped process cannot act on SIGTERM: let it run to end itself.
      stopped = false;
      if (group)
        group->freeze(false);
      ::kill(-*pid, SIGCONT);
    }
    res.killed = true;
    kill_at = steady_clock::now()
              + duration_cast<steady_clock::duration>(duration<double>(opts.grace_sec));
  };
  while (true) {
    auto now = steady_clock::now();
    // No more heartbeats once the lease is lost: wait for CMD or its deadline.
    auto until = res.lost ? (kill_at ? *kill_at : now + seconds(1))
                          : (kill_at && *kill_at < next_hb ? *kill_at : next_hb);
    int sig = wait_signal(opts.signals, until - now);
    if (::waitpid(*pid, &status, WNOHANG) == *pid)
      break;
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      res.interrupted = true;
      res.interrupt_signal = sig;
      stop_child(std::string("interrupted (")
                 + (sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP") + ")");
    } else if (sig == SIGUSR1) {
      std::unique_lock<std::mutex> guard(lost->mtx);
      if (!lost->reason.empty()) {
        res.lost = true;
        res.lost_reason = lost->reason;
        res.preempted = lost->preempted;
        guard.unlock();
        stop_child("lease " + res.lost_reason);
      } else {
        if (lost->reconnected) {
          lost->reconnected = false;
          next_hb = steady_clock::now();
        }
        auto want = std::exchange(lost->suspend, std::nullopt);
        auto why = lost->suspend_reason;
        guard.unlock();
        if (want && !kill_at)
          set_stopped(*want, why);
      }
    }
    now = steady_clock::now();
    if (kill_at && now >= *kill_at) {
      ::kill(-*pid, SIGKILL);
      kill_at = now + hours(24);
    }
    if (!res.lost && now >= next_hb) {
      auto hb = client.heartbeat(
        lease.lease_id, duration_cast<milliseconds>(std::min(interval, duration<double>(5))),
        proc);
      if (auto* e = std::get_if<call_error>(&hb)) {
        // lulld could not store the renewal (a full or locked disk) or asks
        // for a slower pace: like no reply, the lease's fate is not known yet.
        bool transient = e->error.code == lease_error_code::internal_error
                         || e->error.code == lease_error_code::request_throttled;
        if (!e->timed_out && !transient) {
          res.lost = true;
          res.lost_reason = e->error.message;
          stop_child("lease lost: " + e->error.message);
        } else if (steady_clock::now() - last_ok > cut_off_bound) {
          res.lost = true;
          res.lost_reason = "no heartbeat reply for " + fmt(cut_off_bound.count())
                            + "s (TTL " + fmt(ttl.count()) + "s + lock_delay)";
          stop_child("lease lost: " + res.lost_reason);
        }
      } else {
        last_ok = steady_clock::now();
        // A notice may have been missed: the reply says what holds now.
        auto& body = std::get<nlohmann::json>(hb);
        if (auto it = body.find("suspended"); it != body.end() && it->is_boolean() && !kill_at)
          set_stopped(it->get<bool>(), "lulld reports the lease suspended");
        // The host agent would not count the claimed processes as this
        // lease's: the host is judged on its full load. Said once per reason.
        if (auto it = body.find("process"); it != body.end() && it->is_object()) {
          auto reason = it->value("reason", std::string());
          if (!it->value("counted", true) && !reason.empty() && reason != refused_said) {
            refused_said = reason;
            say("the host does not count this lease's processes as lull's: " + reason);
          }
        }
      }
      // Unanswered (the broker or lulld is away): ask again at once, so the
      // renewal lands within a second of lulld being back, not an interval
      // later. The call itself re-sends every second.
      next_hb = steady_clock::now()
                + (hb.index() == 0 ? duration_cast<steady_clock::duration>(interval)
                                   : duration_cast<steady_clock::duration>(milliseconds(200)));
    }
  }
  give_tty(::getpgrp());
  client.watch(lease.lease_id, nullptr);
  client.on_reconnect(nullptr);
  res.exit_code = exit_code_of(status);
  return res;
}

} // namespace lull
