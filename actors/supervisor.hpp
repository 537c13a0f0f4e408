#pragma once
/// The supervisor: monitors every actor of lulld. An actor that goes down
/// while lulld is not shutting down (an exception that escaped its handlers,
/// an error exit) is reported through `on_death`; lulld then stops with a
/// non-zero status so its service manager restarts it with its state rebuilt
/// from retained topics and the database — never a half-alive daemon that
/// keeps publishing "online" while its assessor or queue is gone.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

namespace lull {

struct supervisor_options {
  /// Set once lulld stops its actors on purpose; downs after that are expected.
  std::shared_ptr<std::atomic<bool>> stopping = std::make_shared<std::atomic<bool>>(false);
  /// Called (on the supervisor's thread) with "<actor name>: <exit reason>".
  std::function<void(const std::string&)> on_death;
};

/// One watched actor and the name its log lines use.
struct supervised {
  std::string name;
  caf::actor who;
};

caf::actor spawn_supervisor(caf::actor_system& sys, std::vector<supervised> watched,
                            supervisor_options opts);

} // namespace lull
