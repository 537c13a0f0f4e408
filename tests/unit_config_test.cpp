#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "src/config.hpp"
#include "src/lease/policy.hpp"

using namespace lull;

namespace {

/// The four thresholds of an input, for comparing with a literal.
std::array<double, 4> thresholds_of(const lull::input_thresholds& t) {
  return {t.floor, t.quiet, t.busy, t.panic};
}

struct args {
  std::vector<std::string> store;
  std::vector<const char*> ptrs;
  args(std::initializer_list<std::string> xs) : store(xs) {
    store.insert(store.begin(), "lulld");
    for (auto& s : store)
      ptrs.push_back(s.c_str());
  }
  int argc() const { return static_cast<int>(ptrs.size()); }
  const char* const* argv() const { return ptrs.data(); }
};

std::variant<config, config_error> load(args a, std::map<std::string, std::string> env = {}) {
  return load_config(a.argc(), a.argv(), env);
}

std::string write_file(const std::string& text) {
  char tmpl[] = "/tmp/lull-config-XXXXXX.toml";
  int fd = ::mkstemps(tmpl, 5);
  ::close(fd);
  std::ofstream(tmpl) << text;
  return tmpl;
}

} // namespace

TEST(config, defaults_need_nothing) {
  auto r = load({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  auto& c = std::get<config>(r);
  EXPECT_TRUE(c.transport.uri.empty()); // lulld starts its own broker
  EXPECT_FALSE(c.host_id.empty());
  EXPECT_DOUBLE_EQ(c.collect.interval_sec, 2.0);
  EXPECT_EQ(c.db, c.data_dir + "/lull.db");
  EXPECT_EQ(c.transport.client_id, "lulld-" + c.host_id);
}

TEST(config, flag_beats_env_beats_file_beats_default) {
  auto file = write_file("broker = \"tcp://file:1883\"\nhost_id = \"from-file\"\n"
                         "interval = \"5s\"\ndb = \"/tmp/file.db\"\n");
  std::map<std::string, std::string> env = {{"LULL_CONFIG", file},
                                            {"LULL_HOST_ID", "from-env"},
                                            {"LULL_INTERVAL", "3s"}};
  auto r = load({"--host-id", "from-flag"}, env);
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<config_error>(r).message;
  auto& c = std::get<config>(r);
  EXPECT_EQ(c.host_id, "from-flag");   // flag over env and file
  EXPECT_DOUBLE_EQ(c.collect.interval_sec, 3); // env over file
  EXPECT_EQ(c.transport.uri, "tcp://file:1883");
  EXPECT_EQ(c.db, "/tmp/file.db");
  EXPECT_EQ(c.config_file, file);
  ::unlink(file.c_str());
}

TEST(config, config_flag_names_the_file) {
  auto file = write_file("interval = 7\n");
  auto r = load({"--config", file});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_DOUBLE_EQ(std::get<config>(r).collect.interval_sec, 7);
  ::unlink(file.c_str());
}

TEST(config, bad_flag_value_names_key_source_and_expectation) {
  auto r = load({"--interval", "soon"});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  auto& e = std::get<config_error>(r);
  EXPECT_EQ(e.exit_code, 2);
  EXPECT_NE(e.message.find("interval"), std::string::npos);
  EXPECT_NE(e.message.find("flag --interval"), std::string::npos);
  EXPECT_NE(e.message.find("'soon'"), std::string::npos);
  EXPECT_NE(e.message.find("a duration"), std::string::npos) << e.message;
}

TEST(config, bad_env_value_is_reported_with_its_variable) {
  auto r = load({}, {{"LULL_BROKER", "localhost:1883"}});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_NE(std::get<config_error>(r).message.find("env LULL_BROKER"), std::string::npos);
  EXPECT_NE(std::get<config_error>(r).message.find("tcp://"), std::string::npos);
}

TEST(config, bad_host_id_and_port_are_refused) {
  auto r = load({"--host-id", "kitchen/pi"});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_NE(std::get<config_error>(r).message.find("host_id"), std::string::npos);
  r = load({"--local-broker-port", "70000"});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_NE(std::get<config_error>(r).message.find("an integer from 0 to 65535"),
            std::string::npos);
}

TEST(config, unknown_file_key_and_unreadable_file_are_errors) {
  auto file = write_file("intervall = \"2s\"\n");
  auto r = load({"--config", file});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_NE(std::get<config_error>(r).message.find("unknown key 'intervall'"),
            std::string::npos);
  ::unlink(file.c_str());
  r = load({"--config", "/nonexistent/lull.toml"});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_EQ(std::get<config_error>(r).exit_code, 2);
  EXPECT_NE(std::get<config_error>(r).message.find("/nonexistent/lull.toml"),
            std::string::npos);
}

TEST(config, bad_value_in_file_names_the_file) {
  auto file = write_file("interval = \"-1s\"\n");
  auto r = load({"--config", file});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_NE(std::get<config_error>(r).message.find("file " + file), std::string::npos);
  ::unlink(file.c_str());
}

TEST(config, unknown_flag_exits_2_and_help_exits_0) {
  auto r = load({"--frobnicate"});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_EQ(std::get<config_error>(r).exit_code, 2);
  r = load({"--help"});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_EQ(std::get<config_error>(r).exit_code, 0);
  EXPECT_NE(std::get<config_error>(r).message.find("--broker"), std::string::npos);
  EXPECT_NE(std::get<config_error>(r).message.find("LULL_BROKER"), std::string::npos);
}

TEST(config, durations_accept_common_units) {
  EXPECT_DOUBLE_EQ(*parse_duration_sec("2s"), 2);
  EXPECT_DOUBLE_EQ(*parse_duration_sec("500ms"), 0.5);
  EXPECT_DOUBLE_EQ(*parse_duration_sec("1.5m"), 90);
  EXPECT_DOUBLE_EQ(*parse_duration_sec("7d"), 7 * 86400);
  EXPECT_DOUBLE_EQ(*parse_duration_sec("10"), 10);
  EXPECT_FALSE(parse_duration_sec("2 weeks"));
  EXPECT_FALSE(parse_duration_sec(""));
  EXPECT_FALSE(parse_duration_sec("-3s"));
}

TEST(config, non_finite_numbers_are_refused_everywhere) {
  // strtod takes these; none is a duration, a number or a threshold.
  for (auto* v : {"nan", "NaN", "inf", "-inf", "1e999", "nans", "1e400m"}) {
    auto r = load({"--interval", v});
    ASSERT_TRUE(std::holds_alternative<config_error>(r)) << v;
    EXPECT_NE(std::get<config_error>(r).message.find("a duration"), std::string::npos) << v;
  }
  EXPECT_TRUE(std::holds_alternative<config_error>(load({"--lease-ttl", "nan"})));
  EXPECT_TRUE(std::holds_alternative<config_error>(load({"--lease-headroom", "nan"})));
  EXPECT_TRUE(std::holds_alternative<config_error>(load({"--quiet-cpu", "0,nan,75,95"})));
  EXPECT_TRUE(std::holds_alternative<config_error>(load({"--quiet-cpu", "0,30,75,inf"})));
  EXPECT_FALSE(parse_duration_sec("nan"));
  EXPECT_FALSE(parse_duration_sec("1e308d")); // finite, but not once scaled to seconds
  EXPECT_EQ(parse_duration_sec("2s"), 2.0);
}

TEST(config, data_dir_defaults_to_systemd_state_directory) {
  // lulld.service sets StateDirectory=lull; systemd passes it as STATE_DIRECTORY
  // (several directories are separated by ':'), and a data_dir in the file
  // still wins over it.
  ::setenv("STATE_DIRECTORY", "/var/lib/lull:/var/lib/other", 1);
  auto r = load({});
  auto file = write_file("data_dir = \"/srv/lull\"\n");
  auto from_file = load({}, {{"LULL_CONFIG", file}});
  ::unsetenv("STATE_DIRECTORY");
  std::remove(file.c_str());
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).data_dir, "/var/lib/lull");
  EXPECT_EQ(std::get<config>(r).db, "/var/lib/lull/lull.db");
  ASSERT_TRUE(std::holds_alternative<config>(from_file));
  EXPECT_EQ(std::get<config>(from_file).data_dir, "/srv/lull");
}

