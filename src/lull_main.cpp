// lull: the worker's command line.
//
//   lull run [--cost N|--class C] [--priority P] [--host H] [--wait D] -- CMD ARGS...
//   lull status
//   lull revoke LEASE_ID [--reason TEXT]
//   lull submit --type T [--payload JSON] ...   lull jobs   lull cancel JOB_ID
//   lull work --type T -- CMD ARGS...            lull history --group quiet --range 1h

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>

#include <CLI/CLI.hpp>

#include "src/client/lease_client.hpp"
#include "src/client/supervise.hpp"
#include "src/config.hpp"
#include "src/process.hpp"

using namespace lull;
using namespace std::chrono;

namespace {

// sysexits.h
constexpr int ex_usage = 64;
constexpr int ex_unavailable = 69;
constexpr int ex_tempfail = 75;

std::string default_worker_id() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0')
    return "worker";
  std::string out;
  for (char* p = buf; *p != '\0' && *p != '.' && out.size() < 64; ++p)
    out += (std::isalnum(static_cast<unsigned char>(*p)) || *p == '-' || *p == '_') ? *p : '_';
  return out.empty() ? "worker" : out;
}

std::string fmt(double sec) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", sec);
  return buf;
}


struct global_opts {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string worker = default_worker_id();
  std::string user, password, prefix;
  bool secure = false;
  double timeout_sec = 10;
};

std::variant<std::unique_ptr<lease_client>, std::string> connect(const global_opts& g,
                                                                 bool announce) {
  lease_client_options o;
  o.uri = g.broker;
  o.worker_id = g.secure && !g.user.empty() ? g.user : g.worker;
  o.username = g.user;
  o.password = g.password;
  o.secure = g.secure;
  o.topic_prefix = g.prefix;
  o.announce = announce;
  o.connect_timeout = milliseconds(static_cast<long>(g.timeout_sec * 1000));
  return lease_client::connect(o);
}

