#include "src/service/logind.hpp"

#include <systemd/sd-bus.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>

namespace lull::service {

namespace {

constexpr const char* destination = "org.freedesktop.login1";
constexpr std::size_t max_sessions = 256;

std::string bus_error(const char* what, int r) {
  return std::string(what) + ": " + std::strerror(-r);
}

struct logind_client {
  sd_bus* bus = nullptr;
  std::chrono::steady_clock::time_point retry_at{};
  std::string last_error = "not asked yet";

  ~logind_client() { close(); }

  void close() {
    if (bus)
      sd_bus_flush_close_unref(bus);
    bus = nullptr;
  }

  bool open() {
    if (bus)
      return true;
    auto now = std::chrono::steady_clock::now();
    if (now < retry_at)
      return false;
    retry_at = now + std::chrono::minutes(1);
    int r = sd_bus_open_system(&bus);
    if (r < 0) {
      bus = nullptr;
      last_error = bus_error("no system bus", r);
      return false;
    }
    return true;
  }

  int get_bool(const char* path, const char* property, bool& out) {
    sd_bus_error err = SD_BUS_ERROR_NULL;
    int v = 0;
    int r = sd_bus_get_property_trivial(bus, destination, path, "org.freedesktop.login1.Session",
                                        property, &err, 'b', &v);
    sd_bus_error_free(&err);
    out = v != 0;
    return r;
  }

  std::optional<std::vector<logind_session>> ask(std::string& why) {
    if (!open()) {
      why = last_error;
      return std::nullopt;
    }
    sd_bus_error err = SD_BUS_ERROR_NULL;
    sd_bus_message* reply = nullptr;
    int r = sd_bus_call_method(bus, destination, "/org/freedesktop/login1",
                               "org.freedesktop.login1.Manager", "ListSessions", &err, &reply, "");
    if (r < 0) {
      last_error = std::string("logind does not answer: ")
                   + (err.message ? err.message : std::strerror(-r));
      sd_bus_error_free(&err);
      close(); // a restarted bus or logind: connect again next minute
      why = last_error;
      return std::nullopt;
    }
    sd_bus_error_free(&err);
    std::unique_ptr<sd_bus_message, decltype(&sd_bus_message_unref)> hold(reply,
                                                                          sd_bus_message_unref);
    struct listed {
      std::string id, seat, path;
    };
    std::vector<listed> listed_sessions;
    if (sd_bus_message_enter_container(reply, 'a', "(susso)") < 0) {
      why = "logind's session list is malformed";
      return std::nullopt;
    }
    const char *id = nullptr, *user = nullptr, *seat = nullptr, *path = nullptr;
    std::uint32_t uid = 0;
    while (listed_sessions.size() < max_sessions
           && sd_bus_message_read(reply, "(susso)", &id, &uid, &user, &seat, &path) > 0)
      listed_sessions.push_back({id ? id : "", seat ? seat : "", path ? path : ""});
    std::vector<logind_session> out;
    for (auto& l : listed_sessions) {
      logind_session s;
      s.id = l.id;
      s.seat = l.seat;
      if (s.seat.empty()) { // remote: counted through its terminal
        out.push_back(std::move(s));
        continue;
      }
      if (get_bool(l.path.c_str(), "Active", s.active) < 0)
        continue; // ended between the list and the question
      get_bool(l.path.c_str(), "IdleHint", s.idle_hint);
      get_bool(l.path.c_str(), "LockedHint", s.locked);
      sd_bus_error e = SD_BUS_ERROR_NULL;
      std::uint64_t since = 0;
      if (sd_bus_get_property_trivial(bus, destination, l.path.c_str(),
                                      "org.freedesktop.login1.Session", "IdleSinceHint", &e, 't',
                                      &since)
          >= 0)
        s.idle_since_usec = since;
      sd_bus_error_free(&e);
      out.push_back(std::move(s));
    }
    return out;
  }
};

} // namespace

logind_source logind_over_dbus() {
  auto client = std::make_shared<logind_client>();
  return [client](std::string& why) { return client->ask(why); };
}

} // namespace lull::service