TEST(config, clamps_forgetting_and_high_users_have_defaults_and_take_lists) {
  auto r = load({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  auto& c = std::get<config>(r);
  EXPECT_DOUBLE_EQ(c.lease.max_retry_hint_sec, 3600);
  EXPECT_DOUBLE_EQ(c.limits.host_forget_after_sec, 86400);
  EXPECT_EQ(c.security.high_users, std::vector<std::string>{"lull-admin"});
  auto file = write_file("\"lease.high_users\" = [\"lull-admin\", \"ops\"]\n"
                         "\"lease.max_retry_hint\" = \"10m\"\n"
                         "[limits]\nhost_forget_after = \"2h\"\n");
  r = load({"--config", file});
  ::unlink(file.c_str());
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<config_error>(r).message;
  auto& f = std::get<config>(r);
  EXPECT_EQ(f.security.high_users, (std::vector<std::string>{"lull-admin", "ops"}));
  EXPECT_DOUBLE_EQ(f.lease.max_retry_hint_sec, 600);
  EXPECT_DOUBLE_EQ(f.limits.host_forget_after_sec, 7200);
  r = load({"--lease-high-users", "ops,bad/user"});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_NE(std::get<config_error>(r).message.find("lease.high_users"), std::string::npos);
}

TEST(config, max_reply_bytes_has_a_default_and_bounds_under_the_brokers_limit) {
  auto r = load({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).limits.max_reply_bytes, 262144u);
  auto file = write_file("[limits]\nmax_reply_bytes = 65536\n");
  r = load({"--config", file});
  ::unlink(file.c_str());
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<config_error>(r).message;
  EXPECT_EQ(std::get<config>(r).limits.max_reply_bytes, 65536u);
  r = load({}, {{"LULL_LIMITS_MAX_REPLY_BYTES", "4096"}});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).limits.max_reply_bytes, 4096u);
  for (auto bad : {"4095", "900001", "1048576", "0", "-1", "256k", ""}) {
    r = load({"--limits-max-reply-bytes", bad});
    ASSERT_TRUE(std::holds_alternative<config_error>(r)) << bad;
    auto& msg = std::get<config_error>(r).message;
    EXPECT_NE(msg.find("limits.max_reply_bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("from 4096 to 900000"), std::string::npos) << msg;
    EXPECT_NE(msg.find("message_size_limit"), std::string::npos) << msg;
  }
}

// The quotas (docs/security.md, "Budgets"): sizes take a binary suffix,
// and a value out of bounds names the key and what was expected.
TEST(config, quotas_have_defaults_sizes_and_bounds) {
  auto r = load({});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  auto& d = std::get<config>(r);
  EXPECT_EQ(d.limits.max_series_per_worker, 256u);
  EXPECT_EQ(d.limits.max_series, 20000u);
  EXPECT_EQ(d.queue.max_jobs_per_producer, 10000u);
  EXPECT_EQ(d.queue.max_bytes_per_producer, 64u << 20);
  EXPECT_EQ(d.queue.max_bytes, 256u << 20);
  EXPECT_DOUBLE_EQ(d.persist.quiet_streaks_retention_sec, 364 * 86400.0);

  auto file = write_file("[queue]\nmax_bytes = \"1GiB\"\nmax_jobs_per_producer = 50\n"
                         "[limits]\nmax_series_per_worker = 64\n");
  r = load({"--config", file, "--queue-max-bytes-per-producer", "512KiB"},
           {{"LULL_RETENTION_QUIET_STREAKS", "60d"}});
  std::remove(file.c_str());
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<config_error>(r).message;
  auto& c = std::get<config>(r);
  EXPECT_EQ(c.queue.max_bytes, std::size_t{1} << 30);
  EXPECT_EQ(c.queue.max_bytes_per_producer, 512u * 1024);
  EXPECT_EQ(c.queue.max_jobs_per_producer, 50u);
  EXPECT_EQ(c.limits.max_series_per_worker, 64u);
  EXPECT_DOUBLE_EQ(c.persist.quiet_streaks_retention_sec, 60 * 86400.0);

  for (auto [flag, value] : std::vector<std::pair<std::string, std::string>>{
         {"--queue-max-bytes", "12 apples"},
         {"--queue-max-bytes", "1KiB"},   // below 64 KiB
         {"--queue-max-bytes", "100GiB"}, // above 64 GiB
         {"--queue-max-bytes-per-producer", "-5"},
         {"--queue-max-jobs-per-producer", "0"},
         {"--limits-max-series-per-worker", "0"},
         {"--limits-max-series", "10"},
         {"--retention-quiet-streaks", "1d"}}) {
    auto e = load({flag, value});
    ASSERT_TRUE(std::holds_alternative<config_error>(e)) << flag << " " << value;
    auto& err = std::get<config_error>(e);
    EXPECT_EQ(err.exit_code, 2);
    EXPECT_NE(err.message.find(flag), std::string::npos) << err.message;
  }
}

namespace {

/// The lines of print_config() as key -> (value, source).
std::map<std::string, std::pair<std::string, std::string>> printed(const std::string& text) {
  std::map<std::string, std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    auto eq = line.find(" = ");
    auto hash = line.rfind("  # ");
    if (eq == std::string::npos || hash == std::string::npos)
      continue;
    auto key = line.substr(0, eq);
    if (key.front() == '"')
      key = key.substr(1, key.size() - 2);
    out[key] = {line.substr(eq + 3, hash - eq - 3), line.substr(hash + 4)};
  }
  return out;
}

} // namespace

TEST(config, print_config_names_every_key_and_its_source) {
  auto file = write_file("broker = \"tcp://file:1883\"\n\n[lease]\nttl = \"45s\"\n"
                         "windows = \"Mon-Fri 22:00-07:00\"\n");
  auto r = load({"--config", file, "--quiet-cpu", "0,20,70,90", "--print-config"},
                {{"LULL_PASSWORD", "hunter2"}, {"LULL_LEASE_HEADROOM", "0.25"}});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<config_error>(r).message;
  auto& c = std::get<config>(r);
  EXPECT_EQ(c.action, config::action_kind::print);
  auto text = print_config(c);
  ::unlink(file.c_str());
  auto lines = printed(text);
  EXPECT_EQ(lines.size(), config_keys().size()) << text;
  for (auto& k : config_keys())
    EXPECT_EQ(lines.count(k.name), 1u) << k.name << " missing from\n" << text;
  EXPECT_EQ(lines["broker.uri"], std::make_pair(std::string("\"tcp://file:1883\""), "file " + file + ":1"));
  EXPECT_EQ(lines["lease.ttl"], std::make_pair(std::string("\"45s\""), "file " + file + ":4"));
  EXPECT_EQ(lines["lease.windows"].second, "file " + file + ":5");
  EXPECT_EQ(lines["lease.headroom"],
            std::make_pair(std::string("0.25"), std::string("env LULL_LEASE_HEADROOM")));
  EXPECT_EQ(lines["quiet.cpu"],
            std::make_pair(std::string("\"0,20,70,90\""), std::string("flag --quiet-cpu")));
  EXPECT_EQ(lines["lease.max_ttl"], std::make_pair(std::string("\"10m\""), std::string("default")));
  EXPECT_EQ(lines["queue.max_bytes"].first, "\"256MiB\"");
  EXPECT_EQ(lines["lease.high_users"].first, "[\"lull-admin\"]");
  // The secret is never printed, only that it is set.
  EXPECT_EQ(lines["password"].first, "\"<set>\"");
  EXPECT_EQ(text.find("hunter2"), std::string::npos);
  // Dotted keys print unquoted, broker.* as lease.*.
  EXPECT_NE(text.find("\nbroker.secure = false"), std::string::npos) << text;
  EXPECT_NE(text.find("\nlease.ttl = \"45s\""), std::string::npos) << text;
}

TEST(config, printed_config_reads_back_as_the_same_config) {
  // Every kind of value away from its default, from each source; then the
  // printed text as the only source gives the same printed values.
  auto file = write_file("topic_prefix = \"site/a \\\"b\\\"\"\ninterval = 0.25\n"
                         "\"broker.secure\" = true\n"
                         "[lease]\nttl = \"90m\"\nheadroom = 0.123456789\n"
                         "high_users = [\"lull-admin\", \"ops\"]\n"
                         "[collectors]\nprocesses = [\"mosquitto\", \"/run/x.pid\"]\n");
  auto first = load({"--config", file, "--queue-max-bytes", "3MiB", "--quiet-temp",
                     "40.5,60,70,80", "--ha-enabled", "false", "--retention-raw", "36h"},
                    {{"LULL_QUEUE_MAX_BYTES_PER_PRODUCER", "100000"},
                     {"LULL_LOG_LEVEL", "debug"}, {"LULL_LEASE_UNITS_PER_CPU", "30"}});
  ::unlink(file.c_str());
  ASSERT_TRUE(std::holds_alternative<config>(first)) << std::get<config_error>(first).message;
  auto text = print_config(std::get<config>(first));
  auto back_file = write_file(text);
  auto second = load({"--config", back_file});
  ::unlink(back_file.c_str());
  ASSERT_TRUE(std::holds_alternative<config>(second))
    << std::get<config_error>(second).message << "\n" << text;
  auto& c = std::get<config>(second);
  EXPECT_EQ(c.topic_prefix, "site/a \"b\"");
  EXPECT_DOUBLE_EQ(c.collect.interval_sec, 0.25);
  EXPECT_TRUE(c.security.secure);
  EXPECT_DOUBLE_EQ(c.lease.ttl_sec, 5400);
  EXPECT_DOUBLE_EQ(c.lease.headroom, 0.123456789);
  EXPECT_EQ(c.security.high_users, (std::vector<std::string>{"lull-admin", "ops"}));
  EXPECT_EQ(c.collect.processes, (std::vector<std::string>{"mosquitto", "/run/x.pid"}));
  EXPECT_EQ(c.queue.max_bytes, 3u << 20);
  EXPECT_EQ(c.queue.max_bytes_per_producer, 100000u);
  EXPECT_EQ(thresholds_of(c.quiet.temp), (std::array<double, 4>{40.5, 60, 70, 80}));
  EXPECT_FALSE(c.ha.enabled);
  EXPECT_DOUBLE_EQ(c.persist.raw_retention_sec, 36 * 3600);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.lease.units_per_cpu, 30);
  // Value for value, the second print is the first.
  auto a = printed(text), b = printed(print_config(c));
  ASSERT_EQ(a.size(), b.size());
  for (auto& [key, value] : a)
    EXPECT_EQ(b[key].first, value.first) << key;
}

