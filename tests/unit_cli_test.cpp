// The lull command line without a broker: what each command parses (global
// flags before or after the command) and what it prints from a reply.

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "messages/codec.hpp"
#include "src/cli/commands.hpp"
#include "src/config.hpp"

using namespace lull::cli;
using json = nlohmann::json;

namespace {

/// Parses `args` (without the program name); the parse error's text, or "".
std::string parse(CLI::App& app, std::vector<std::string> args) {
  std::vector<char*> argv;
  std::string prog = "lull";
  argv.push_back(prog.data());
  for (auto& a : args)
    argv.push_back(a.data());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return "";
}

/// The app as `lull` builds it, with the chosen command's name.
struct parsed {
  CLI::App app;
  global_opts g;
  std::vector<command> commands;
  std::string error;
  std::string chosen() const {
    for (auto& c : commands)
      if (*c.sub)
        return c.sub->get_name();
    return "";
  }
};

std::unique_ptr<parsed> lull_parse(std::vector<std::string> args) {
  auto p = std::make_unique<parsed>();
  p->commands = build(p->app, p->g);
  p->error = parse(p->app, std::move(args));
  return p;
}

} // namespace

TEST(cli_parse, every_command_is_listed) {
  CLI::App app;
  global_opts g;
  std::vector<std::string> names;
  for (auto& c : build(app, g))
    names.push_back(c.sub->get_name());
  EXPECT_EQ(names, (std::vector<std::string>{"run", "status", "revoke", "pause", "resume",
                                             "submit", "jobs",
                                             "cancel", "retry", "work", "history", "watch",
                                             "completion"}));
}

TEST(cli_parse, global_flags_before_or_after_the_command) {
  for (auto args : {std::vector<std::string>{"--worker", "w1", "--broker", "tcp://h:1884",
                                             "--timeout", "3", "status", "--json"},
                    std::vector<std::string>{"status", "--worker", "w1", "--json", "--broker",
                                             "tcp://h:1884", "--timeout", "3"}}) {
    auto p = lull_parse(args);
    ASSERT_EQ(p->error, "") << args[0];
    EXPECT_EQ(p->chosen(), "status");
    EXPECT_EQ(p->g.worker, "w1");
    EXPECT_EQ(p->g.broker, "tcp://h:1884");
    EXPECT_EQ(p->g.timeout_sec, 3);
  }
}

TEST(cli_parse, run_takes_global_flags_and_keeps_the_command_after_dashes) {
  CLI::App app;
  global_opts g;
  add_global_options(app, g);
  run_opts r;
  add_run(app, r);
  ASSERT_EQ(parse(app, {"run", "--worker", "w1", "--cost", "20", "--secure", "--wait", "5m",
                        "--", "sh", "-c", "exit 3", "--worker"}),
            "");
  EXPECT_EQ(g.worker, "w1");
  EXPECT_TRUE(g.secure);
  EXPECT_EQ(r.cost, 20);
  EXPECT_EQ(r.wait, "5m");
  EXPECT_EQ(r.cmd, (std::vector<std::string>{"sh", "-c", "exit 3", "--worker"}));
}

TEST(cli_parse, run_refuses_cost_with_class_and_a_missing_command) {
  EXPECT_NE(lull_parse({"run", "--cost", "5", "--class", "LOW", "--", "true"})->error, "");
  EXPECT_NE(lull_parse({"run", "--cost", "500", "--", "true"})->error, "");
  EXPECT_NE(lull_parse({"run", "--cost", "5"})->error, "");
}

TEST(cli_parse, run_and_submit_take_the_gpus_the_work_needs_up_to_16) {
  CLI::App app;
  global_opts g;
  add_global_options(app, g);
  run_opts r;
  submit_opts s;
  add_run(app, r);
  add_submit(app, s);
  ASSERT_EQ(parse(app, {"run", "--gpu", "2", "--", "train"}), "");
  EXPECT_EQ(r.gpu, 2);
  ASSERT_EQ(parse(app, {"submit", "--type", "render", "--gpu", "1"}), "");
  EXPECT_EQ(s.gpu, 1);
  EXPECT_NE(parse(app, {"run", "--gpu", "17", "--", "train"}), "") << "a usage error, not a send";
  EXPECT_NE(parse(app, {"submit", "--type", "render", "--gpu", "-1"}), "");
}

TEST(cli_parse, an_unknown_flag_is_still_an_error) {
  auto p = lull_parse({"status", "--bogus"});
  EXPECT_NE(p->error.find("--bogus"), std::string::npos) << p->error;
  EXPECT_NE(lull_parse({})->error, "") << "a command is required";
  EXPECT_NE(lull_parse({"frobnicate"})->error, "");
}

