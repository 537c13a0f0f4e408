#pragma once
/// What every `lull` command shares: the global connection options, exit
/// codes, connecting to the broker, and the helpers that print tables. Each
/// command lives in its own file (src/cli/<command>.cpp) and is declared in
/// commands.hpp; app.cpp lists them.

#include <chrono>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "src/client/lease_client.hpp"

namespace lull::cli {

// Exit codes (sysexits.h) shared by every command, documented in
// docs/workers.md ("Exit codes"):
//   0   done                       1   lulld refused it (the error names why)
//   64  usage or configuration error: a bad flag or value, a broker URI or
//       worker id that cannot work, a TLS file that is not there. Not worth
//       retrying: lull-worker@.service's RestartPreventExitStatus.
//   69  the broker or lulld cannot be reached, or lulld failed on its side
//   75  no lease within --wait; a pause no scheduler applied
//   127 `lull run`: CMD could not be started
//   128+N  stopped by signal N (SIGTERM: 143)
// `lull run` otherwise exits with CMD's own status, whatever it is.
constexpr int ex_ok = 0;
constexpr int ex_failed = 1;
constexpr int ex_usage = 64;
constexpr int ex_unavailable = 69;
constexpr int ex_tempfail = 75;

/// Options every command takes, before or after the command's name.
struct global_opts {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string worker;  ///< set to the hostname by add_global_options
  std::string user, password, prefix;
  std::string ca_file, cert_file, key_file; ///< TLS (ssl:// brokers)
  std::string mqtt_version = "auto";
  bool secure = false;
  double timeout_sec = 10;
};

/// The host name, reduced to [A-Za-z0-9_-].
std::string default_worker_id();

/// Declares the global options on `app` and lets every subcommand added
/// afterwards pass options it does not know up to it (`lull run --worker w1`).
void add_global_options(CLI::App& app, global_opts& g);

/// The per-call timeout of --timeout.
std::chrono::milliseconds call_timeout_of(const global_opts& g);

/// Connects, or prints why not and returns nullptr. `announce`: a retained
/// online status with an offline last will (lull work).
std::unique_ptr<lease_client> connect_or_say(const global_opts& g, bool announce = false);

/// True when lulld (or the way to it) failed rather than refused: no reply
/// in time, InternalError (it could not store the change) or
/// RequestThrottled. Such a call may succeed if made again a little later;
/// `lull run`, `lull work` and `lull submit` do so within their --wait.
bool service_failure(const call_error& e);

/// Prints "lull: WHAT failed: CODE: MESSAGE"; the exit code for it:
/// ex_unavailable (69) for a service failure, else ex_failed.
int report_error(const std::string& what, const call_error& e);

/// Seconds to wait before the `attempt`-th retry of a failed call (1, 2, 4,
/// capped at 5), never past `left` (seconds; < 0: no bound).
double retry_pause(int attempt, double left);

// -- output ------------------------------------------------------------------

/// `sec` with one decimal.
std::string fmt(double sec);
/// `s` padded with spaces to `w` columns.
std::string pad(std::string s, std::size_t w);
/// A number with `decimals` decimals, "-" when `j` is not a number.
std::string num(const nlohmann::json& j, int decimals = 0);
/// A string, "-" when `j` is not one.
std::string str(const nlohmann::json& j);
/// One block character per value, scaled between their min and max; a space
/// for a missing value.
std::string sparkline(const nlohmann::json& values);
/// The same on a fixed scale from `lo` to `hi`.
std::string sparkline(const nlohmann::json& values, double lo, double hi);

/// One subcommand: its CLI11 node and what runs when it was chosen.
struct command {
  CLI::App* sub = nullptr;
  std::function<int()> run;
};

/// Builds `lull`: global options and every command, in the order of app.cpp.
std::vector<command> build(CLI::App& app, global_opts& g);

/// The whole command line: parse, run the chosen command, its exit code.
int main(int argc, char** argv);

} // namespace lull::cli