std::string upper_ascii(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

struct run_opts {
  int cost = 0;
  std::string cls;
  std::string priority = "NORMAL";
  std::string host;
  std::string wait = "0";
  std::string job_type;
  std::string ttl;
  std::string grace = "10s";
  bool quiet = false;
  bool keep_priority = false;
  bool no_cgroup = false;
  std::vector<std::string> cmd;
};

int do_run(const global_opts& g, const run_opts& r) {
  auto wait_sec = parse_duration_sec(r.wait);
  auto grace_sec = parse_duration_sec(r.grace);
  if (!wait_sec || !grace_sec) {
    std::cerr << "lull: --wait and --grace take a duration such as 30s, 5m or 1h\n";
    return ex_usage;
  }
  lease_request req;
  if (r.cost > 0)
    req.cost_units = r.cost;
  if (!r.cls.empty()) {
    req.cost_class_ = parse_cost_class(r.cls);
    if (!req.cost_class_) {
      std::cerr << "lull: --class takes LOW, NORMAL or HIGH\n";
      return ex_usage;
    }
  }
  auto pr = parse_priority(r.priority);
  if (!pr) {
    std::cerr << "lull: --priority takes LOW, NORMAL or HIGH\n";
    return ex_usage;
  }
  req.priority = *pr;
  req.host_id = r.host;
  req.job_type = !r.job_type.empty() ? r.job_type : r.cmd.front().substr(r.cmd.front().rfind('/') + 1);
  if (!r.ttl.empty()) {
    auto t = parse_duration_sec(r.ttl);
    if (!t) {
      std::cerr << "lull: --ttl takes a duration such as 30s\n";
      return ex_usage;
    }
    req.ttl_sec = *t;
  }

  // Signals are taken synchronously; the child gets a clean mask (spawn).
  auto set = block_supervise_signals();

  auto connected = connect(g, false);
  if (auto* err = std::get_if<std::string>(&connected)) {
    std::cerr << "lull: " << *err << "\n";
    return ex_unavailable;
  }
  auto& client = *std::get<std::unique_ptr<lease_client>>(connected);
  auto call_timeout = milliseconds(static_cast<long>(g.timeout_sec * 1000));
  auto say = [&](const std::string& text) {
    if (!r.quiet)
      std::cerr << "lull: " << text << std::endl;
  };

  // 1. Wait for a grant.
  auto started = steady_clock::now();
  lease_grant_reply lease;
  while (true) {
    auto reply = client.request(req, call_timeout);
    if (auto* e = std::get_if<call_error>(&reply)) {
      std::cerr << "lull: lease request failed: " << to_string(e->error.code) << ": "
                << e->error.message << "\n";
      return e->timed_out ? ex_unavailable : ex_usage;
    }
    lease = std::get<lease_grant_reply>(reply);
    if (lease.approved)
      break;
    double waited = duration<double>(steady_clock::now() - started).count();
    double retry = std::max(0.5, lease.retry_after_sec);
    if (*wait_sec > 0 && waited + retry > *wait_sec) {
      std::cerr << "lull: no lease within " << r.wait << ": " << lease.reason << "\n";
      return ex_tempfail;
    }
    say("waiting " + fmt(retry) + "s: " + lease.reason);
    int sig = wait_signal(set, duration<double>(retry));
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      say("interrupted while waiting for a lease");
      return 128 + sig;
    }
  }
  say("lease " + lease.lease_id + " on " + lease.host_id + " (fencing token "
      + std::to_string(lease.fencing_token) + "): " + lease.reason);

  // 2. Run the command, heartbeating until it exits.
  supervise_options so;
  so.cmd = r.cmd;
  so.low_priority = !r.keep_priority && upper_ascii(r.priority) != "HIGH";
  so.use_cgroup = !r.no_cgroup;
  so.grace_sec = *grace_sec;
  so.grace_text = r.grace;
  so.signals = set;
  so.say = say;
  auto res = run_under_lease(client, lease, so);
  if (!res.started && res.lost) {
    std::cerr << "lull: " << res.start_error << "\n";
    client.release(lease.lease_id, call_timeout, "lost before the command started");
    return ex_tempfail;
  }
  if (!res.started) {
    std::cerr << "lull: cannot run " << r.cmd.front() << ": " << res.start_error << "\n";
    client.release(lease.lease_id, call_timeout, "command did not start");
    return 127;
  }

  // 3. Release (also after a revoke: it tells lulld the work has stopped).
  auto rel = client.release(lease.lease_id, call_timeout,
                            res.interrupted ? "interrupted"
                            : res.lost      ? "stopped after losing the lease"
                                            : "command exited");
  if (auto* e = std::get_if<call_error>(&rel))
    say("release failed: " + e->error.message);
  return res.exit_code;
}

std::string pad(std::string s, std::size_t w) {
  if (s.size() < w)
    s.append(w - s.size(), ' ');
  return s;
}

std::string num(const nlohmann::json& j, int decimals = 0) {
  if (!j.is_number())
    return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, j.get<double>());
  return buf;
}

std::string str(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : "-"; }