TEST(cli_parse, work_types_repeat_and_the_command_follows) {
  CLI::App app;
  global_opts g;
  add_global_options(app, g);
  work_opts w;
  add_work(app, w);
  ASSERT_EQ(parse(app, {"work", "--type", "a", "--type", "b", "--max-jobs", "2",
                        "--topic-prefix", "site1", "--", "./job.sh"}),
            "");
  EXPECT_EQ(w.types, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(w.max_jobs, 2);
  EXPECT_EQ(g.prefix, "site1");
  EXPECT_EQ(w.cmd, std::vector<std::string>{"./job.sh"});
  EXPECT_EQ(w.poll, "20s");
}

TEST(cli_parse, submit_jobs_cancel_revoke_history_options) {
  CLI::App app;
  global_opts g;
  add_global_options(app, g);
  submit_opts s;
  jobs_opts j;
  cancel_opts c;
  revoke_opts r;
  history_opts h;
  add_submit(app, s);
  add_jobs(app, j);
  add_cancel(app, c);
  add_revoke(app, r);
  add_history(app, h);
  ASSERT_EQ(parse(app, {"submit", "--type", "thumbs", "--key", "k1", "--priority", "low",
                        "--payload", "{\"a\":1}", "--user", "u1"}),
            "");
  EXPECT_EQ(s.type, "thumbs");
  EXPECT_EQ(s.key, "k1");
  EXPECT_EQ(s.priority, "low");
  EXPECT_EQ(s.max_attempts, 3);
  EXPECT_EQ(g.user, "u1");
  EXPECT_NE(parse(app, {"submit", "--payload", "{}"}), "") << "--type is required";
  // One vocabulary, any case, checked before anything is sent.
  EXPECT_EQ(parse(app, {"submit", "--type", "t", "--priority", "BACKGROUND"}), "");
  EXPECT_EQ(parse(app, {"submit", "--type", "t", "--priority", "High", "--class", "low"}), "");
  auto bad = parse(app, {"submit", "--type", "t", "--priority", "urgent"});
  EXPECT_NE(bad.find("takes HIGH, NORMAL, LOW or BACKGROUND"), std::string::npos) << bad;
  bad = parse(app, {"submit", "--type", "t", "--class", "huge"});
  EXPECT_NE(bad.find("takes LOW, NORMAL or HIGH"), std::string::npos) << bad;
  ASSERT_EQ(parse(app, {"jobs", "--state", "queued", "--by-worker", "w2", "--json"}), "");
  EXPECT_EQ(j.state, "queued");
  EXPECT_EQ(j.worker, "w2");
  EXPECT_TRUE(j.as_json);
  ASSERT_EQ(parse(app, {"cancel", "j-1", "--reason", "no longer needed"}), "");
  EXPECT_EQ(c.job_id, "j-1");
  EXPECT_EQ(c.reason, "no longer needed");
  ASSERT_EQ(parse(app, {"revoke", "L1", "--reason", "maintenance"}), "");
  EXPECT_EQ(r.lease_id, "L1");
  EXPECT_NE(parse(app, {"revoke"}), "") << "LEASE_ID is required";
  ASSERT_EQ(parse(app, {"history", "--group", "quiet", "--metric", "quiet_score", "--range",
                        "7d"}),
            "");
  EXPECT_EQ(h.group, "quiet");
  EXPECT_EQ(h.metrics, std::vector<std::string>{"quiet_score"});
  EXPECT_EQ(h.range, "7d");
  EXPECT_EQ(h.step, "1m");
}

TEST(cli_main, usage_errors_exit_64_and_version_exits_0) {
  std::string prog = "lull", bad = "--bogus", version = "--version";
  char* bad_argv[] = {prog.data(), bad.data()};
  EXPECT_EQ(lull::cli::main(2, bad_argv), ex_usage);
  char* version_argv[] = {prog.data(), version.data()};
  EXPECT_EQ(lull::cli::main(2, version_argv), ex_ok);
}

// -- output ------------------------------------------------------------------

TEST(cli_output, status_tables) {
  json s = {{"updated_at", "2026-11-30T22:00:00Z"},
            {"hosts",
             {{"nuc",
               {{"state", "QUIET"}, {"quiet_score", 91.6}, {"used_units", 20},
                {"capacity_units", 60}, {"active_leases", 1}}},
              {"pi",
               {{"state", "PANIC"}, {"quiet_score", 3}, {"used_units", 0},
                {"capacity_units", 60}, {"active_leases", 0},
                {"cooldown_remaining_sec", 42.2}}}}},
            {"active",
             {{{"lease_id", "0123456789abcdef0123456789abcdef"}, {"worker_id", "w1"},
               {"host_id", "nuc"}, {"cost_units", 20}, {"priority", "NORMAL"},
               {"ttl_remaining_sec", 27.4}, {"job_type", "thumbs"}}}},
            {"workers",
             {{"w1", {{"grants", 3}, {"denies", 1}, {"last_decision", "GRANT"},
                      {"last_reason", "Granted: used=20/60 units"}}}}}};
  std::ostringstream out;
  print_status(out, s);
  auto text = out.str();
  EXPECT_NE(text.find("nuc             QUIET   92     20/60     1       -\n"), std::string::npos)
    << text;
  EXPECT_NE(text.find("pi              PANIC   3      0/60      0       42s\n"), std::string::npos)
    << text;
  EXPECT_NE(text.find("0123456789abcdef0123456789abcdef  w1              nuc         20    "
                      "NORMAL 27s   thumbs\n"),
            std::string::npos)
    << text;
  EXPECT_NE(text.find("w1              3       1       GRANT: Granted: used=20/60 units\n"),
            std::string::npos)
    << text;
  EXPECT_NE(text.find("(as of 2026-11-30T22:00:00Z)"), std::string::npos);
  EXPECT_EQ(text.find("(no active leases)"), std::string::npos);
}

TEST(cli_output, status_of_an_empty_or_odd_document_does_not_throw) {
  std::ostringstream out;
  print_status(out, json::object());
  EXPECT_NE(out.str().find("(no active leases)"), std::string::npos);
  EXPECT_NE(out.str().find("(as of -)"), std::string::npos);
  std::ostringstream odd;
  print_status(odd, {{"hosts", {{"h", {{"state", 7}, {"quiet_score", "x"}}}}}});
  EXPECT_NE(odd.str().find("h               -       -      -/-"), std::string::npos) << odd.str();
}

TEST(cli_output, jobs_table_and_depths) {
  json reply = {{"jobs",
                 {{{"job_id", "j-abc"}, {"job_type", "thumbs"}, {"state", "queued"},
                   {"priority", "normal"}, {"cost_units", 10}, {"attempts", 0},
                   {"max_attempts", 3}, {"worker_id", nullptr},
                   {"updated_at", "2026-11-30T22:00:00Z"}}}},
                {"depths", {{"high", 0}, {"normal", 1}}}};
  std::ostringstream out;
  print_jobs(out, reply);
  EXPECT_NE(out.str().find("JOB    TYPE    STATE   PRIO    UNITS  TRY  WORKER  UPDATED\n"
                           "j-abc  thumbs  queued  normal  10     0/3  -       "
                           "2026-11-30T22:00:00Z\n"),
            std::string::npos)
    << out.str();
  EXPECT_NE(out.str().find("queued: high=0 normal=1 \n"), std::string::npos) << out.str();
  std::ostringstream none;
  print_jobs(none, {{"jobs", json::array()}});
  EXPECT_NE(none.str().find("(no jobs)"), std::string::npos);
}

TEST(cli_output, history_sparklines_with_gaps) {
  history_opts o;
  o.range = "1h";
  o.step = "10m";
  json reply = {{"group", "quiet"}, {"host", "nuc"}, {"start_utc", "2026-11-30T21:00:00Z"},
                {"source", "raw"},
                {"series",
                 {{"quiet_score",
                   {{"avg", {10, nullptr, 50, 90}},
                    {"min", {5, nullptr, 40, 80}},
                    {"max", {20, nullptr, 60, 100}}}}}}};
  std::ostringstream out;
  print_history(out, reply, o);
  EXPECT_EQ(out.str(),
            "quiet of nuc, last 1h in 10m steps from 2026-11-30T21:00:00Z (raw)\n\n"
            "quiet_score  \u2581 \u2585\u2588  min 5.0  avg 50.0  max 100.0  last 90.0\n");
  std::ostringstream empty;
  print_history(empty, {{"series", json::object()}}, o);
  EXPECT_NE(empty.str().find("(no data)"), std::string::npos);
}

TEST(cli_output, sparkline_scales_between_min_and_max) {
  EXPECT_EQ(sparkline({0, 7}), "\u2581\u2588");
  EXPECT_EQ(sparkline({3, 3}), "\u2581\u2581");
  EXPECT_EQ(sparkline(json::array()), "");
}

// -- lull watch ----------------------------------------------------------------

TEST(cli_watch, a_frame_shows_hosts_with_sparklines_leases_and_queue_depths) {
  watch_view v(4);
  EXPECT_NE(v.render("hdr").find("(waiting for scheduler/status"), std::string::npos);
  for (double s : {0.0, 50.0, 100.0, 100.0, 100.0})
    EXPECT_TRUE(v.on_message("stats/host/nuc/quiet", {{"state", "QUIET"}, {"quiet_score", s}}));
  EXPECT_TRUE(v.on_message("stats/host/nuc", {{"cpu", {{"total_pct", 12.34}}}}));
  EXPECT_TRUE(v.on_message(
    "scheduler/status",
    {{"hosts", {{"nuc", {{"used_units", 20}, {"capacity_units", 60}}},
                {"pi", {{"state", "BUSY"}, {"quiet_score", 30}}}}},
     {"active",
      {{{"lease_id", "L1"}, {"worker_id", "w1"}, {"host_id", "nuc"}, {"cost_units", 20},
        {"priority", "LOW"}, {"ttl_remaining_sec", 9.6}, {"job_type", "thumbs"}}}},
     {"queue", {{"queued", 3}, {"depths", {{"high", 1}, {"normal", 2}}}}}}));
  EXPECT_FALSE(v.on_message("stats/bus", {{"x", 1}}));
  EXPECT_FALSE(v.on_message("stats/host/nuc/quiet", "not an object"));
  auto frame = v.render("lull watch  test");
  EXPECT_EQ(frame.rfind("lull watch  test\n\n", 0), 0u) << frame;
  // The last four scores on a 0-100 scale: 50, 100, 100, 100.
  EXPECT_NE(frame.find("nuc             QUIET   100    12.3   20/60     "
                       "\u2585\u2588\u2588\u2588\n"),
            std::string::npos)
    << frame;
  EXPECT_NE(frame.find("pi              BUSY    30     -      -/-       \n"), std::string::npos)
    << frame;
  EXPECT_NE(frame.find("L1                                w1              nuc         20    LOW"
                       "    10s   thumbs"),
            std::string::npos)
    << frame;
  EXPECT_NE(frame.find("QUEUE  3 queued: high=1 normal=2\n"), std::string::npos) << frame;
}

// -- lull completion -------------------------------------------------------------

namespace {

/// What bash completes for `line` (words split on spaces; the last may be
/// empty) with the script of `lull completion bash`.
std::string complete_in_bash(const std::string& line) {
  CLI::App app;
  global_opts g;
  build(app, g);
  auto script = completion_script(app, "bash");
  char tmpl[] = "/tmp/lull-completion-XXXXXX";
  int fd = ::mkstemp(tmpl);
  std::string path = tmpl;
  std::string body = script + "\nread -ra COMP_WORDS <<< \"" + line + "\"\n";
  if (!line.empty() && line.back() == ' ')
    body += "COMP_WORDS+=(\"\")\n";
  body += "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n_lull\necho \"${COMPREPLY[*]}\"\n";
  ::close(fd);
  std::ofstream(path) << body;
  std::string out;
  if (FILE* p = ::popen(("bash " + path).c_str(), "r")) {
    char buf[4096];
    while (auto n = std::fread(buf, 1, sizeof buf, p))
      out.append(buf, n);
    ::pclose(p);
  }
  ::unlink(path.c_str());
  if (!out.empty() && out.back() == '\n')
    out.pop_back();
  return out;
}

} // namespace

TEST(cli_completion, bash_completes_commands_options_and_values) {
  EXPECT_EQ(complete_in_bash("lull st"), "status");
  EXPECT_EQ(complete_in_bash("lull --bro"), "--broker");
  EXPECT_EQ(complete_in_bash("lull run --pri"), "--priority");
  EXPECT_EQ(complete_in_bash("lull run --priority "), "LOW NORMAL HIGH");
  EXPECT_EQ(complete_in_bash("lull submit --priority "), "HIGH NORMAL LOW BACKGROUND");
  EXPECT_EQ(complete_in_bash("lull --worker w1 history --group q"), "quiet");
  EXPECT_EQ(complete_in_bash("lull watch --ref"), "--refresh");
  EXPECT_EQ(complete_in_bash("lull completion "), "bash zsh");
  EXPECT_EQ(complete_in_bash("lull run --broker "), "") << "a value, not an option";
  // Global flags after the command complete too.
  EXPECT_EQ(complete_in_bash("lull jobs --time"), "--timeout");
  // After --, the command run under the lease.
  EXPECT_NE((" " + complete_in_bash("lull run -- ech") + " ").find(" echo "), std::string::npos);
}

TEST(cli_completion, zsh_goes_through_bashcompinit) {
  CLI::App app;
  global_opts g;
  build(app, g);
  auto script = completion_script(app, "zsh");
  EXPECT_EQ(script.rfind("#compdef lull\n", 0), 0u);
  EXPECT_NE(script.find("bashcompinit"), std::string::npos);
  EXPECT_NE(script.find("complete -F _lull lull"), std::string::npos);
}

// `lull jobs` follows `next` until the list ends or --limit jobs are in.
TEST(cli_pages, follow_pages_joins_every_page_and_stops_at_the_limit) {
  // A lulld with 23 jobs that answers 5 a page.
  std::vector<json> requests;
  auto lulld = [&](const json& body) -> std::variant<json, lull::call_error> {
    requests.push_back(body);
    int after = body.contains("cursor") ? std::stoi(body["cursor"].get<std::string>().substr(1)) : 0;
    json page = {{"ok", true}, {"jobs", json::array()}, {"depths", {{"normal", 23}}}};
    int n = std::min<int>(5, body["limit"].get<int>());
    for (int i = after + 1; i <= 23 && static_cast<int>(page["jobs"].size()) < n; ++i)
      page["jobs"].push_back({{"job_id", "j" + std::to_string(i)}});
    auto last = after + static_cast<int>(page["jobs"].size());
    if (last < 23)
      page["next"] = "j" + std::to_string(last);
    return page;
  };
  auto all = std::get<json>(follow_pages({{"state", "queued"}}, "jobs", 100, lulld));
  ASSERT_EQ(all["jobs"].size(), 23u);
  for (int i = 0; i < 23; ++i)
    EXPECT_EQ(all["jobs"][static_cast<std::size_t>(i)]["job_id"], "j" + std::to_string(i + 1));
  EXPECT_FALSE(all.contains("next"));
  EXPECT_EQ(all["depths"]["normal"], 23);
  ASSERT_EQ(requests.size(), 5u);
  EXPECT_FALSE(requests[0].contains("cursor"));
  EXPECT_EQ(requests[1]["cursor"], "j5");
  EXPECT_EQ(requests[1]["state"], "queued") << "every page asks the same question";

  requests.clear();
  auto first = std::get<json>(follow_pages(json::object(), "jobs", 7, lulld));
  EXPECT_EQ(first["jobs"].size(), 7u);
  EXPECT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1]["limit"], 2) << "the second page asks only for what is left";
  EXPECT_TRUE(first.contains("next"));
  std::ostringstream out;
  print_jobs(out, first);
  EXPECT_NE(out.str().find("(the first 7 jobs; --limit lists more)"), std::string::npos) << out.str();

  // An error on any page is the command's error.
  int calls = 0;
  auto failing = [&](const json& body) -> std::variant<json, lull::call_error> {
    if (++calls == 2)
      return lull::call_error{false, {lull::error_code::reply_too_large, "job j9 takes 9000 bytes"}};
    return lulld(body);
  };
  auto r = follow_pages(json::object(), "jobs", 100, failing);
  ASSERT_TRUE(std::holds_alternative<lull::call_error>(r));
  EXPECT_EQ(std::get<lull::call_error>(r).error.code, lull::error_code::reply_too_large);
}

