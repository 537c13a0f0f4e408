#include "actors/supervisor.hpp"

#include <map>

#include "src/log.hpp"

namespace lull {

namespace {

struct supervisor_state {
  std::map<caf::actor_addr, std::string> names;
  bool reported = false;
  static inline const char* name = "supervisor";
};

caf::behavior supervisor_impl(caf::stateful_actor<supervisor_state>* self,
                              std::vector<supervised> watched, supervisor_options opts) {
  for (auto& w : watched) {
    if (!w.who)
      continue;
    self->state.names[w.who.address()] = w.name;
    self->monitor(w.who);
  }
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& s = self->state;
    auto it = s.names.find(dm.source);
    auto who = it != s.names.end() ? it->second : std::string("an actor");
    if (opts.stopping->load())
      return;
    auto why = dm.reason ? self->system().render(dm.reason) : std::string("exited normally");
    log::error("supervisor: {} went down ({}) while lulld runs; stopping lulld so that it "
               "restarts whole",
               who, why);
    if (!s.reported && opts.on_death) {
      s.reported = true;
      opts.on_death(who + ": " + why);
    }
  });
  return {
    // No messages of its own (it only watches); a behavior keeps it alive.
    [](const std::string&) {},
  };
}

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, std::vector<supervised> watched,
                            supervisor_options opts) {
  return sys.spawn(supervisor_impl, std::move(watched), std::move(opts));
}

} // namespace lull