TEST(config, every_default_reads_back_as_itself) {
  // The man pages print each key's default as TOML: each must be a value the
  // key takes, and give the default back.
  auto defaults = load({});
  ASSERT_TRUE(std::holds_alternative<config>(defaults));
  auto lines = printed(print_config(std::get<config>(defaults)));
  for (auto& k : config_keys()) {
    EXPECT_FALSE(k.type.empty()) << k.name;
    EXPECT_FALSE(k.expects.empty()) << k.name;
    if (!k.default_derived.empty())
      continue; // worked out at start: the host name, the data directory
    EXPECT_EQ(lines[k.name].first, k.default_value) << k.name;
    auto file = write_file((k.name.find('.') != std::string::npos ? "\"" + k.name + "\"" : k.name)
                           + " = " + k.default_value + "\n");
    auto r = load({"--config", file});
    ::unlink(file.c_str());
    ASSERT_TRUE(std::holds_alternative<config>(r))
      << k.name << " = " << k.default_value << ": " << std::get<config_error>(r).message;
    EXPECT_EQ(printed(print_config(std::get<config>(r)))[k.name].first, k.default_value)
      << k.name;
  }
}

TEST(config, unknown_key_names_its_line_and_the_likely_key) {
  auto file = write_file("# lulld\nbroker = \"tcp://a:1883\"\n[lease]\ntll = \"30s\"\n");
  auto r = load({"--config", file});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  auto& e = std::get<config_error>(r);
  EXPECT_EQ(e.exit_code, 2);
  EXPECT_NE(e.message.find("unknown key 'lease.tll' in " + file + ":4"), std::string::npos)
    << e.message;
  EXPECT_NE(e.message.find("did you mean 'lease.ttl'?"), std::string::npos) << e.message;
  ::unlink(file.c_str());
  // Nothing close: no guess.
  file = write_file("frobnicator = 1\n");
  r = load({"--config", file});
  ::unlink(file.c_str());
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_NE(std::get<config_error>(r).message.find("unknown key 'frobnicator'"),
            std::string::npos);
  EXPECT_EQ(std::get<config_error>(r).message.find("did you mean"), std::string::npos);
}