TEST(cli_pages, history_pages_are_joined_bucket_after_bucket) {
  json all = {{"buckets", 2}, {"start", 0},
              {"series", {{"cpu", {{"avg", {1, 2}}, {"min", {1, 2}}, {"max", {1, 2}},
                                    {"p95", {1, 2}}, {"n", {1, 1}}}}}},
              {"next", "h0.10.20.50"}};
  json page = {{"buckets", 3}, {"start", 20},
               {"series", {{"mem", {{"avg", {7, nullptr, 9}}, {"min", {7, nullptr, 9}},
                                    {"max", {7, nullptr, 9}}, {"p95", {7, nullptr, 9}},
                                    {"n", {1, 0, 1}}}}}}};
  append_history_page(all, page);
  EXPECT_EQ(all["buckets"], 5);
  EXPECT_EQ(all["start"], 0);
  EXPECT_FALSE(all.contains("next"));
  EXPECT_EQ(all["series"]["cpu"]["avg"], json({1, 2, nullptr, nullptr, nullptr}));
  EXPECT_EQ(all["series"]["cpu"]["n"], json({1, 1, 0, 0, 0}));
  EXPECT_EQ(all["series"]["mem"]["avg"], json({nullptr, nullptr, 7, nullptr, 9}));
  EXPECT_EQ(all["series"]["mem"]["n"], json({0, 0, 1, 0, 1}));
}

