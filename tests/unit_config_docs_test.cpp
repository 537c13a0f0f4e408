// The key definitions in src/config.cpp are the one description of lulld's
// configuration. What a user reads elsewhere is checked against them here:
// the shipped /etc/lull/lull.toml, the key tables of README.md and docs/,
// and lulld --help. A key added, renamed or given a new default without
// those following fails a test below.

#include "src/config.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace {

using namespace lull;

std::string read_source(const std::string& rel) {
  std::ifstream in(std::string(LULL_SOURCE_DIR) + "/" + rel);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const config_key* key_named(const std::string& name) {
  for (auto& k : config_keys())
    if (k.name == name)
      return &k;
  return nullptr;
}

/// The text between backquotes in a table cell, in order.
std::vector<std::string> code_spans(const std::string& cell) {
  std::vector<std::string> out;
  static const std::regex span("`([^`]+)`");
  for (auto it = std::sregex_iterator(cell.begin(), cell.end(), span); it != std::sregex_iterator();
       ++it)
    out.push_back((*it)[1]);
  return out;
}

std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::string cell;
  for (std::size_t i = 1; i < row.size(); ++i) {
    if (row[i] == '|' && row[i - 1] != '\\') {
      out.push_back(cell);
      cell.clear();
    } else {
      cell += row[i];
    }
  }
  return out;
}

/// A default as the docs write it: TOML without its quotes.
std::string unquoted(const std::string& toml_value) {
  if (toml_value.size() >= 2 && toml_value.front() == '"' && toml_value.back() == '"')
    return toml_value.substr(1, toml_value.size() - 2);
  return toml_value;
}

TEST(config_docs, the_shipped_lull_toml_names_every_key_with_its_default) {
  auto text = read_source("packaging/lull.toml");
  ASSERT_FALSE(text.empty());
  std::istringstream lines(text);
  std::string line, table;
  std::set<std::string> listed;
  int n = 0;
  static const std::regex table_line(R"(^#?\s*\[([a-z_]+)\]\s*$)");
  static const std::regex key_line(R"re(^#?("?)([a-z_][a-z0-9_.]*)\1 = (.+)$)re");
  while (std::getline(lines, line)) {
    ++n;
    std::smatch m;
    if (std::regex_match(line, m, table_line)) {
      table = m[1];
      continue;
    }
    if (!std::regex_match(line, m, key_line))
      continue;
    auto name = table.empty() ? std::string(m[2]) : table + "." + std::string(m[2]);
    const auto* k = key_named(name);
    ASSERT_NE(k, nullptr) << "packaging/lull.toml:" << n << " names '" << name
                          << "', which lulld does not know";
    listed.insert(name);
    // A fixed, non-empty default is written as it is; an empty or derived one
    // may be shown by an example.
    bool example_allowed = !k->default_derived.empty() || k->default_value == "\"\""
                           || k->default_value == "[]";
    if (!example_allowed) {
      EXPECT_EQ(std::string(m[3]), k->default_value)
        << "packaging/lull.toml:" << n << ": the default of " << name;
    }
  }
  for (auto& k : config_keys())
    EXPECT_TRUE(listed.count(k.name)) << "packaging/lull.toml does not list " << k.name;
}

TEST(config_docs, key_tables_in_readme_and_docs_agree_with_the_definitions) {
  std::vector<std::string> files = {"README.md"};
  for (auto& entry : std::filesystem::directory_iterator(std::string(LULL_SOURCE_DIR) + "/docs"))
    if (entry.path().extension() == ".md")
      files.push_back("docs/" + entry.path().filename().string());
  std::set<std::string> documented;
  int rows = 0;
  for (auto& file : files) {
    std::istringstream lines(read_source(file));
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
      ++n;
      if (line.rfind("| `", 0) != 0)
        continue;
      auto c = cells(line);
      if (c.size() < 2)
        continue;
      auto names = code_spans(c[0]);
      if (names.empty() || !std::all_of(names.begin(), names.end(),
                                        [](auto& s) { return key_named(s) != nullptr; }))
        continue; // not a row of keys
      // Columns: the key, then (in the longer tables) its variable and flag,
      // then its default.
      std::vector<std::string> envs, flags;
      std::size_t default_col = 1;
      auto all_start = [](const std::vector<std::string>& spans, const char* prefix) {
        return !spans.empty() && std::all_of(spans.begin(), spans.end(), [&](auto& s) {
          return s.rfind(prefix, 0) == 0;
        });
      };
      for (std::size_t i = 1; i < c.size(); ++i) {
        auto spans = code_spans(c[i]);
        if (all_start(spans, "LULL_"))
          envs = spans;
        else if (all_start(spans, "--"))
          flags = spans;
        else
          continue;
        default_col = i + 1;
      }
      auto defaults = default_col < c.size() ? code_spans(c[default_col]) : std::vector<std::string>{};
      auto at = file + ":" + std::to_string(n);
      ++rows;
      for (std::size_t i = 0; i < names.size(); ++i) {
        const auto* k = key_named(names[i]);
        documented.insert(k->name);
        if (!envs.empty()) {
          ASSERT_LT(i, envs.size()) << at << ": no variable for " << k->name;
          EXPECT_EQ(envs[i], k->env) << at;
        }
        if (!flags.empty()) {
          ASSERT_LT(i, flags.size()) << at << ": no flag for " << k->name;
          EXPECT_EQ(flags[i], k->flag) << at;
        }
        if (k->default_derived.empty() && defaults.size() == names.size()) {
          EXPECT_EQ(defaults[i], unquoted(k->default_value)) << at << ": the default of "
                                                             << k->name;
        }
      }
    }
  }
  EXPECT_GT(rows, 40);
  for (auto& k : config_keys())
    if (!k.internal) {
      EXPECT_TRUE(documented.count(k.name))
        << k.name << " is in no key table of README.md or docs/ (name, variable, flag, default)";
    }
}

