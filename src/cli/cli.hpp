#pragma once
/// What every `lull` command shares: the global connection options, exit
/// codes, connecting to the broker, and the helpers that print tables. Each
/// command lives in its own file (src/cli/<command>.cpp) and is declared in
/// commands.hpp; app.cpp lists them.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "src/client/lease_client.hpp"

namespace lull::cli {

// Exit codes (sysexits.h) shared by every command, documented in
// docs/workers.md ("Exit codes"):
//   0   done                       1   lulld refused it (the error names why)
//   64  usage or configuration error: a bad flag or value, a broker URI or
//       worker id that cannot work, a TLS file that is not there, a bad
//       lull.toml. Not worth retrying: lull-worker@.service's
//       RestartPreventExitStatus.
//   69  the broker or lulld cannot be reached, or lulld failed on its side
//   75  no lease within --wait; a pause no scheduler applied
//   124 no answer from lulld within --timeout (the broker was reached)
//   127 `lull run`: CMD could not be started
//   128+N  stopped by signal N (SIGTERM: 143)
// `lull run` otherwise exits with CMD's own status, whatever it is.
constexpr int ex_ok = 0;
constexpr int ex_failed = 1;
constexpr int ex_usage = 64;
constexpr int ex_unavailable = 69;
constexpr int ex_tempfail = 75;
/// No answer from lulld within --timeout (the broker was reached): as
/// timeout(1), apart from 69, lulld's own failure or a broker away.
constexpr int ex_timeout = 124;

/// The broker when nothing names one.
constexpr const char* default_broker = "tcp://127.0.0.1:1883";

/// Options every command takes, before or after the command's name. The
/// connection options are lulld's keys too: resolve_settings() fills the
/// ones no flag gave from the environment and lull.toml, as lulld does.
struct global_opts {
  std::string broker;  ///< empty until resolve_settings()
  std::string worker;  ///< set to the hostname by add_global_options
  std::string user, password, prefix;
  std::string ca_file, cert_file, key_file; ///< TLS (ssl:// brokers)
  std::string mqtt_version = "auto";
  bool secure = false;
  double timeout_sec = 10;
  std::string config_file;   ///< --config (LULL_CONFIG)
  std::string broker_source; ///< where `broker` came from, for messages
};

/// Where `lull` looks for lulld's configuration and a running lulld's
/// broker.uri besides the user's own (tests point them elsewhere).
struct settings_paths {
  std::string system_config = "/etc/lull/lull.toml";
  std::vector<std::string> system_data_dirs = {"/var/lib/lull"};
};

/// The environment resolve_settings() reads: LULL_* plus HOME,
/// XDG_CONFIG_HOME and XDG_STATE_HOME.
std::map<std::string, std::string> settings_environment();

/// Fills the connection options no flag of `app` gave, flag > env > file >
/// default as lulld: the file is --config or LULL_CONFIG, else
/// $XDG_CONFIG_HOME/lull/lull.toml (~/.config/lull/lull.toml) if it
/// exists, else /etc/lull/lull.toml if it exists and is readable. With no
/// broker named anywhere, a running lulld's <data_dir>/broker.uri (its
/// data_dir, /var/lib/lull, ~/.local/state/lull) before tcp://127.0.0.1:1883.
/// The error (a bad file or value, naming it), or nullopt.
std::optional<std::string> resolve_settings(const CLI::App& app, global_opts& g,
                                            const std::map<std::string, std::string>& env,
                                            const settings_paths& paths = {});

/// The broker with where it came from: "tcp://127.0.0.1:1883 (default; set
/// broker in ~/.config/lull/lull.toml or --broker)".
std::string broker_named(const global_opts& g);

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

/// "CODE: MESSAGE" of lulld's error reply, or for no reply in time
/// "Timeout: no answer from lulld within 10s on BROKER (SOURCE); is lulld
/// running? ...".
std::string describe(const global_opts& g, const call_error& e);

/// Prints "lull: WHAT failed: " and describe(); the exit code for it:
/// ex_timeout (124) for no answer, ex_unavailable (69) for lulld's own
/// failure, else ex_failed.
int report_error(const global_opts& g, const std::string& what, const call_error& e);

/// The exit code of report_error() without printing.
int error_exit_code(const call_error& e);

/// `sec` for people: "0.5s", "45s", "1m50s", "2h05m".
std::string human_duration(double sec);

/// A table: a header row and rows of cells, each column as wide as its
/// widest cell (counted in characters, UTF-8 aware) but at most its
/// `max_width` (0: no limit; longer cells end in "…"), two spaces between
/// columns, the last column not padded.
std::string format_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows,
                         const std::vector<std::size_t>& max_width = {});

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