int do_status(const global_opts& g, bool as_json) {
  auto connected = connect(g, false);
  if (auto* err = std::get_if<std::string>(&connected)) {
    std::cerr << "lull: " << *err << "\n";
    return ex_unavailable;
  }
  auto st = std::get<std::unique_ptr<lease_client>>(connected)->status(
    milliseconds(static_cast<long>(g.timeout_sec * 1000)));
  if (!st) {
    std::cerr << "lull: no scheduler/status on " << g.broker << " (is lulld running?)\n";
    return ex_unavailable;
  }
  if (as_json) {
    std::cout << st->dump(2) << "\n";
    return 0;
  }
  auto& s = *st;
  std::cout << pad("HOST", 16) << pad("STATE", 8) << pad("SCORE", 7) << pad("UNITS", 10)
            << pad("LEASES", 8) << "COOLDOWN\n";
  for (auto& [id, h] : s["hosts"].items())
    std::cout << pad(id, 16) << pad(str(h["state"]), 8) << pad(num(h["quiet_score"]), 7)
              << pad(num(h["used_units"]) + "/" + num(h["capacity_units"]), 10)
              << pad(num(h["active_leases"]), 8)
              << (h.contains("cooldown_remaining_sec") ? num(h["cooldown_remaining_sec"]) + "s"
                                                       : std::string("-"))
              << "\n";
  std::cout << "\n"
            << pad("LEASE", 34) << pad("WORKER", 16) << pad("HOST", 12) << pad("UNITS", 6)
            << pad("PRIO", 7) << pad("TTL", 6) << "JOB\n";
  if (s["active"].empty())
    std::cout << "(no active leases)\n";
  for (auto& l : s["active"])
    std::cout << pad(str(l["lease_id"]), 34) << pad(str(l["worker_id"]), 16)
              << pad(str(l["host_id"]), 12) << pad(num(l["cost_units"]), 6)
              << pad(str(l["priority"]), 7) << pad(num(l["ttl_remaining_sec"]) + "s", 6)
              << str(l["job_type"]) << "\n";
  if (!s["workers"].empty()) {
    std::cout << "\n" << pad("WORKER", 16) << pad("GRANTS", 8) << pad("DENIES", 8) << "LAST\n";
    for (auto& [id, w] : s["workers"].items())
      std::cout << pad(id, 16) << pad(num(w["grants"]), 8) << pad(num(w["denies"]), 8)
                << str(w["last_decision"]) << ": " << str(w["last_reason"]) << "\n";
  }
  std::cout << "\n(as of " << str(s["updated_at"]) << ")\n";
  return 0;
}

int do_revoke(const global_opts& g, const std::string& id, const std::string& reason) {
  auto connected = connect(g, false);
  if (auto* err = std::get_if<std::string>(&connected)) {
    std::cerr << "lull: " << *err << "\n";
    return ex_unavailable;
  }
  auto r = std::get<std::unique_ptr<lease_client>>(connected)->revoke(
    id, reason, milliseconds(static_cast<long>(g.timeout_sec * 1000)));
  if (auto* e = std::get_if<call_error>(&r)) {
    std::cerr << "lull: revoke failed: " << to_string(e->error.code) << ": " << e->error.message
              << "\n";
    return e->timed_out ? ex_unavailable : 1;
  }
  std::cout << "lease " << id << " revoked: " << std::get<lease_notice>(r).reason << "\n";
  return 0;
}

// -- the job queue and history -------------------------------------------------

milliseconds call_timeout_of(const global_opts& g) {
  return milliseconds(static_cast<long>(g.timeout_sec * 1000));
}

/// Connects or prints why not (nullptr).
std::unique_ptr<lease_client> connect_or_say(const global_opts& g, bool announce = false) {
  auto connected = connect(g, announce);
  if (auto* err = std::get_if<std::string>(&connected)) {
    std::cerr << "lull: " << *err << "\n";
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<lease_client>>(connected));
}

int report_error(const std::string& what, const call_error& e) {
  std::cerr << "lull: " << what << " failed: " << to_string(e.error.code) << ": "
            << e.error.message << "\n";
  return e.timed_out ? ex_unavailable : 1;
}

struct submit_opts {
  std::string type, payload, cls, priority = "normal", host, key, deadline, producer;
  int cost = 0, max_attempts = 3;
  bool as_json = false;
};