// -- where lull finds its lulld ------------------------------------------------

namespace {

/// A fresh directory, removed with everything in it.
struct temp_dir {
  std::string path = [] {
    char tmpl[] = "/tmp/lull-cli-settings-XXXXXX";
    return std::string(::mkdtemp(tmpl));
  }();
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& rel, const std::string& text) const {
    auto p = path + "/" + rel;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p) << text;
    return p;
  }
};

struct resolved {
  std::unique_ptr<parsed> p;
  std::optional<std::string> error;
};

/// `lull ARGS` resolved against `env` (HOME is the temp dir unless given)
/// with the system's config and data dirs inside `t`.
resolved resolve(const temp_dir& t, std::vector<std::string> args,
                 std::map<std::string, std::string> env = {}) {
  resolved r;
  r.p = lull_parse(std::move(args));
  EXPECT_EQ(r.p->error, "");
  env.emplace("HOME", t.path);
  settings_paths paths;
  paths.system_config = t.path + "/etc/lull/lull.toml";
  paths.system_data_dirs = {t.path + "/var/lib/lull"};
  r.error = resolve_settings(r.p->app, r.p->g, env, paths);
  return r;
}

} // namespace

TEST(cli_settings, nothing_configured_is_the_default_broker_and_says_where_to_set_one) {
  temp_dir t;
  auto r = resolve(t, {"status"});
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.p->g.broker, "tcp://127.0.0.1:1883");
  EXPECT_EQ(broker_named(r.p->g),
            "tcp://127.0.0.1:1883 (default; set broker in ~/.config/lull/lull.toml or --broker)");
}

