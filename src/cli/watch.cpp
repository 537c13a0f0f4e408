// lull watch: a live terminal view of the hosts (quiet score sparklines),
// leases and queue depths, from the retained scheduler/status and
// stats/host/+ (and its /quiet). Quits on q or Ctrl-C.

#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <iostream>
#include <mutex>
#include <sstream>

#include "src/cli/commands.hpp"

namespace lull::cli {

CLI::App* add_watch(CLI::App& app, watch_opts& o) {
  auto* watch = app.add_subcommand("watch", "live view of hosts, leases and the queue (q quits)");
  watch->add_option("--refresh", o.refresh_sec, "redraw at least this often (seconds)")
    ->check(CLI::Range(0.1, 60.0))->capture_default_str();
  watch->add_option("--history", o.history, "quiet scores per host in the sparkline")
    ->check(CLI::Range(2, 200))->capture_default_str();
  return watch;
}

namespace {

std::vector<std::string> split_topic(const std::string& topic) {
  std::vector<std::string> out(1);
  for (char c : topic)
    if (c == '/')
      out.emplace_back();
    else
      out.back() += c;
  return out;
}

} // namespace

bool watch_view::on_message(const std::string& topic, const nlohmann::json& doc) {
  if (!doc.is_object())
    return false;
  if (topic == "scheduler/status") {
    status_ = doc;
    if (doc.contains("hosts") && doc["hosts"].is_object())
      for (auto& [id, h] : doc["hosts"].items()) {
        auto& mine = hosts_[id];
        if (mine.state.empty() && h.contains("state"))
          mine.state = str(h["state"]);
        if (mine.score.is_null() && h.contains("quiet_score"))
          mine.score = h["quiet_score"];
      }
    return true;
  }
  auto levels = split_topic(topic);
  if (levels.size() < 3 || levels[0] != "stats" || levels[1] != "host" || levels[2].empty())
    return false;
  auto& h = hosts_[levels[2]];
  if (levels.size() == 4 && levels[3] == "quiet") {
    h.state = str(doc.value("state", nlohmann::json()));
    h.score = doc.value("quiet_score", nlohmann::json());
    if (h.score.is_number()) {
      h.scores.push_back(h.score.get<double>());
      if (h.scores.size() > static_cast<std::size_t>(history_))
        h.scores.erase(h.scores.begin());
    }
    return true;
  }
  if (levels.size() == 3) {
    auto cpu = doc.value("cpu", nlohmann::json());
    h.cpu = cpu.is_object() ? cpu.value("total_pct", nlohmann::json()) : nlohmann::json();
    return true;
  }
  return false;
}

std::string watch_view::render(const std::string& header) const {
  std::ostringstream out;
  out << header << "\n\n";
  out << pad("HOST", 16) << pad("STATE", 8) << pad("SCORE", 7) << pad("CPU%", 7)
      << pad("UNITS", 10) << "QUIET SCORE\n";
  auto status_hosts = status_.is_object() ? status_.value("hosts", nlohmann::json::object())
                                          : nlohmann::json::object();
  for (auto& [id, h] : hosts_) {
    auto sh = status_hosts.value(id, nlohmann::json::object());
    out << pad(id, 16) << pad(h.state.empty() ? "-" : h.state, 8) << pad(num(h.score), 7)
        << pad(num(h.cpu, 1), 7)
        << pad(num(sh.value("used_units", nlohmann::json())) + "/"
                 + num(sh.value("capacity_units", nlohmann::json())),
               10)
        << sparkline(nlohmann::json(h.scores), 0, 100) << "\n";
  }
  if (hosts_.empty())
    out << "(no host has reported yet)\n";
  if (!status_.is_object()) {
    out << "\n(waiting for scheduler/status: is lulld running?)\n";
    return out.str();
  }
  out << "\n"
      << pad("LEASE", 34) << pad("WORKER", 16) << pad("HOST", 12) << pad("UNITS", 6)
      << pad("PRIO", 7) << pad("TTL", 6) << "JOB\n";
  auto active = status_.value("active", nlohmann::json::array());
  if (active.empty())
    out << "(no active leases)\n";
  for (auto& l : active)
    out << pad(str(l["lease_id"]), 34) << pad(str(l["worker_id"]), 16)
        << pad(str(l["host_id"]), 12) << pad(num(l["cost_units"]), 6)
        << pad(str(l["priority"]), 7) << pad(num(l["ttl_remaining_sec"]) + "s", 6)
        << str(l["job_type"]) << "\n";
  auto queue = status_.value("queue", nlohmann::json::object());
  out << "\nQUEUE  " << num(queue.value("queued", nlohmann::json())) << " queued:";
  auto depths = queue.value("depths", nlohmann::json::object());
  for (auto& [prio, n] : depths.items())
    out << " " << prio << "=" << num(n);
  out << "\n";
  return out.str();
}

namespace {

volatile sig_atomic_t watch_stop = 0;

void on_stop_signal(int) { watch_stop = 1; }

std::string utc_now() {
  auto t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%H:%M:%S UTC", &tm);
  return buf;
}

} // namespace

int do_watch(const global_opts& g, const watch_opts& o) {
  // What the client's callback touches is declared first, so it outlives
  // the client: a message arriving while do_watch returns finds it whole.
  std::mutex mtx;
  watch_view view(o.history);
  bool dirty = true;
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  client->follow({"scheduler/status", "stats/host/+", "stats/host/+/quiet"},
                 [&](const std::string& topic, const nlohmann::json& doc) {
                   std::lock_guard<std::mutex> guard(mtx);
                   if (view.on_message(topic, doc))
                     dirty = true;
                 });

  // Keys without Enter and without echo; Ctrl-C still raises SIGINT.
  termios saved{};
  bool tty = ::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (tty) {
    termios raw = saved;
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
  }
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal; // no SA_RESTART: poll returns at once
  ::sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  std::cout << "\x1b[?1049h\x1b[?25l" << std::flush; // alternate screen, no cursor
  auto header = "lull watch  " + g.broker + "  (q quits)";
  auto last_draw = std::chrono::steady_clock::now() - std::chrono::hours(1);
  auto refresh = std::chrono::duration<double>(o.refresh_sec);
  int in_fd = STDIN_FILENO;
  while (!watch_stop) {
    pollfd pfd{in_fd, POLLIN, 0};
    if (::poll(&pfd, in_fd >= 0 ? 1 : 0, 100) > 0 && (pfd.revents & (POLLIN | POLLHUP))) {
      char buf[64];
      auto n = ::read(in_fd, buf, sizeof buf);
      if (n <= 0 && !tty)
        in_fd = -1; // end of a non-terminal input: only signals stop us now
      for (ssize_t i = 0; i < n; ++i)
        if (buf[i] == 'q' || buf[i] == 'Q')
          watch_stop = 1;
    }
    auto now = std::chrono::steady_clock::now();
    std::string frame;
    {
      std::lock_guard<std::mutex> guard(mtx);
      if (dirty || now - last_draw >= refresh) {
        frame = view.render(header + "  " + utc_now());
        dirty = false;
      }
    }
    if (!frame.empty()) {
      std::cout << "\x1b[H\x1b[2J" << frame << std::flush;
      last_draw = now;
    }
  }
  std::cout << "\x1b[?25h\x1b[?1049l" << std::flush;
  if (tty)
    ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  watch_stop = 0;
  return ex_ok;
}

} // namespace lull::cli