TEST(config, bad_value_in_file_names_its_line_and_an_array_is_no_string) {
  auto file = write_file("host_id = \"pi\"\n\n\nlocal_broker_port = 99999\n");
  auto r = load({"--config", file});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_NE(std::get<config_error>(r).message.find("local_broker_port (from file " + file + ":4)"),
            std::string::npos)
    << std::get<config_error>(r).message;
  ::unlink(file.c_str());
  file = write_file("username = [\"a\", \"b\"]\n");
  r = load({"--config", file});
  ::unlink(file.c_str());
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_NE(std::get<config_error>(r).message.find("username (from file " + file
                                                   + ":1): got an array"),
            std::string::npos)
    << std::get<config_error>(r).message;
}

TEST(config, check_and_print_are_actions_and_exclude_each_other) {
  auto r = load({"--check-config"});
  ASSERT_TRUE(std::holds_alternative<config>(r));
  EXPECT_EQ(std::get<config>(r).action, config::action_kind::check);
  EXPECT_EQ(std::get<config>(load({})).action, config::action_kind::run);
  r = load({"--check-config", "--print-config"});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_EQ(std::get<config_error>(r).exit_code, 2);
  // A bad value fails the check as it fails a start.
  r = load({"--check-config", "--lease-ttl", "forever"});
  ASSERT_TRUE(std::holds_alternative<config_error>(r));
  EXPECT_EQ(std::get<config_error>(r).exit_code, 2);
  auto help = std::get<config_error>(load({"--help"})).message;
  EXPECT_NE(help.find("--check-config"), std::string::npos);
  EXPECT_NE(help.find("--print-config"), std::string::npos);
}