TEST(cli_settings, the_users_file_then_the_systems_with_lulld_only_keys_ignored) {
  temp_dir t;
  // lulld's whole file: keys lull does not use (even ones lull would not
  // accept the value of) are lulld's business.
  auto system = t.write("etc/lull/lull.toml",
                        "broker = \"tcp://sys:1883\"\nhost_id = \"nuc\"\nusername = \"u-sys\"\n"
                        "[lease]\nttl = \"45s\"\nwindows = \"Mon-Fri 22:00-07:00\"\n"
                        "[quiet]\ncpu = \"0,30,75,95\"\n");
  auto r = resolve(t, {"status"});
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.p->g.broker, "tcp://sys:1883");
  EXPECT_EQ(r.p->g.user, "u-sys");
  EXPECT_EQ(broker_named(r.p->g), "tcp://sys:1883 (from " + system + ":1)") << "file and line";

  // The user's own file wins over the system's; XDG_CONFIG_HOME is honoured.
  auto ca = t.write("ca.pem", "");
  auto user = t.write("xdg/lull/lull.toml",
                      "broker = \"ssl://mine:8883\"\ntopic_prefix = \"site1\"\n"
                      "mqtt_version = \"3.1.1\"\n\"broker.secure\" = true\n"
                      "\"broker.ca_file\" = \"" + ca + "\"\n");
  auto x = resolve(t, {"status"}, {{"XDG_CONFIG_HOME", t.path + "/xdg"}});
  ASSERT_FALSE(x.error) << *x.error;
  EXPECT_EQ(x.p->g.broker, "ssl://mine:8883");
  EXPECT_EQ(x.p->g.prefix, "site1");
  EXPECT_EQ(x.p->g.mqtt_version, "3.1.1");
  EXPECT_TRUE(x.p->g.secure);
  EXPECT_EQ(x.p->g.ca_file, ca);
  EXPECT_EQ(x.p->g.user, "") << "only the chosen file is read";
  EXPECT_EQ(x.p->g.config_file, user);
}

TEST(cli_settings, flag_beats_env_beats_file_and_config_names_the_file) {
  temp_dir t;
  auto file = t.write("f.toml", "broker = \"tcp://file:1883\"\npassword = \"pw-file\"\n");
  auto r = resolve(t, {"--config", file, "status"});
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.p->g.broker, "tcp://file:1883");
  EXPECT_EQ(r.p->g.password, "pw-file");

  auto e = resolve(t, {"status"}, {{"LULL_CONFIG", file}, {"LULL_BROKER", "tcp://env:1883"}});
  ASSERT_FALSE(e.error) << *e.error;
  EXPECT_EQ(e.p->g.broker, "tcp://env:1883");
  EXPECT_EQ(e.p->g.password, "pw-file");
  EXPECT_EQ(broker_named(e.p->g), "tcp://env:1883 (from LULL_BROKER)");

  auto f = resolve(t, {"status", "--broker", "tcp://flag:1883", "--config", file},
                   {{"LULL_BROKER", "tcp://env:1883"}, {"LULL_PASSWORD", "pw-env"}});
  ASSERT_FALSE(f.error) << *f.error;
  EXPECT_EQ(f.p->g.broker, "tcp://flag:1883");
  EXPECT_EQ(f.p->g.password, "pw-env");
  EXPECT_EQ(broker_named(f.p->g), "tcp://flag:1883 (from --broker)");
}

TEST(cli_settings, lulld_tls_env_names_and_lulls_older_ones_both_work) {
  temp_dir t;
  auto ca_new = t.write("ca-new", ""), ca_old = t.write("ca-old", "");
  auto cert_old = t.write("cert-old", ""), key_new = t.write("key-new", "");
  auto r = resolve(t, {"status"}, {{"LULL_BROKER_CA_FILE", ca_new}, {"LULL_CA_FILE", ca_old},
                                   {"LULL_CERT_FILE", cert_old},
                                   {"LULL_BROKER_KEY_FILE", key_new}});
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.p->g.ca_file, ca_new) << "lulld's name wins over the alias";
  EXPECT_EQ(r.p->g.cert_file, cert_old);
  EXPECT_EQ(r.p->g.key_file, key_new);
  auto ca_flag = t.write("ca-flag", "");
  auto f = resolve(t, {"status", "--ca-file", ca_flag}, {{"LULL_BROKER_CA_FILE", ca_new}});
  EXPECT_EQ(f.p->g.ca_file, ca_flag);
  // A file that is not there is told before connecting, under the name it was given by.
  auto gone = resolve(t, {"status"}, {{"LULL_CA_FILE", t.path + "/nope.pem"}});
  ASSERT_TRUE(gone.error);
  EXPECT_EQ(*gone.error, "bad value for broker.ca_file (from env LULL_CA_FILE): '" + t.path
                           + "/nope.pem' is not a file");
}

TEST(cli_settings, a_bad_file_or_value_is_an_error_naming_file_and_key) {
  temp_dir t;
  auto broken = t.write("broken.toml", "broker = \"tcp://x:1883\nusername = 7\n");
  auto r = resolve(t, {"--config", broken, "status"});
  ASSERT_TRUE(r.error);
  EXPECT_NE(r.error->find(broken), std::string::npos) << *r.error;

  auto bad = t.write("bad.toml", "[lease]\nttl = \"30s\"\n[broker]\nsecure = \"maybe\"\n");
  auto b = resolve(t, {"--config", bad, "status"});
  ASSERT_TRUE(b.error);
  EXPECT_NE(b.error->find("broker.secure"), std::string::npos) << *b.error;
  EXPECT_NE(b.error->find(bad), std::string::npos) << *b.error;
  EXPECT_NE(b.error->find("'maybe'"), std::string::npos) << *b.error;

  auto typo = t.write("typo.toml", "brokr = \"tcp://x:1883\"\n");
  auto y = resolve(t, {"--config", typo, "status"});
  ASSERT_TRUE(y.error);
  EXPECT_NE(y.error->find("unknown key 'brokr' in " + typo), std::string::npos) << *y.error;

  auto env = resolve(t, {"status"}, {{"LULL_BROKER", "127.0.0.1:1883"}});
  ASSERT_TRUE(env.error);
  EXPECT_NE(env.error->find("broker.uri (from env LULL_BROKER)"), std::string::npos) << *env.error;

  auto missing = resolve(t, {"--config", t.path + "/none.toml", "status"});
  ASSERT_TRUE(missing.error);
  EXPECT_NE(missing.error->find(t.path + "/none.toml"), std::string::npos) << *missing.error;
}

