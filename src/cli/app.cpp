// The `lull` dispatcher: the list of commands. Adding a command is one file
// in src/cli/, its declarations in commands.hpp and one line here.

#include <signal.h>

#include <iostream>

#include "src/cli/commands.hpp"

namespace lull::cli {

namespace {

/// A command whose options live as long as the app.
template <class Opts>
command make(CLI::App& app, const global_opts& g, CLI::App* (*add)(CLI::App&, Opts&),
             int (*run)(const global_opts&, const Opts&)) {
  auto o = std::make_shared<Opts>();
  auto* sub = add(app, *o);
  return {sub, [&g, o, run] { return run(g, *o); }};
}

} // namespace

std::vector<command> build(CLI::App& app, global_opts& g) {
  app.description("lull: run heavy work when the host is quiet (leases from lulld over MQTT)");
  app.set_version_flag("--version", "lull 0.1.0");
  app.require_subcommand(1);
  add_global_options(app, g);
  std::vector<command> commands = {
    make(app, g, add_run, do_run),
    make(app, g, add_status, do_status),
    make(app, g, add_revoke, do_revoke),
    make(app, g, add_pause, do_pause),
    make(app, g, add_resume, do_resume),
    make(app, g, add_submit, do_submit),
    make(app, g, add_jobs, do_jobs),
    make(app, g, add_cancel, do_cancel),
    make(app, g, add_retry, do_retry),
    make(app, g, add_work, do_work),
    make(app, g, add_history, do_history),
    make(app, g, add_watch, do_watch),
  };
  // Last, so its script knows every command before it.
  auto shell = std::make_shared<completion_opts>();
  commands.push_back({add_completion(app, *shell), [&app, shell] {
                        std::cout << completion_script(app, shell->shell);
                        return ex_ok;
                      }});
  return commands;
}

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  CLI::App app;
  global_opts g;
  auto commands = build(app, g);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? ex_ok : ex_usage;
  }
  for (auto& c : commands) {
    if (!*c.sub)
      continue;
    // Printing a completion script needs no broker, nor a good lull.toml.
    if (c.sub->get_name() != "completion")
      if (auto err = resolve_settings(app, g, settings_environment())) {
        std::cerr << "lull: " << *err << "\n";
        return ex_usage;
      }
    return c.run();
  }
  return ex_usage;
}

} // namespace lull::cli