TEST(config, mqtt_version_sets_the_transport_and_prints_back) {
  auto d = std::get<config>(load({}));
  EXPECT_TRUE(d.transport.prefer_v5);
  EXPECT_TRUE(d.transport.fallback);
  EXPECT_EQ(d.transport.max_packet_size, 256 * 1024); // lulld's own, not transport_options'
  EXPECT_NE(print_config(d).find("mqtt_version = \"auto\"  # default"), std::string::npos);
  auto five = std::get<config>(load({"--mqtt-version", "5"}));
  EXPECT_TRUE(five.transport.prefer_v5);
  EXPECT_FALSE(five.transport.fallback);
  EXPECT_NE(print_config(five).find("mqtt_version = \"5\"  # flag --mqtt-version"),
            std::string::npos)
    << print_config(five);
  auto old = std::get<config>(load({}, {{"LULL_MQTT_VERSION", "3.1.1"}}));
  EXPECT_EQ(mqtt_version_name(old.transport), "3.1.1");
  auto bad = load({"--mqtt-version", "4"});
  ASSERT_TRUE(std::holds_alternative<config_error>(bad));
  EXPECT_NE(std::get<config_error>(bad).message.find(
              "bad value for mqtt_version (from flag --mqtt-version): got '4', expected auto, 5 "
              "or 3.1.1"),
            std::string::npos)
    << std::get<config_error>(bad).message;
}

