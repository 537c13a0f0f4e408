// The collectors', quiet assessor's and Home Assistant's config keys: file,
// environment and flag, and bad values named with what was expected.

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "src/config.hpp"

using namespace lull;

namespace {

/// The four thresholds of an input, for comparing with a literal.
std::array<double, 4> thresholds_of(const lull::input_thresholds& t) {
  return {t.floor, t.quiet, t.busy, t.panic};
}

std::variant<config, config_error> load(std::vector<std::string> argv,
                                        std::map<std::string, std::string> env = {}) {
  argv.insert(argv.begin(), "lulld");
  std::vector<const char*> ptrs;
  for (auto& s : argv)
    ptrs.push_back(s.c_str());
  return load_config(static_cast<int>(ptrs.size()), ptrs.data(), env);
}

std::string write_file(const std::string& text) {
  char tmpl[] = "/tmp/lull-collector-config-XXXXXX.toml";
  int fd = ::mkstemps(tmpl, 5);
  ::close(fd);
  std::ofstream(tmpl) << text;
  return tmpl;
}

std::string error_of(const std::variant<config, config_error>& r) {
  auto* e = std::get_if<config_error>(&r);
  return e ? e->message : std::string{};
}

} // namespace

TEST(collector_config, defaults) {
  auto r = load({"--data-dir", "/var/lib/lull"});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << error_of(r);
  auto& c = std::get<config>(r);
  EXPECT_EQ(c.roles, "all");
  EXPECT_TRUE(c.runs_collectors());
  EXPECT_TRUE(c.runs_assessor());
  EXPECT_EQ(c.collect.process_interval_sec, 2.0);
  EXPECT_EQ(c.collect.dir_interval_sec, 120.0);
  EXPECT_EQ(c.collect.window_sec, 3600.0);
  EXPECT_EQ(c.collect.mounts, (std::vector<std::string>{"/", "/var/lib/lull"}));
  EXPECT_EQ(c.collect.dirs, std::vector<std::string>{"/var/lib/lull"});
  EXPECT_EQ(c.quiet.temp.panic, 85.0);
  EXPECT_TRUE(c.ha.enabled);
  EXPECT_EQ(c.ha.prefix, "homeassistant");
}

TEST(collector_config, toml_tables_env_and_flags) {
  auto file = write_file(R"(
roles = "collectors"
[collectors]
processes = ["mosquitto", "/run/node-red.pid"]
process_interval = "5s"
jitter = 0.2
[quiet]
cpu = "0, 20, 60, 90"
cooldown = "10m"
[ha]
prefix = "ha"
enabled = false
)");
  auto r = load({"--config", file, "--quiet-hysteresis", "3"},
                {{"LULL_COLLECTORS_PROCESS_INTERVAL", "4s"}});
  ASSERT_TRUE(std::holds_alternative<config>(r)) << error_of(r);
  auto& c = std::get<config>(r);
  EXPECT_EQ(c.roles, "collectors");
  EXPECT_FALSE(c.runs_assessor());
  EXPECT_FALSE(c.runs_scheduler());
  auto two = load({"--roles", "collectors, scheduler"});
  ASSERT_TRUE(std::holds_alternative<config>(two)) << error_of(two);
  EXPECT_TRUE(std::get<config>(two).runs_collectors());
  EXPECT_TRUE(std::get<config>(two).runs_scheduler());
  EXPECT_FALSE(std::get<config>(two).runs_assessor());
  EXPECT_EQ(c.collect.processes, (std::vector<std::string>{"mosquitto", "/run/node-red.pid"}));
  EXPECT_EQ(c.collect.process_interval_sec, 4.0); // env over file
  EXPECT_EQ(c.collect.jitter, 0.2);
  EXPECT_EQ(thresholds_of(c.quiet.cpu), (std::array<double, 4>{0, 20, 60, 90}));
  EXPECT_EQ(c.quiet.cooldown_sec, 600.0);
  EXPECT_EQ(c.quiet.hysteresis, 3.0); // flag
  EXPECT_EQ(c.ha.prefix, "ha");
  EXPECT_FALSE(c.ha.enabled);
  ::unlink(file.c_str());
}

TEST(collector_config, bad_values_name_the_key_and_what_was_expected) {
  struct row {
    std::vector<std::string> argv;
    const char* part;
  };
  for (auto& [argv, part] : std::vector<row>{
         {{"--roles", "everything"}, "roles (from flag --roles): got 'everything', expected all, or"},
         {{"--quiet-cpu", "0,80,50,95"}, "expected four rising numbers"},
         {{"--quiet-disk-free", "3,10,20,50"}, "expected four falling numbers"},
         {{"--quiet-temp", "45,65,75"}, "floor,quiet,busy,panic"},
         {{"--collectors-jitter", "0.9"}, "a number from 0 to 0.5"},
         {{"--ha-enabled", "maybe"}, "true or false"},
         {{"--ha-prefix", "home/+"}, "without '+'"},
         {{"--collectors-process-interval", "soon"}, "collectors.process_interval"}}) {
    auto r = load(argv);
    ASSERT_TRUE(std::holds_alternative<config_error>(r)) << argv[0];
    EXPECT_EQ(std::get<config_error>(r).exit_code, 2);
    EXPECT_NE(error_of(r).find(part), std::string::npos) << error_of(r);
  }
}
