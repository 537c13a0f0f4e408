// The lull command line without a broker: what each command parses (global
// flags before or after the command) and what it prints from a reply.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "src/cli/commands.hpp"

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
                                             "cancel", "work", "history", "watch",
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
  EXPECT_NE(out.str().find("j-abc               thumbs        queued    normal     10    0/3  -"
                           "             2026-11-30T22:00:00Z\n"),
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
  EXPECT_EQ(complete_in_bash("lull submit --priority "), "high normal low background");
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