// Each section's keys land in the settings struct its components take whole
// (lulld hands cfg.collect, cfg.limits, ... to the actors as they are).
TEST(config, keys_land_in_the_settings_structs_components_take) {
  auto file = write_file("[persist]\nflush_interval = \"10s\"\n"
                         "[retention]\nraw = \"2d\"\n"
                         "[ha]\nprefix = \"ha2\"\nenabled = false\n");
  auto r = load({"--config", file, "--collectors-jitter", "0.25", "--limits-max-hosts", "12",
                 "--mqtt-version", "3.1.1", "--broker-uri", "ssl://nuc:8883",
                 "--broker-ca-file", "/etc/ca.pem", "--proc-root", "/fixture"},
                {{"LULL_LIMITS_MAX_PAYLOAD", "4096"}, {"LULL_COLLECTORS_PROCESSES", "mosquitto"},
                 {"LULL_INTERVAL", "5s"}, {"LULL_BROKER_MAX_PACKET_SIZE", "65536"}});
  ::unlink(file.c_str());
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<config_error>(r).message;
  auto& c = std::get<config>(r);

  const collector_settings& collect = c.collect;
  EXPECT_DOUBLE_EQ(collect.jitter, 0.25);
  EXPECT_DOUBLE_EQ(collect.interval_sec, 5);
  EXPECT_EQ(collect.processes, std::vector<std::string>{"mosquitto"});
  EXPECT_EQ(collect.proc_root, "/fixture");
  EXPECT_DOUBLE_EQ(collect.window_sec, 3600); // untouched keys keep their defaults

  const limits_settings& limits = c.limits;
  EXPECT_EQ(limits.max_hosts, 12u);
  EXPECT_EQ(limits.max_payload, 4096u);
  EXPECT_EQ(limits.max_reply_bytes, 262144u);

  const persist_settings& persist = c.persist;
  EXPECT_DOUBLE_EQ(persist.flush_interval_sec, 10);
  EXPECT_DOUBLE_EQ(persist.raw_retention_sec, 2 * 86400);
  EXPECT_EQ(persist.queue_bound, 200000u);

  const ha_settings& ha = c.ha;
  EXPECT_EQ(ha.prefix, "ha2");
  EXPECT_FALSE(ha.enabled);

  const transport_options& transport = c.transport;
  EXPECT_EQ(transport.uri, "ssl://nuc:8883");
  EXPECT_EQ(transport.ca_file, "/etc/ca.pem");
  EXPECT_EQ(transport.client_id, "lulld-" + c.host_id);
  EXPECT_EQ(transport.max_packet_size, 65536);
  EXPECT_FALSE(transport.prefer_v5); // 3.1.1: no v5, so nothing to fall back from
  EXPECT_FALSE(transport.fallback);
}