TEST(cli_settings, a_running_lullds_broker_uri_before_the_default) {
  temp_dir t;
  // The system's data dir; its lulld.lock names no pid lull could check.
  t.write("var/lib/lull/broker.uri", "tcp://127.0.0.1:41883\n");
  t.write("var/lib/lull/lulld.lock", "");
  auto r = resolve(t, {"status"});
  ASSERT_FALSE(r.error) << *r.error;
  EXPECT_EQ(r.p->g.broker, "tcp://127.0.0.1:41883");
  EXPECT_EQ(broker_named(r.p->g), "tcp://127.0.0.1:41883 (from " + t.path
                                    + "/var/lib/lull/broker.uri, the broker a running lulld "
                                      "started)");

  // LULL_DATA_DIR (lulld's data_dir) is looked at first.
  t.write("mine/broker.uri", "tcp://127.0.0.1:42000\n");
  auto d = resolve(t, {"status"}, {{"LULL_DATA_DIR", t.path + "/mine"}});
  EXPECT_EQ(d.p->g.broker, "tcp://127.0.0.1:42000");

  // A broker named anywhere beats every broker.uri.
  auto n = resolve(t, {"status"}, {{"LULL_BROKER", "tcp://named:1883"}});
  EXPECT_EQ(n.p->g.broker, "tcp://named:1883");

  // Left by a lulld that is gone (its pid exited): not used.
  pid_t child = ::fork();
  if (child == 0)
    ::_exit(0);
  ::waitpid(child, nullptr, 0);
  t.write("var/lib/lull/lulld.lock", std::to_string(child) + "\n");
  auto stale = resolve(t, {"status"});
  EXPECT_EQ(stale.p->g.broker, "tcp://127.0.0.1:1883");
}

TEST(cli_settings, client_config_skips_lulld_only_keys_and_records_sources) {
  temp_dir t;
  auto file = t.write("l.toml", "broker = \"tcp://f:1\"\ninterval = \"not a duration\"\n");
  auto r = lull::load_client_config(file, {{"LULL_USERNAME", "u"}},
                                    {{"topic_prefix", {"p", "--topic-prefix"}}});
  ASSERT_TRUE(std::holds_alternative<lull::client_config>(r)) << std::get<std::string>(r);
  auto& c = std::get<lull::client_config>(r);
  EXPECT_EQ(c.values.transport.uri, "tcp://f:1");
  EXPECT_EQ(c.values.transport.username, "u");
  EXPECT_EQ(c.values.topic_prefix, "p");
  EXPECT_EQ(c.sources.at("broker.uri"), "file " + file + ":1");
  EXPECT_EQ(c.sources.at("username"), "env LULL_USERNAME");
  EXPECT_EQ(c.sources.at("topic_prefix"), "--topic-prefix");
  EXPECT_EQ(c.sources.count("interval"), 0u);
}

// -- messages ------------------------------------------------------------------

namespace {

/// Runs `fn` with TZ=UTC, restoring the zone after.
template <class F>
auto in_utc(F fn) {
  std::string old = std::getenv("TZ") ? std::getenv("TZ") : "";
  bool had = std::getenv("TZ") != nullptr;
  ::setenv("TZ", "UTC", 1);
  ::tzset();
  auto out = fn();
  if (had)
    ::setenv("TZ", old.c_str(), 1);
  else
    ::unsetenv("TZ");
  ::tzset();
  return out;
}

} // namespace

TEST(cli_wait, a_cool_down_names_its_end_and_one_wait) {
  auto now = *lull::parse_utc_timestamp("2026-11-30T04:10:41Z");
  lull::lease_grant_reply d;
  d.host_id = "nuc";
  d.reason = "Recent PANIC detected; cooling down until 2026-11-30T04:12:31Z";
  auto text = in_utc([&] { return wait_message(d, lull::work_priority::normal, 110.2, now, -1); });
  EXPECT_EQ(text, "host nuc is cooling down after a PANIC (until 04:12:31); nothing runs there "
                  "until then; asking again in 1m50s (Ctrl-C to give up; --wait DURATION waits "
                  "at most that long)");
  // HIGH waits too, and is told so; a --wait names when it gives up.
  auto high = in_utc([&] { return wait_message(d, lull::work_priority::high, 110.2, now, 600); });
  EXPECT_NE(high.find("nothing runs there until then, not even HIGH;"), std::string::npos) << high;
  EXPECT_NE(high.find("(Ctrl-C to give up; --wait gives up at 04:20:41)"), std::string::npos)
    << high;

  d.reason = "System is PANIC; heavy work denied";
  auto panic = in_utc([&] { return wait_message(d, lull::work_priority::high, 120, now, -1); });
  EXPECT_EQ(panic.rfind("host nuc is in PANIC; nothing runs there during a PANIC or the "
                        "cool-down after it (lease.panic_cooldown), not even HIGH; asking again "
                        "in 2m (",
                        0),
            0u)
    << panic;

  d.reason = "System is BUSY; waiting for QUIET (cpu)";
  auto busy = in_utc([&] { return wait_message(d, lull::work_priority::low, 16.2, now, -1); });
  EXPECT_EQ(busy.rfind("no lease on nuc yet: System is BUSY; waiting for QUIET (cpu); asking "
                       "again in 16s (",
                       0),
            0u)
    << busy;
}

TEST(cli_wait, durations_for_people) {
  EXPECT_EQ(human_duration(0.5), "0.5s");
  EXPECT_EQ(human_duration(2), "2s");
  EXPECT_EQ(human_duration(16.2), "16s");
  EXPECT_EQ(human_duration(60), "1m");
  EXPECT_EQ(human_duration(110.2), "1m50s");
  EXPECT_EQ(human_duration(3600), "1h");
  EXPECT_EQ(human_duration(7500), "2h05m");
}

