// Owner presence: the utmp reader, how sessions add up, the probe on written
// fixtures (present, absent, malformed), and the snapshot's `owner` field.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "messages/host_snapshot.hpp"
#include "src/probe/presence.hpp"
#include "tests/presence_fixture.hpp"

using namespace lull;
using lull::test::set_last_input;
using lull::test::utmp_bytes;
using lull::test::utmp_entry;
using lull::test::write_utmp;

namespace {

struct scratch {
  std::string root;
  scratch() {
    static int n = 0;
    root = (std::filesystem::temp_directory_path()
            / ("lull-presence-" + std::to_string(::getpid()) + "-" + std::to_string(n++)))
             .string();
    std::filesystem::remove_all(root);
    std::filesystem::create_directories(root);
  }
  ~scratch() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};

logind_session local(double idle_since_unix, bool idle_hint, bool locked = false,
                     bool active = true) {
  logind_session s;
  s.id = "2";
  s.seat = "seat0";
  s.active = active;
  s.idle_hint = idle_hint;
  s.idle_since_usec = static_cast<std::uint64_t>(idle_since_unix * 1e6);
  s.locked = locked;
  return s;
}

} // namespace

TEST(presence, utmp_gives_the_terminals_of_user_sessions_only) {
  auto bytes = utmp_bytes({{"pts/3"},
                           {"tty1"},
                           {"pts/4", DEAD_PROCESS}, // logged out
                           {"tty2", LOGIN_PROCESS}, // a getty waiting
                           {":0"},                  // a display, not a terminal
                           {"../etc/passwd"},
                           {"pts/x"},
                           {"pts/3"}}); // the same terminal twice counts once
  EXPECT_EQ(utmp_session_ttys(bytes), (std::vector<std::string>{"pts/3", "tty1"}));
  EXPECT_TRUE(utmp_session_ttys("").empty());
  // A torn last record is left out; the whole ones before it are read.
  auto torn = utmp_bytes({{"pts/1"}, {"pts/2"}});
  torn.resize(torn.size() - 10);
  EXPECT_EQ(utmp_session_ttys(torn), std::vector<std::string>{"pts/1"});
  EXPECT_EQ(utmp_session_ttys(utmp_bytes({{"pts/1"}, {"pts/2"}, {"pts/3"}}), 2).size(), 2u);
}

TEST(presence, sessions_add_up_to_the_newest_input_and_a_lock_means_nobody_is_there) {
  const double now = 1'800'000'000;
  EXPECT_FALSE(combine_presence(nullptr, {}, now)) << "no session: a headless host";
  std::vector<logind_session> none;
  EXPECT_FALSE(combine_presence(&none, {}, now));

  auto tty = combine_presence(nullptr, {now - 40, now - 7}, now);
  ASSERT_TRUE(tty);
  EXPECT_DOUBLE_EQ(tty->idle_sec, 7);
  EXPECT_FALSE(tty->locked);
  EXPECT_EQ(tty->sessions, 2);
  EXPECT_EQ(tty->source, "tty");
  EXPECT_TRUE(tty->in_use(300));
  EXPECT_FALSE(tty->in_use(5));
  EXPECT_FALSE(tty->in_use(0)) << "0 turns the rule off";

  // A desktop whose idle hint is off is in use now; on, since it changed.
  std::vector<logind_session> busy{local(now - 1000, false)};
  EXPECT_DOUBLE_EQ(combine_presence(&busy, {}, now)->idle_sec, 0);
  std::vector<logind_session> idle{local(now - 600, true)};
  auto away = combine_presence(&idle, {}, now);
  EXPECT_DOUBLE_EQ(away->idle_sec, 600);
  EXPECT_EQ(away->source, "logind");

  // Locked: not in use, however recent the last input.
  std::vector<logind_session> locked{local(now - 1, false, true)};
  auto l = combine_presence(&locked, {}, now);
  ASSERT_TRUE(l);
  EXPECT_TRUE(l->locked);
  EXPECT_FALSE(l->in_use(300));
  // ... unless somebody types in a terminal session meanwhile.
  auto both = combine_presence(&locked, {now - 3}, now);
  EXPECT_FALSE(both->locked);
  EXPECT_DOUBLE_EQ(both->idle_sec, 3);
  EXPECT_EQ(both->source, "logind+tty");

  // A remote (seatless) session or one switched away from does not count.
  logind_session remote = local(now, false);
  remote.seat.clear();
  std::vector<logind_session> others{remote, local(now, false, false, /*active=*/false)};
  EXPECT_FALSE(combine_presence(&others, {}, now));
  // A clock set back never gives a negative idle time.
  EXPECT_DOUBLE_EQ(combine_presence(nullptr, {now + 50}, now)->idle_sec, 0);
}