int do_submit(const global_opts& g, const submit_opts& o) {
  nlohmann::json body = {{"job_type", o.type}, {"priority", o.priority},
                         {"max_attempts", o.max_attempts}};
  if (!o.payload.empty()) {
    std::string text = o.payload;
    if (text == "-") {
      text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else if (text[0] == '@') {
      std::ifstream in(text.substr(1));
      if (!in) {
        std::cerr << "lull: cannot read " << text.substr(1) << "\n";
        return ex_usage;
      }
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    auto doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
      std::cerr << "lull: --payload is not JSON\n";
      return ex_usage;
    }
    body["payload"] = std::move(doc);
  }
  if (o.cost > 0)
    body["cost_units"] = o.cost;
  if (!o.cls.empty())
    body["cost_class"] = o.cls;
  if (!o.host.empty())
    body["host_id"] = o.host;
  if (!o.key.empty())
    body["idempotency_key"] = o.key;
  body["producer"] = !o.producer.empty() ? o.producer : g.worker;
  if (!o.deadline.empty()) {
    auto d = parse_duration_sec(o.deadline);
    if (!d) {
      std::cerr << "lull: --deadline takes a duration such as 10m or 2h\n";
      return ex_usage;
    }
    body["deadline_sec"] = *d;
  }
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  auto r = client->call(client->topic("scheduler/job/submit"), body, call_timeout_of(g));
  if (auto* e = std::get_if<call_error>(&r))
    return report_error("submit", *e);
  auto& j = std::get<nlohmann::json>(r);
  if (o.as_json)
    std::cout << j["job"].dump(2) << "\n";
  else
    std::cout << str(j["job_id"]) << (j.value("created", true) ? "" : " (already submitted)")
              << "\n";
  return 0;
}

struct jobs_opts {
  std::string state, type, worker;
  int limit = 100;
  bool as_json = false;
};

int do_jobs(const global_opts& g, const jobs_opts& o) {
  nlohmann::json body = {{"limit", o.limit}};
  if (!o.state.empty())
    body["state"] = o.state;
  if (!o.type.empty())
    body["job_type"] = o.type;
  if (!o.worker.empty())
    body["worker"] = o.worker;
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  auto r = client->call(client->topic("scheduler/job/list"), body, call_timeout_of(g));
  if (auto* e = std::get_if<call_error>(&r))
    return report_error("listing jobs", *e);
  auto& j = std::get<nlohmann::json>(r);
  if (o.as_json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << pad("JOB", 20) << pad("TYPE", 14) << pad("STATE", 10) << pad("PRIO", 11)
            << pad("UNITS", 6) << pad("TRY", 5) << pad("WORKER", 14) << "UPDATED\n";
  for (auto& job : j["jobs"])
    std::cout << pad(str(job["job_id"]), 20) << pad(str(job["job_type"]), 14)
              << pad(str(job["state"]), 10) << pad(str(job["priority"]), 11)
              << pad(num(job["cost_units"]), 6)
              << pad(num(job["attempts"]) + "/" + num(job["max_attempts"]), 5)
              << pad(str(job["worker_id"]), 14) << str(job["updated_at"]) << "\n";
  if (j["jobs"].empty())
    std::cout << "(no jobs)\n";
  std::cout << "\nqueued: ";
  for (auto& [prio, n] : j["depths"].items())
    std::cout << prio << "=" << n.get<int>() << " ";
  std::cout << "\n";
  return 0;
}

int do_cancel(const global_opts& g, const std::string& id, const std::string& reason) {
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  nlohmann::json body = nlohmann::json::object();
  if (!reason.empty())
    body["reason"] = reason;
  auto r = client->call(client->topic("scheduler/job/" + id + "/cancel"), body,
                        call_timeout_of(g));
  if (auto* e = std::get_if<call_error>(&r))
    return report_error("cancel", *e);
  std::cout << "job " << id << " cancelled\n";
  return 0;
}

struct work_opts {
  std::vector<std::string> types;
  std::string host;
  std::string poll = "20s";
  std::string grace = "10s";
  int max_jobs = 0;
  bool quiet = false;
  bool keep_priority = false;
  bool no_cgroup = false;
  std::vector<std::string> cmd;
};

int do_work(const global_opts& g, const work_opts& o) {
  auto poll = parse_duration_sec(o.poll);
  auto grace = parse_duration_sec(o.grace);
  if (!poll || !grace) {
    std::cerr << "lull: --poll and --grace take a duration such as 20s\n";
    return ex_usage;
  }
  auto set = block_supervise_signals();
  // Announced with a last will: if this worker dies, lulld expires its lease
  // at once and the job goes back to the queue.
  auto client = connect_or_say(g, true);
  if (!client)
    return ex_unavailable;
  auto say = [&](const std::string& text) {
    if (!o.quiet)
      std::cerr << "lull: " << text << std::endl;
  };
  char tmpl[] = "/tmp/lull-job-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) {
    std::cerr << "lull: cannot create a file for the job's input\n";
    return 1;
  }
  ::close(fd);
  std::string job_file = tmpl;
  int done = 0;
  int code = 0;
  while (o.max_jobs == 0 || done < o.max_jobs) {
    nlohmann::json body = {{"types", o.types}, {"wait_sec", *poll}};
    if (!o.host.empty())
      body["host_id"] = o.host;
    auto r = client->call(client->topic("scheduler/job/next"), body,
                          call_timeout_of(g) + milliseconds(static_cast<long>(*poll * 1000)));
    double retry = 2;
    if (auto* e = std::get_if<call_error>(&r)) {
      say("asking for work failed: " + e->error.message);
    } else {
      auto& reply = std::get<nlohmann::json>(r);
      auto lease = reply["job"].is_null() ? std::nullopt : grant_reply_from_json(reply["lease"]);
      if (!lease) {
        retry = std::max(0.5, reply.value("retry_after_sec", 2.0));
        say("no work yet (" + str(reply["reason"]) + "); asking again in " + fmt(retry) + "s");
      } else {
        auto& job = reply["job"];
        auto job_id = str(job["job_id"]);
        std::ofstream(job_file, std::ios::trunc) << job.dump() << "\n";
        say("job " + job_id + " (" + str(job["job_type"]) + ") under lease " + lease->lease_id);
        supervise_options so;
        so.cmd = o.cmd;
        so.extra_env = {"LULL_JOB_ID=" + job_id, "LULL_JOB_TYPE=" + str(job["job_type"])};
        so.stdin_path = job_file;
        so.low_priority = !o.keep_priority && upper_ascii(str(job["priority"])) != "HIGH";
        so.use_cgroup = !o.no_cgroup;
        so.grace_sec = *grace;
        so.grace_text = o.grace;
        so.signals = set;
        so.say = say;
        auto res = run_under_lease(*client, *lease, so);
        nlohmann::json outcome;
        if (!res.started)
          outcome = {{"outcome", "failed"}, {"error", "cannot run " + o.cmd.front() + ": "
                                                        + res.start_error}};
        else if (res.exit_code == 0 && !res.killed)
          outcome = {{"outcome", "succeeded"}, {"result", {{"exit_code", 0}}}};
        else
          outcome = {{"outcome", "failed"},
                     {"result", {{"exit_code", res.exit_code}}},
                     {"error", res.lost ? "lease lost: " + res.lost_reason
                                        : "exit status " + std::to_string(res.exit_code)}};
        auto rel = client->release(lease->lease_id, call_timeout_of(g), "job finished", outcome);
        if (auto* e = std::get_if<call_error>(&rel))
          say("release of " + lease->lease_id + " failed: " + e->error.message);
        say("job " + job_id + " " + outcome["outcome"].get<std::string>());
        ++done;
        if (res.interrupted) {
          code = 128 + res.interrupt_signal;
          break;
        }
        continue;
      }
    }
    int sig = wait_signal(set, duration<double>(retry));
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      code = 128 + sig;
      break;
    }
  }
  ::unlink(job_file.c_str());
  return code;
}