TEST(cli_errors, a_timeout_names_the_broker_and_exits_apart_from_a_server_error) {
  global_opts g;
  g.broker = "tcp://127.0.0.1:1883";
  g.broker_source = "default; set broker in ~/.config/lull/lull.toml or --broker";
  lull::call_error timeout{true, {lull::error_code::internal_error, "no reply"}};
  EXPECT_EQ(describe(g, timeout).rfind("Timeout: no answer from lulld within 10s on "
                                       "tcp://127.0.0.1:1883 (default; set broker in "
                                       "~/.config/lull/lull.toml or --broker); is lulld running",
                                       0),
            0u)
    << describe(g, timeout);
  lull::call_error server{false, {lull::error_code::internal_error, "disk full"}};
  EXPECT_EQ(describe(g, server), "InternalError: disk full");
  lull::call_error refused{false, {lull::error_code::resource_not_found, "no job x"}};
  EXPECT_EQ(error_exit_code(timeout), ex_timeout);
  EXPECT_EQ(error_exit_code(server), ex_unavailable);
  EXPECT_EQ(error_exit_code(refused), ex_failed);
  EXPECT_NE(ex_timeout, ex_unavailable);
}

// -- tables ----------------------------------------------------------------------

TEST(cli_output, jobs_columns_fit_their_content_and_long_values_are_cut) {
  json reply = {{"jobs",
                 {{{"job_id", "0123456789abcdef0123456789abcdef"}, {"job_type", "nodered-report"},
                   {"state", "queued"}, {"priority", "background"}, {"cost_units", 100},
                   {"attempts", 10}, {"max_attempts", 10},
                   {"worker_id", "a-worker-with-a-very-long-name-indeed"},
                   {"updated_at", "2026-11-30T22:00:00Z"}},
                  {{"job_id", "j2"},
                   {"job_type", "a-job-type-far-longer-than-any-column-should-be"},
                   {"state", "running"}, {"priority", "high"}, {"cost_units", 5},
                   {"attempts", 1}, {"max_attempts", 3}, {"worker_id", "w1"},
                   {"updated_at", "2026-11-30T22:00:01Z"}}}}};
  std::ostringstream out;
  print_jobs(out, reply);
  auto text = out.str();
  // Type and state no longer run together; the whole id is kept.
  EXPECT_NE(text.find("0123456789abcdef0123456789abcdef  nodered-report  "), std::string::npos)
    << text;
  EXPECT_NE(text.find("nodered-report            queued"), std::string::npos) << text;
  EXPECT_NE(text.find("a-job-type-far-longer-t\u2026  running"), std::string::npos) << text;
  EXPECT_NE(text.find("a-worker-with-a-very-lo\u2026  2026-11-30T22:00:00Z"), std::string::npos)
    << text;
  // Every cell starts where its header does.
  std::istringstream lines(text);
  std::string header, row1, row2;
  std::getline(lines, header);
  std::getline(lines, row1);
  // Where each word starts, in characters (no cell here holds a space).
  auto starts = [](const std::string& line) {
    std::vector<std::size_t> out;
    std::size_t chars = 0;
    char prev = ' ';
    for (char ch : line) {
      if ((static_cast<unsigned char>(ch) & 0xC0) == 0x80)
        continue;
      if (ch != ' ' && prev == ' ')
        out.push_back(chars);
      prev = ch;
      ++chars;
    }
    return out;
  };
  EXPECT_EQ(starts(header).size(), 8u) << header;
  EXPECT_EQ(starts(header), starts(row1)) << text;
}

TEST(cli_output, format_table_keeps_two_spaces_and_counts_characters) {
  auto t = format_table({"A", "B", "C"}, {{"\u2588\u2588\u2588", "x", "last"}, {"a", "", "z"}},
                        {0, 0, 0});
  EXPECT_EQ(t, "A    B  C\n\u2588\u2588\u2588  x  last\na       z\n");
  EXPECT_EQ(format_table({"N"}, {{"abcdef"}}, {4}), "N\nabc\u2026\n");
}

// -- history ---------------------------------------------------------------------

TEST(cli_output, the_windows_legend_matches_the_shades_of_the_map) {
  // One weekday row whose hours walk through every band.
  json hours = json::array();
  for (int d = 0; d < 7; ++d)
    hours.push_back(std::vector<json>(24, nullptr));
  std::vector<double> shares = {0.0, 0.1, 0.19, 0.2, 0.3, 0.39, 0.4, 0.5, 0.59,
                                0.6, 0.7, 0.79, 0.8, 0.9, 1.0};
  for (std::size_t h = 0; h < shares.size(); ++h)
    hours[1][h] = shares[h];
  json reply = {{"host", "nuc"},     {"timezone", "UTC"},
                {"days_observed", 28}, {"weeks", 4},
                {"ready", true},     {"days", {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}},
                {"hours", hours}};
  std::ostringstream out;
  print_quiet_windows(out, reply);
  auto text = out.str();
  // The Monday row's cells, one per hour.
  auto mon = text.substr(text.find("Mon  ") + 5);
  mon = mon.substr(0, mon.find('\n'));
  std::vector<std::string> cells;
  for (std::size_t i = 0; i < mon.size();) {
    auto len = (static_cast<unsigned char>(mon[i]) & 0x80) ? 3u : 1u;
    cells.push_back(mon.substr(i, len));
    i += len;
  }
  ASSERT_EQ(cells.size(), 24u) << mon;
  // The legend, read as "SHADE LO-HI%" pairs, says which shade each share gets.
  auto legend = text.substr(text.rfind("\n\n") + 2);
  struct band {
    std::string shade;
    double lo, hi;
  };
  std::vector<band> bands;
  std::istringstream words(legend);
  std::string shade, range;
  while (words >> shade >> range) {
    if (shade == "[" && range == "]") { // the blank shade, shown as [ ]
      shade = " ";
      words >> range;
    }
    if (range.back() != '%')
      continue;
    band b{shade, 0, 1.01};
    range.pop_back();
    if (range.rfind("<", 0) == 0)
      b.hi = std::stod(range.substr(1)) / 100;
    else if (range.rfind(">=", 0) == 0)
      b.lo = std::stod(range.substr(2)) / 100;
    else {
      b.lo = std::stod(range.substr(0, range.find('-'))) / 100;
      b.hi = std::stod(range.substr(range.find('-') + 1)) / 100;
    }
    bands.push_back(b);
  }
  ASSERT_EQ(bands.size(), 5u) << legend;
  for (std::size_t h = 0; h < shares.size(); ++h) {
    int matched = 0;
    for (auto& b : bands)
      if (shares[h] >= b.lo - 1e-9 && shares[h] < b.hi - 1e-9) {
        ++matched;
        EXPECT_EQ(cells[h], b.shade) << "share " << shares[h] << " in the legend's band "
                                     << b.lo << "-" << b.hi << "\n" << text;
      }
    EXPECT_EQ(matched, 1) << "share " << shares[h] << "\n" << legend;
  }
  EXPECT_EQ(cells[20], ".") << "an hour never observed";
}