TEST(presence, the_probe_reads_utmp_and_terminal_input_times_under_its_root) {
  scratch s;
  const double now = 1'800'000'000;
  presence_probe probe({s.root, nullptr});
  std::string why;
  EXPECT_FALSE(probe.sample(now, why));
  EXPECT_NE(why.find("no login session"), std::string::npos) << why;
  EXPECT_NE(why.find("(unreadable)"), std::string::npos) << "no utmp at all: " << why;

  write_utmp(s.root, {{"pts/0"}, {"tty1"}, {"pts/9"}}); // pts/9 has no device: gone
  set_last_input(s.root, "pts/0", now - 12);
  set_last_input(s.root, "tty1", now - 3600);
  auto p = probe.sample(now, why);
  ASSERT_TRUE(p) << why;
  EXPECT_NEAR(p->idle_sec, 12, 0.01);
  EXPECT_EQ(p->sessions, 2);

  set_last_input(s.root, "pts/0", now - 0.5); // a key press
  EXPECT_NEAR(probe.sample(now, why)->idle_sec, 0.5, 0.01);

  // Garbage in utmp: no session found, no crash.
  std::ofstream(s.root + "/run/utmp", std::ios::trunc) << std::string(5000, '\x7f');
  EXPECT_FALSE(probe.sample(now, why));
}

TEST(presence, logind_answers_count_and_its_absence_is_explained) {
  scratch s;
  const double now = 1'800'000'000;
  std::string why;
  presence_probe down({s.root, [](std::string& w) -> std::optional<std::vector<logind_session>> {
                         w = "no system bus: No such file or directory";
                         return std::nullopt;
                       }});
  EXPECT_FALSE(down.sample(now, why));
  EXPECT_NE(why.find("no system bus"), std::string::npos) << why;

  presence_probe desktop(
    {s.root, [&](std::string&) -> std::optional<std::vector<logind_session>> {
       return std::vector<logind_session>{local(now - 30, true)};
     }});
  auto p = desktop.sample(now, why);
  ASSERT_TRUE(p);
  EXPECT_NEAR(p->idle_sec, 30, 0.01);
  EXPECT_EQ(p->source, "logind");

  presence_probe remote_only(
    {s.root, [&](std::string&) -> std::optional<std::vector<logind_session>> {
       auto r = local(now, false);
       r.seat.clear();
       return std::vector<logind_session>{r};
     }});
  EXPECT_FALSE(remote_only.sample(now, why));
  EXPECT_NE(why.find("no active session on a seat"), std::string::npos) << why;
}

TEST(presence, the_snapshot_carries_owner_or_why_not_and_rejects_a_bad_figure) {
  host_snapshot s;
  s.host_id = "laptop";
  s.collected_at = 1'800'000'000;
  owner_presence o;
  o.idle_sec = 42.5;
  o.sessions = 1;
  o.source = "tty";
  s.owner = o;
  auto j = to_json(s);
  EXPECT_EQ(j["owner"]["idle_sec"], 42.5);
  EXPECT_TRUE(j["owner_unavailable"].is_null());
  auto back = host_snapshot_from_json(j);
  ASSERT_TRUE(back.owner);
  EXPECT_DOUBLE_EQ(back.owner->idle_sec, 42.5);
  EXPECT_EQ(back.owner->source, "tty");

  s.owner.reset();
  s.owner_unavailable = "no login session";
  j = to_json(s);
  EXPECT_TRUE(j["owner"].is_null());
  back = host_snapshot_from_json(j);
  EXPECT_FALSE(back.owner);
  EXPECT_EQ(back.owner_unavailable, "no login session");

  // From the bus, a negative or non-numeric idle time is no reading at all.
  EXPECT_FALSE(owner_presence_from_json({{"idle_sec", -5}}));
  EXPECT_FALSE(owner_presence_from_json({{"idle_sec", "soon"}}));
  EXPECT_FALSE(owner_presence_from_json(nullptr));
  auto long_source = owner_presence_from_json({{"idle_sec", 1}, {"source", std::string(500, 'x')}});
  ASSERT_TRUE(long_source);
  EXPECT_LE(long_source->source.size(), host_snapshot_limits::max_status_bytes);
}
