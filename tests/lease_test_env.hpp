#pragma once
// A hand-driven clock, random source and id generator for lease tests.

#include <memory>
#include <string>

#include "src/lease/lease_table.hpp"

namespace lull::test {

struct fake_env {
  double mono = 1000;
  std::int64_t wall = 1795000000; // 2026-11-18
  double uniform = 0;
  int ids = 0;

  void advance(double sec) {
    mono += sec;
    wall += static_cast<std::int64_t>(sec);
  }

  lease_env env() {
    lease_env e;
    e.mono_sec = [this] { return mono; };
    e.wall_sec = [this] { return wall; };
    e.uniform = [this] { return uniform; };
    e.new_id = [this] { return "lease" + std::to_string(++ids); };
    return e;
  }
};

inline quiet_assessment quiet_of(const std::string& host, quiet_state st, double score = 90) {
  quiet_assessment q;
  q.host_id = host;
  q.state = st;
  q.quiet_score = score;
  return q;
}

/// An assessment of `q.host_id`, whose agent first reports a snapshot when
/// the table does not know it yet (a host enters only on its agent's word).
inline void agent_quiet(lease_table& t, const quiet_assessment& q) {
  if (!t.hosts().count(q.host_id))
    t.on_snapshot(q.host_id);
  t.on_quiet(q);
}

inline lease_request request_of(const std::string& worker, int units,
                                work_priority p = work_priority::normal,
                                const std::string& host = {}) {
  lease_request r;
  r.worker_id = worker;
  r.cost_units = units;
  r.priority = p;
  r.host_id = host;
  r.job_type = "thumbnails";
  return r;
}

} // namespace lull::test