TEST(cli_history, an_unknown_group_names_the_valid_ones) {
  for (auto ok : {"host", "quiet", "bus", "process:lulld", "worker:w1"})
    EXPECT_FALSE(check_history_group(ok)) << ok;
  auto bad = check_history_group("cpu");
  ASSERT_TRUE(bad);
  EXPECT_EQ(*bad, "--group 'cpu' is not a history group; valid groups: host, quiet, bus, "
                  "process:<name>, worker:<id>");
  EXPECT_TRUE(check_history_group("process:"));
}

TEST(cli_history, an_unknown_host_names_the_known_ones) {
  json status = {{"hosts", {{"a", json::object()}, {"b", json::object()}}}};
  EXPECT_EQ(unknown_host("nosuch", status), "no host 'nosuch'; known hosts: a, b");
  EXPECT_FALSE(unknown_host("a", status));
  EXPECT_FALSE(unknown_host("", status));
  EXPECT_EQ(unknown_host("x", {{"hosts", json::object()}}),
            "no host 'x'; no host has reported yet");
}

// -- status ----------------------------------------------------------------------

TEST(cli_output, a_hold_is_labelled_with_when_and_why_it_began_beside_the_state_now) {
  json s = {{"hosts",
             {{"nuc",
               {{"state", "NORMAL"}, {"quiet_score", 60}, {"used_units", 20},
                {"capacity_units", 60}, {"active_leases", 1},
                {"load_hold", "System is PANIC for 10.0s (Memory used 96%)"},
                {"load_hold_since", "2026-11-30T04:10:02Z"}}}}}};
  std::ostringstream out;
  print_status(out, s);
  EXPECT_NE(out.str().find("nuc             NORMAL  60"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("  nuc: leases suspended for the owner's load since "
                           "2026-11-30T04:10:02Z (then: System is PANIC for 10.0s (Memory used "
                           "96%)); now NORMAL, they resume once the host has been QUIET for "
                           "lease.resume_after\n"),
            std::string::npos)
    << out.str();
}

// -- completion: words as bash really splits them ---------------------------------

namespace {

/// The candidates of `_lull` for COMP_WORDS = `words` (the last the one
/// being completed), run in bash from `dir`.
std::vector<std::string> bash_candidates(const std::vector<std::string>& words,
                                         const std::string& dir) {
  CLI::App app;
  global_opts g;
  build(app, g);
  auto script_path = dir + "/lull-completion.bash";
  std::ofstream(script_path) << completion_script(app, "bash");
  std::string cmd = "cd '" + dir + "' && bash -c 'source lull-completion.bash; COMP_WORDS=(";
  for (auto& w : words)
    cmd += "\"" + w + "\" ";
  cmd += "); COMP_CWORD=" + std::to_string(words.size() - 1)
         + "; _lull; printf \"%s\\n\" \"${COMPREPLY[@]}\"'";
  std::vector<std::string> out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) {
      std::string line = buf;
      if (!line.empty() && line.back() == '\n')
        line.pop_back();
      if (!line.empty())
        out.push_back(line);
    }
    ::pclose(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace

TEST(cli_completion, payload_files_keep_their_at_however_bash_splits_the_word) {
  temp_dir t;
  t.write("job-a.json", "{}");
  t.write("job-b.json", "{}");
  t.write("other.txt", "");
  std::vector<std::string> both = {"@job-a.json", "@job-b.json"};
  // bash splits "@jo" into "@" and "jo" (@ is in COMP_WORDBREAKS) but
  // replaces "@jo" whole: the candidates carry the "@".
  EXPECT_EQ(bash_candidates({"lull", "submit", "--payload", "@", "jo"}, t.path), both);
  // Just "@" typed.
  auto all = bash_candidates({"lull", "submit", "--payload", "@"}, t.path);
  EXPECT_NE(std::find(all.begin(), all.end(), "@other.txt"), all.end());
  EXPECT_NE(std::find(all.begin(), all.end(), "@job-a.json"), all.end());
  // One word, as zsh's bashcompinit passes it.
  EXPECT_EQ(bash_candidates({"lull", "submit", "--type", "t", "--payload", "@jo"}, t.path), both);
  // A literal JSON payload: nothing to offer.
  EXPECT_TRUE(bash_candidates({"lull", "submit", "--payload", "{"}, t.path).empty());
}

TEST(cli_completion, options_follow_a_boolean_flag) {
  temp_dir t;
  auto after_json = bash_candidates({"lull", "status", "--json", "--"}, t.path);
  EXPECT_NE(std::find(after_json.begin(), after_json.end(), "--broker"), after_json.end());
  auto after_secure = bash_candidates({"lull", "jobs", "--secure", "--st"}, t.path);
  EXPECT_EQ(after_secure, std::vector<std::string>{"--state"});
  auto after_quiet = bash_candidates({"lull", "run", "-q", "--pri"}, t.path);
  EXPECT_EQ(after_quiet, std::vector<std::string>{"--priority"});
  // An option that takes a value still gets a value, not options.
  EXPECT_TRUE(bash_candidates({"lull", "jobs", "--by-worker", ""}, t.path).empty());
}