TEST(config_docs, help_groups_every_user_key_with_a_placeholder_and_its_default) {
  auto help = lulld_help(false);
  auto all = lulld_help(true);
  for (auto& k : config_keys()) {
    // The flag starts a row: two spaces, the flag, then its placeholder or
    // the help column.
    std::regex row("\n  " + std::regex_replace(k.flag, std::regex("-"), "\\-") + "[ ,\n]");
    EXPECT_EQ(std::regex_search(help, row), !k.internal) << k.flag;
    EXPECT_TRUE(std::regex_search(all, row)) << k.flag;
    EXPECT_EQ(k.help.find("(default"), std::string::npos)
      << k.name << ": the help repeats the default, which --help prints from the definition";
    EXPECT_EQ(k.env, config_env_name(k.name));
    EXPECT_EQ(k.flag, config_flag_name(k.name));
  }
  EXPECT_NE(help.find("  --lease-ttl DURATION"), std::string::npos) << help;
  EXPECT_NE(help.find("[default: \"30s\"]"), std::string::npos);
  EXPECT_NE(help.find("  --ha-enabled [true|false]  "), std::string::npos) << "a boolean is a switch";
  EXPECT_NE(help.find("\nLease policy (lease.*):\n"), std::string::npos);
  std::istringstream lines(all);
  std::string line;
  while (std::getline(lines, line))
    EXPECT_LE(line.size(), 100u) << line;

  const char* argv[] = {"lulld", "--help"};
  auto out = load_config(2, argv, {});
  ASSERT_TRUE(std::holds_alternative<config_error>(out));
  EXPECT_EQ(std::get<config_error>(out).exit_code, 0);
  EXPECT_EQ(std::get<config_error>(out).message, help);
}

TEST(config_docs, a_boolean_flag_is_a_switch_that_also_takes_a_value) {
  const char* on[] = {"lulld", "--broker-secure", "--ha-enabled=false", "--quiet-bus-inputs", "true"};
  auto c = std::get<config>(load_config(5, on, {}));
  EXPECT_TRUE(c.security.secure);
  EXPECT_FALSE(c.ha.enabled);
  EXPECT_TRUE(c.quiet.bus_inputs);
  EXPECT_EQ(c.sources.at("ha.enabled"), "flag --ha-enabled");
  const char* bad[] = {"lulld", "--ha-enabled=maybe"};
  auto e = load_config(2, bad, {});
  ASSERT_TRUE(std::holds_alternative<config_error>(e));
  EXPECT_EQ(std::get<config_error>(e).exit_code, 2);
}

TEST(config_docs, broker_is_a_table_and_the_old_string_key_is_read_with_a_warning) {
  auto path = std::filesystem::temp_directory_path()
              / ("lull-config-docs-" + std::to_string(::getpid()) + ".toml");
  auto load = [&](const std::string& text, std::vector<const char*> extra = {},
                  std::map<std::string, std::string> env = {}) {
    std::ofstream(path) << text;
    std::vector<const char*> argv = {"lulld", "--config", path.c_str()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return load_config(static_cast<int>(argv.size()), argv.data(), env);
  };
  // The form that used to clash: a broker URI beside [broker] keys.
  auto table = load("[broker]\nuri = \"tcp://nuc.local:1883\"\nsecure = true\n");
  ASSERT_TRUE(std::holds_alternative<config>(table));
  EXPECT_EQ(std::get<config>(table).transport.uri, "tcp://nuc.local:1883");
  EXPECT_TRUE(std::get<config>(table).security.secure);
  EXPECT_TRUE(std::get<config>(table).warnings.empty());

  auto old = load("broker = \"tcp://old:1883\"\n");
  ASSERT_TRUE(std::holds_alternative<config>(old));
  auto& oc = std::get<config>(old);
  EXPECT_EQ(oc.transport.uri, "tcp://old:1883");
  ASSERT_EQ(oc.warnings.size(), 1u);
  EXPECT_NE(oc.warnings[0].find("old spelling of broker.uri"), std::string::npos)
    << oc.warnings[0];
  EXPECT_NE(oc.warnings[0].find(path.string() + ":1"), std::string::npos) << oc.warnings[0];

  // The short forms: --broker and LULL_BROKER, without a warning; the
  // variable's own name beats its short form.
  auto flag = load("", {"--broker", "tcp://flag:1883"});
  EXPECT_EQ(std::get<config>(flag).transport.uri, "tcp://flag:1883");
  auto env = load("", {}, {{"LULL_BROKER", "tcp://short:1883"}});
  EXPECT_EQ(std::get<config>(env).transport.uri, "tcp://short:1883");
  EXPECT_EQ(std::get<config>(env).sources.at("broker.uri"), "env LULL_BROKER");
  auto both = load("", {}, {{"LULL_BROKER", "tcp://short:1"}, {"LULL_BROKER_URI", "tcp://long:1"}});
  EXPECT_EQ(std::get<config>(both).transport.uri, "tcp://long:1");
  std::filesystem::remove(path);
}

} // namespace
