// lull's man pages and completion scripts as the package ships them:
// lull_docgen writes them, man(1) renders them without a warning, and they
// name every configuration key and every lull command.

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/cli/cli.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/man.hpp"
#include "src/config.hpp"
#include "src/process.hpp"

using namespace lull;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct ran {
  int code = -1;
  std::string out, err;
};

/// Runs `argv` to completion, its stdout and stderr apart.
ran run(std::vector<std::string> argv, const std::string& dir) {
  spawn_options o;
  o.argv = std::move(argv);
  o.stdin_path = "/dev/null";
  o.stdout_path = dir + "/run.out";
  o.stderr_path = dir + "/run.err";
  ran r;
  if (auto pid = spawn(o)) {
    if (auto st = wait_for_exit(*pid, std::chrono::seconds(60)))
      r.code = exit_code_of(*st);
    else
      ::kill(*pid, SIGKILL), wait_for_exit(*pid, std::chrono::seconds(5));
  }
  r.out = slurp(o.stdout_path);
  r.err = slurp(o.stderr_path);
  ::unlink(o.stdout_path.c_str()); // the next run's output starts afresh
  ::unlink(o.stderr_path.c_str());
  return r;
}

/// A directory of this test's own, removed with what is in it.
struct scratch {
  std::string path;
  scratch() {
    char tmpl[] = "/tmp/lull-man-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

/// The page as a reader sees it: man's text, dashes as ASCII.
std::string rendered(const std::string& page, const std::string& dir) {
  auto r = run({"/bin/sh", "-c",
                "LC_ALL=C.UTF-8 MANWIDTH=200 man -E UTF-8 -l '" + page + "' | col -b"},
               dir);
  EXPECT_EQ(r.code, 0) << r.err;
  std::string text;
  for (std::size_t i = 0; i < r.out.size(); ++i) {
    // U+2010 HYPHEN and U+2212 MINUS SIGN read as '-'.
    if (r.out.compare(i, 3, "\xe2\x80\x90") == 0 || r.out.compare(i, 3, "\xe2\x88\x92") == 0) {
      text += '-';
      i += 2;
    } else if (r.out[i] == ' ' && !text.empty() && text.back() == ' ' && i > 0
               && text.find_last_not_of(' ') != std::string::npos
               && text[text.find_last_not_of(' ')] != '\n') {
      continue; // spaces between words, however wide, as one
    } else {
      text += r.out[i];
    }
  }
  return text;
}

class man_pages_test : public ::testing::Test {
protected:
  void SetUp() override {
    auto r = run({LULL_BINARY_DIR "/src/lull_docgen", out_.path}, out_.path);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  std::string page(const std::string& file) const { return out_.path + "/man/" + file; }
  scratch out_;
};

} // namespace

TEST_F(man_pages_test, render_without_warnings) {
  for (auto* file : {"lull.1", "lulld.8", "lull.toml.5"}) {
    ASSERT_TRUE(std::filesystem::exists(page(file))) << file;
    // lintian's check: groff's warnings on stderr, nothing else.
    auto r = run({"/bin/sh", "-c",
                  "LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 "
                  "-Z '" + page(file) + "' >/dev/null"},
                 out_.path);
    EXPECT_EQ(r.code, 0) << file;
    EXPECT_EQ(r.err, "") << file;
    auto text = rendered(page(file), out_.path);
    for (auto* section : {"NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "ENVIRONMENT",
                          "EXIT STATUS", "SEE ALSO"})
      EXPECT_NE(text.find("\n" + std::string(section) + "\n"), std::string::npos)
        << file << " has no " << section;
  }
}

TEST_F(man_pages_test, lulld_and_lull_toml_name_every_key) {
  auto lulld = rendered(page("lulld.8"), out_.path);
  auto toml = rendered(page("lull.toml.5"), out_.path);
  ASSERT_GT(config_keys().size(), 50u);
  for (auto& k : config_keys()) {
    // lulld(8): the flag with its key and variable; lull.toml(5): the key.
    EXPECT_NE(lulld.find("\n       " + k.flag + " "), std::string::npos) << k.flag;
    EXPECT_NE(lulld.find("Key " + k.name + " in lull.toml(5); environment " + k.env),
              std::string::npos)
      << k.name;
    EXPECT_NE(toml.find("\n       " + k.name + " = " + k.type), std::string::npos) << k.name;
    EXPECT_NE(toml.find("Environment " + k.env + ", flag " + k.flag), std::string::npos)
      << k.name;
    if (k.default_derived.empty()) {
      EXPECT_NE(toml.find("Default: " + k.default_value + "."), std::string::npos) << k.name;
    }
  }
  for (auto& f : lulld_action_flags())
    EXPECT_NE(lulld.find("\n       " + f.flag), std::string::npos) << f.flag;
  EXPECT_NE(toml.find("/etc/lull/lull.toml"), std::string::npos);
  EXPECT_NE(lulld.find("/var/lib/lull"), std::string::npos);
}

TEST_F(man_pages_test, lull_names_every_command_and_option) {
  CLI::App app;
  cli::global_opts g;
  auto commands = cli::build(app, g);
  auto text = rendered(page("lull.1"), out_.path);
  ASSERT_GT(commands.size(), 5u);
  for (auto& c : commands) {
    auto name = c.sub->get_name();
    EXPECT_NE(text.find("\n   lull " + name + "\n"), std::string::npos) << name;
    for (auto* o : c.sub->get_options([](const CLI::Option* o) { return o->nonpositional(); }))
      for (auto& l : o->get_lnames())
        EXPECT_NE(text.find("--" + l), std::string::npos) << name << " --" << l;
  }
  auto options = text.substr(text.find("\nOPTIONS\n"));
  for (auto* o : app.get_options([](const CLI::Option* o) { return o->nonpositional(); }))
    for (auto& l : o->get_lnames())
      EXPECT_NE(options.find("--" + l), std::string::npos) << "--" << l;
  EXPECT_NE(text.find("LULL_BROKER"), std::string::npos);
}

TEST_F(man_pages_test, completions_are_what_lull_prints) {
  for (auto [shell, file] : {std::pair{"bash", "lull"}, {"zsh", "_lull"}}) {
    auto r = run({LULL_BINARY_DIR "/src/lull", "completion", shell}, out_.path);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(slurp(out_.path + "/completions/" + file), r.out) << shell;
  }
  // bash loads it and completes a command from its first letters.
  auto r = run({"bash", "-c",
                "source '" + out_.path + "/completions/lull'; COMP_WORDS=(lull su); "
                "COMP_CWORD=1; _lull; echo \"${COMPREPLY[*]}\""},
               out_.path);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "submit\n");
}

TEST(roff, text_escapes_what_roff_would_read) {
  EXPECT_EQ(cli::roff_text("--lease-ttl"), "\\-\\-lease\\-ttl");
  EXPECT_EQ(cli::roff_text("C:\\dir"), "C:\\edir");
  EXPECT_EQ(cli::roff_text("a\nb"), "a b");
}
