// lull's log lines in both formats: timestamped for a terminal or a file,
// and with a syslog priority prefix (and no timestamp) when stderr is the
// journal stream systemd names in JOURNAL_STREAM.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include "src/log.hpp"

using lull::log::log_format;

namespace {

/// JOURNAL_STREAM's value for the file open on `fd`: "DEVICE:INODE".
std::string dev_ino_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

/// A pipe whose ends close with the test.
struct pipe_fds {
  int fd[2] = {-1, -1};
  pipe_fds() { EXPECT_EQ(::pipe2(fd, O_CLOEXEC), 0); }
  ~pipe_fds() {
    for (int f : fd)
      if (f >= 0)
        ::close(f);
  }
};

/// Every line the logger writes at trace level, one call per level.
std::string lines_in(log_format format) {
  std::ostringstream out;
  lull::log::init("trace", format, std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  lull::log::error("unit: e");
  lull::log::warn("unit: w");
  lull::log::info("unit: i");
  lull::log::debug("unit: d");
  lull::log::trace("unit: t");
  spdlog::default_logger()->flush();
  return out.str();
}

/// Runs `fn` with stderr (fd 2) sent into a pipe and JOURNAL_STREAM set to
/// `journal_stream` (unset when null); what it wrote to stderr.
template <class F>
std::string stderr_of(const char* journal_stream_for, F fn) {
  pipe_fds p;
  std::fflush(stderr);
  int saved = ::dup(2);
  ::dup2(p.fd[1], 2);
  if (journal_stream_for && std::string(journal_stream_for) == "this pipe")
    ::setenv("JOURNAL_STREAM", dev_ino_of(2).c_str(), 1);
  else if (journal_stream_for)
    ::setenv("JOURNAL_STREAM", journal_stream_for, 1);
  else
    ::unsetenv("JOURNAL_STREAM");
  fn();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::unsetenv("JOURNAL_STREAM");
  ::close(p.fd[1]);
  p.fd[1] = -1;
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p.fd[0], buf, sizeof buf)) > 0)
    out.append(buf, static_cast<std::size_t>(n));
  return out;
}

} // namespace

TEST(log_format_for, journal_only_when_journal_stream_names_this_very_file) {
  pipe_fds journal, other;
  auto id = dev_ino_of(journal.fd[1]);
  EXPECT_EQ(lull::log::format_for(id.c_str(), journal.fd[1]), log_format::journal);
  // Inherited by a process whose stderr was then redirected elsewhere.
  EXPECT_EQ(lull::log::format_for(id.c_str(), other.fd[1]), log_format::plain);
  EXPECT_EQ(lull::log::format_for(nullptr, journal.fd[1]), log_format::plain);
  for (auto bad : {"", ":", "12", "12:", ":34", "x:1", "1:2x", "-1:2", "1:2:3", " 1:2"})
    EXPECT_EQ(lull::log::format_for(bad, journal.fd[1]), log_format::plain) << bad;
  EXPECT_EQ(lull::log::format_for(id.c_str(), -1), log_format::plain);
}

TEST(log_lines, journal_lines_carry_the_syslog_priority_and_no_timestamp) {
  EXPECT_EQ(lines_in(log_format::journal),
            "<3>unit: e\n<4>unit: w\n<6>unit: i\n<7>unit: d\n<7>unit: t\n");
}

TEST(log_lines, plain_lines_keep_the_timestamp_and_level_name) {
  auto out = lines_in(log_format::plain);
  std::regex line(
    R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (error|warning|info |debug|trace) unit: [ewidt])");
  std::istringstream in(out);
  std::string l;
  int n = 0;
  const char* levels[] = {"error", "warning", "info ", "debug", "trace"};
  while (std::getline(in, l)) {
    ASSERT_LT(n, 5) << out;
    EXPECT_TRUE(std::regex_match(l, line)) << l;
    EXPECT_NE(l.find(levels[n]), std::string::npos) << l;
    ++n;
  }
  EXPECT_EQ(n, 5) << out;
  EXPECT_EQ(out.find('<'), std::string::npos) << out;
}

TEST(log_lines, init_reads_journal_stream_and_stderr) {
  auto journal = stderr_of("this pipe", [] {
    lull::log::init("info");
    lull::log::warn("lulld: broker gone");
    spdlog::default_logger()->flush();
  });
  EXPECT_EQ(journal, "<4>lulld: broker gone\n");
  // Another file's numbers: stderr is not the journal, lines stay as they were.
  auto plain = stderr_of("1:1", [] {
    lull::log::init("info");
    lull::log::warn("lulld: broker gone");
    spdlog::default_logger()->flush();
  });
  EXPECT_TRUE(std::regex_match(
    plain, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} warning lulld: broker gone\n)")))
    << plain;
  auto unset = stderr_of(nullptr, [] {
    lull::log::init("info");
    lull::log::info("lulld: started");
    spdlog::default_logger()->flush();
  });
  EXPECT_NE(unset.find(" info  lulld: started\n"), std::string::npos) << unset;
  EXPECT_EQ(unset.find("<6>"), std::string::npos) << unset;
}
