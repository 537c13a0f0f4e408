#include "src/log.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace lull::log {

namespace {

/// Rate limiting in the manner of journald, per component (the text before
/// a line's first ": ", as every lull line starts "component: ..."): at most
/// `burst` lines in each `interval`; past that, lines are counted, and the
/// first line after the interval (or the next periodic flush) says
/// "component: suppressed N messages in the last 10 s". A flood of bad
/// input costs a bounded log, whatever it is made of.
class rate_limited_sink final : public spdlog::sinks::base_sink<std::mutex> {
public:
  rate_limited_sink(spdlog::sink_ptr inner, std::size_t burst, std::chrono::seconds interval)
    : inner_(std::move(inner)), burst_(burst), interval_(interval) {}

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    auto now = std::chrono::steady_clock::now();
    report_ended(now, msg);
    std::string_view text(msg.payload.data(), msg.payload.size());
    auto colon = text.find(": ");
    auto key = std::string(text.substr(0, colon == text.npos || colon > 40 ? 0 : colon));
    auto it = state_.find(key);
    if (it == state_.end()) {
      if (state_.size() >= 64)
        key.clear(); // every other line shares one budget
      it = state_.try_emplace(key).first;
    }
    auto& st = it->second;
    if (st.lines == 0 && st.suppressed == 0)
      st.since = now;
    if (st.lines < burst_) {
      ++st.lines;
      inner_->log(msg);
      return;
    }
    ++st.suppressed;
  }

  void set_pattern_(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter_(std::unique_ptr<spdlog::formatter> f) override {
    inner_->set_formatter(std::move(f));
  }

  void flush_() override {
    report_ended(std::chrono::steady_clock::now(), std::nullopt);
    inner_->flush();
  }

private:
  struct window {
    std::chrono::steady_clock::time_point since{};
    std::size_t lines = 0;
    std::uint64_t suppressed = 0;
  };

  /// Ends every window older than the interval, with a line for each that
  /// suppressed something.
  void report_ended(std::chrono::steady_clock::time_point now,
                    std::optional<std::reference_wrapper<const spdlog::details::log_msg>> like) {
    for (auto& [key, st] : state_) {
      if (st.lines == 0 || now - st.since < interval_)
        continue;
      if (st.suppressed > 0) {
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - st.since).count();
        auto text = (key.empty() ? std::string("lulld") : key) + ": suppressed "
                    + std::to_string(st.suppressed) + " messages in the last "
                    + std::to_string(secs) + " s";
        spdlog::details::log_msg note(like ? like->get().logger_name : spdlog::string_view_t("lull"),
                                      spdlog::level::warn, text);
        inner_->log(note);
      }
      st = window{};
    }
  }

  spdlog::sink_ptr inner_;
  std::size_t burst_;
  std::chrono::steady_clock::duration interval_;
  std::map<std::string, window> state_;
};

/// `%*`: the syslog priority of a line's level, as "<N>".
class syslog_priority final : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    using spdlog::level::level_enum;
    auto l = msg.level;
    const char* prefix = l == level_enum::critical ? "<2>"
                         : l == level_enum::err    ? "<3>"
                         : l == level_enum::warn   ? "<4>"
                         : l == level_enum::info   ? "<6>"
                                                   : "<7>"; // debug, trace
    dest.append(prefix, prefix + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<syslog_priority>();
  }
};

/// Parses "DEVICE:INODE" (decimal numbers, nothing else).
bool parse_dev_ino(const char* text, unsigned long long& dev, unsigned long long& ino) {
  if (text == nullptr || *text < '0' || *text > '9')
    return false;
  char* end = nullptr;
  errno = 0;
  dev = std::strtoull(text, &end, 10);
  if (errno != 0 || *end != ':' || end[1] < '0' || end[1] > '9')
    return false;
  ino = std::strtoull(end + 1, &end, 10);
  return errno == 0 && *end == '\0';
}

} // namespace

log_format format_for(const char* journal_stream, int fd) {
  unsigned long long dev = 0, ino = 0;
  struct stat st {};
  if (!parse_dev_ino(journal_stream, dev, ino) || ::fstat(fd, &st) != 0)
    return log_format::plain;
  bool same = static_cast<unsigned long long>(st.st_dev) == dev
              && static_cast<unsigned long long>(st.st_ino) == ino;
  return same ? log_format::journal : log_format::plain;
}

void init(const std::string& level) {
  auto format = format_for(std::getenv("JOURNAL_STREAM"), 2);
  // journald reads no colour codes; stderr is a socket then anyway.
  if (format == log_format::journal)
    init(level, format, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  else
    init(level, format, std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
}

void init(const std::string& level, log_format format, spdlog::sink_ptr out) {
  auto sink = std::make_shared<rate_limited_sink>(out, 50, std::chrono::seconds(10));
  auto logger = std::make_shared<spdlog::logger>("lull", sink);
  if (format == log_format::journal) {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<syslog_priority>('*').set_pattern("%*%v");
    logger->set_formatter(std::move(f));
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  // The summary of a window that ended in silence comes out on a flush.
  spdlog::flush_every(std::chrono::seconds(5));
}

} // namespace lull::log