struct history_opts {
  std::string group = "host", host, range = "1h", step = "1m";
  std::vector<std::string> metrics;
  bool as_json = false;
};

std::string sparkline(const nlohmann::json& values) {
  static const char* bars[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                               "\u2585", "\u2586", "\u2587", "\u2588"};
  double lo = 1e300, hi = -1e300;
  for (auto& v : values)
    if (v.is_number()) {
      lo = std::min(lo, v.get<double>());
      hi = std::max(hi, v.get<double>());
    }
  std::string out;
  for (auto& v : values) {
    if (!v.is_number()) {
      out += " ";
      continue;
    }
    int i = hi > lo ? static_cast<int>((v.get<double>() - lo) / (hi - lo) * 7.0 + 0.5) : 0;
    out += bars[std::clamp(i, 0, 7)];
  }
  return out;
}

int do_history(const global_opts& g, const history_opts& o) {
  nlohmann::json body = {{"kind", "history"}, {"group", o.group}, {"range", o.range},
                         {"step", o.step}};
  if (!o.host.empty())
    body["host"] = o.host;
  if (!o.metrics.empty())
    body["metrics"] = o.metrics;
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  auto r = client->call(client->topic("history/request"), body, call_timeout_of(g));
  if (auto* e = std::get_if<call_error>(&r))
    return report_error("history", *e);
  auto& j = std::get<nlohmann::json>(r);
  if (o.as_json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << str(j["group"]) << " of " << str(j["host"]) << ", last " << o.range << " in "
            << o.step << " steps from " << str(j["start_utc"]) << " (" << str(j["source"])
            << ")\n\n";
  if (j["series"].empty()) {
    std::cout << "(no data)\n";
    return 0;
  }
  std::size_t width = 8;
  for (auto& [name, s] : j["series"].items())
    width = std::max(width, name.size() + 2);
  for (auto& [name, s] : j["series"].items()) {
    double mn = 1e300, mx = -1e300, sum = 0;
    int n = 0;
    nlohmann::json last;
    for (std::size_t i = 0; i < s["avg"].size(); ++i) {
      auto& a = s["avg"][i];
      if (!a.is_number())
        continue;
      mn = std::min(mn, s["min"][i].get<double>());
      mx = std::max(mx, s["max"][i].get<double>());
      sum += a.get<double>();
      ++n;
      last = a;
    }
    std::cout << pad(name, width) << sparkline(s["avg"]);
    if (n > 0)
      std::cout << "  min " << num(mn, 1) << "  avg " << num(sum / n, 1) << "  max "
                << num(mx, 1) << "  last " << num(last, 1);
    std::cout << "\n";
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  CLI::App app{"lull: run heavy work when the host is quiet (leases from lulld over MQTT)"};
  app.set_version_flag("--version", "lull 0.1.0");
  app.require_subcommand(1);
  global_opts g;
  app.add_option("--broker", g.broker, "MQTT broker URI")->envname("LULL_BROKER")
    ->capture_default_str();
  app.add_option("--worker", g.worker, "this worker's id (default: the hostname)")
    ->envname("LULL_WORKER_ID");
  app.add_option("--user", g.user, "MQTT user name (secure broker: the worker id)")
    ->envname("LULL_USERNAME");
  app.add_option("--password", g.password, "MQTT password (prefer the env)")
    ->envname("LULL_PASSWORD");
  app.add_flag("--secure", g.secure, "the broker runs broker-config/secure.conf")
    ->envname("LULL_BROKER_SECURE");
  app.add_option("--topic-prefix", g.prefix, "lulld's topic prefix")->envname("LULL_TOPIC_PREFIX");
  app.add_option("--timeout", g.timeout_sec, "seconds to wait for the broker and each reply")
    ->capture_default_str();

  run_opts r;
  auto* run = app.add_subcommand("run", "wait for a lease, run CMD, heartbeat, release");
  auto* cost = run->add_option("--cost", r.cost, "cost in units (1-100)")
                 ->check(CLI::Range(1, 100));
  run->add_option("--class", r.cls, "cost class LOW, NORMAL or HIGH")->excludes(cost);
  run->add_option("--priority", r.priority, "LOW, NORMAL or HIGH")->capture_default_str();
  run->add_option("--host", r.host, "host whose capacity the work uses");
  run->add_option("--wait", r.wait, "give up after this long without a lease (0: never)")
    ->capture_default_str();
  run->add_option("--job-type", r.job_type, "job type (default: CMD's name)");
  run->add_option("--ttl", r.ttl, "lease TTL to ask for (lulld may clamp it)");
  run->add_option("--grace", r.grace, "SIGTERM to SIGKILL grace on a lost lease")
    ->capture_default_str();
  run->add_flag("-q,--quiet", r.quiet, "do not say why it waits");
  run->add_flag("--keep-priority", r.keep_priority,
                "run LOW/NORMAL work at normal priority (default: nice 19, idle IO)");
  run->add_flag("--no-cgroup", r.no_cgroup, "do not put CMD in a cgroup of its own");
  run->add_option("command", r.cmd, "CMD ARGS... (after --)")->required();

  bool as_json = false;
  auto* status = app.add_subcommand("status", "hosts, quiet states and leases");
  status->add_flag("--json", as_json, "print scheduler/status as JSON");

  std::string lease_id, reason;
  auto* revoke = app.add_subcommand("revoke", "revoke a lease (admin)");
  revoke->add_option("lease_id", lease_id, "the lease id")->required();
  revoke->add_option("--reason", reason, "why (shown to the holder)");

  submit_opts so;
  auto* submit = app.add_subcommand("submit", "queue a job until a host can afford it");
  submit->add_option("--type", so.type, "job type")->required();
  submit->add_option("--payload", so.payload, "job payload: JSON, @FILE, or - for stdin");
  auto* scost = submit->add_option("--cost", so.cost, "cost in units (1-100)")
                  ->check(CLI::Range(1, 100));
  submit->add_option("--class", so.cls, "cost class LOW, NORMAL or HIGH")->excludes(scost);
  submit->add_option("--priority", so.priority, "high, normal, low or background")
    ->capture_default_str();
  submit->add_option("--host", so.host, "run on this host only");
  submit->add_option("--key", so.key, "idempotency key: resubmitting returns the same job");
  submit->add_option("--max-attempts", so.max_attempts, "tries before it fails")
    ->check(CLI::Range(1, 100))->capture_default_str();
  submit->add_option("--deadline", so.deadline, "expire if not started within (e.g. 2h)");
  submit->add_option("--producer", so.producer, "who submits (default: --worker)");
  submit->add_flag("--json", so.as_json, "print the job as JSON");

  jobs_opts jo;
  auto* jobs = app.add_subcommand("jobs", "list jobs");
  jobs->add_option("--state", jo.state, "queued, leased, running, succeeded, failed, ...");
  jobs->add_option("--type", jo.type, "job type");
  jobs->add_option("--by-worker", jo.worker, "jobs of this worker");
  jobs->add_option("--limit", jo.limit, "at most this many")->capture_default_str();
  jobs->add_flag("--json", jo.as_json, "print the reply as JSON");

  std::string job_id, cancel_reason;
  auto* cancel = app.add_subcommand("cancel", "cancel a job (its lease is revoked)");
  cancel->add_option("job_id", job_id, "the job id")->required();
  cancel->add_option("--reason", cancel_reason, "why");

  work_opts wo;
  auto* work = app.add_subcommand("work", "take jobs from the queue and run CMD for each "
                                          "(the job's JSON on its stdin)");
  work->add_option("--type", wo.types, "job types this worker accepts (repeatable)")
    ->required();
  work->add_option("--host", wo.host, "the host this worker runs on");
  work->add_option("--poll", wo.poll, "how long one request for work may wait")
    ->capture_default_str();
  work->add_option("--grace", wo.grace, "SIGTERM to SIGKILL grace on a lost lease")
    ->capture_default_str();
  work->add_option("--max-jobs", wo.max_jobs, "stop after this many jobs (0: never)");
  work->add_flag("-q,--quiet", wo.quiet, "do not say what it does");
  work->add_flag("--keep-priority", wo.keep_priority,
                 "run jobs below high priority at normal priority (default: nice 19, idle IO)");
  work->add_flag("--no-cgroup", wo.no_cgroup, "do not put jobs in a cgroup of their own");
  work->add_option("command", wo.cmd, "CMD ARGS... (after --)")->required();

  history_opts ho;
  auto* history = app.add_subcommand("history", "history of a host, its quiet score, ...");
  history->add_option("--group", ho.group, "host, quiet, process:<name>, bus, worker:<id>")
    ->capture_default_str();
  history->add_option("--host", ho.host, "host id (default: lulld's own)");
  history->add_option("--range", ho.range, "how far back (e.g. 1h, 7d)")->capture_default_str();
  history->add_option("--step", ho.step, "bucket size (e.g. 10s, 5m)")->capture_default_str();
  history->add_option("--metric", ho.metrics, "only these metrics (repeatable)");
  history->add_flag("--json", ho.as_json, "print the reply as JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : ex_usage;
  }
  if (*run)
    return do_run(g, r);
  if (*status)
    return do_status(g, as_json);
  if (*submit)
    return do_submit(g, so);
  if (*jobs)
    return do_jobs(g, jo);
  if (*cancel)
    return do_cancel(g, job_id, cancel_reason);
  if (*work)
    return do_work(g, wo);
  if (*history)
    return do_history(g, ho);
  return do_revoke(g, lease_id, reason);
}