// The three security keys reach the lease service, the queue and the
// history server as one struct, and its rule is the one both enforce.
TEST(config, security_keys_land_in_one_struct_with_the_high_rule) {
  auto r = load({"--broker-secure", "--broker-admin-user", "root-ops"},
                {{"LULL_LEASE_HIGH_USERS", "ops,ci"}});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<config_error>(r).message;
  const security_settings& s = std::get<config>(r).security;
  EXPECT_TRUE(s.secure);
  EXPECT_EQ(s.admin_user, "root-ops");
  EXPECT_EQ(s.high_users, (std::vector<std::string>{"ops", "ci"}));
  EXPECT_TRUE(s.may_ask_high("ci"));
  EXPECT_FALSE(s.may_ask_high("lull-admin")); // not in the list given
  EXPECT_EQ(s.high_denied("bob", "submit a HIGH job"),
            "user 'bob' may not submit a HIGH job: HIGH priority is for lease.high_users (ops, ci)");
  security_settings open; // open mode: no users to tell apart
  EXPECT_TRUE(open.may_ask_high("anyone"));
}

// The lease table's policy: lease.* as configured, with what it shares with
// the quiet assessor and the limits.
TEST(config, effective_lease_policy_takes_the_shared_keys) {
  auto r = load({"--lease-ttl", "1000s", "--lease-panic-cooldown", "2m", "--quiet-cooldown",
                 "10m", "--quiet-stale-after", "45s", "--limits-max-hosts", "12",
                 "--limits-host-forget-after", "2h"});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << std::get<config_error>(r).message;
  auto& c = std::get<config>(r);
  auto p = effective_lease_policy(c.lease, c.quiet, c.limits);
  EXPECT_DOUBLE_EQ(p.ttl_sec, 1000);
  EXPECT_DOUBLE_EQ(p.max_ttl_sec, 1000); // widened to hold lease.ttl
  EXPECT_DOUBLE_EQ(p.min_ttl_sec, c.lease.min_ttl_sec);
  EXPECT_DOUBLE_EQ(p.stale_after_sec, 45);
  EXPECT_DOUBLE_EQ(p.max_cooldown_sec, 600); // the larger of the two cooldowns
  EXPECT_EQ(p.max_hosts, 12u);
  EXPECT_DOUBLE_EQ(p.host_forget_after_sec, 7200);
  // A short lease.ttl narrows min_ttl instead.
  auto s = std::get<config>(load({"--lease-ttl", "2s"}));
  auto q = effective_lease_policy(s.lease, s.quiet, s.limits);
  EXPECT_DOUBLE_EQ(q.min_ttl_sec, 2);
  EXPECT_DOUBLE_EQ(q.max_cooldown_sec,
                   std::max(s.lease.panic_cooldown_sec, s.quiet.cooldown_sec));
}
