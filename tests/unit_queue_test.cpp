#include <gtest/gtest.h>

#include "src/queue/job_queue.hpp"

using namespace lull;

namespace {

struct fixture {
  double mono = 1000;
  std::int64_t wall = 1795428000;
  int ids = 0;
  job_queue q;
  explicit fixture(queue_config cfg = {})
    : q(cfg, {[this] { return mono; }, [this] { return wall; },
              [this] { return "job" + std::to_string(++ids); }}) {}

  std::string submit(const std::string& type, work_priority p, const std::string& producer = "p",
                     const std::string& key = "") {
    job_spec s;
    s.job_type = type;
    s.priority = p;
    s.producer = producer;
    s.idempotency_key = key;
    auto r = q.submit(s);
    return std::get<0>(r).first->job_id;
  }
  std::vector<std::string> order(std::size_t n = 100) {
    std::vector<std::string> out;
    for (auto* j : q.candidates({}, "", n))
      out.push_back(j->job_id);
    return out;
  }
};

} // namespace

TEST(queue, strict_priority_then_submission_order) {
  fixture f;
  auto bg = f.submit("t", work_priority::background);
  auto lo = f.submit("t", work_priority::low);
  auto n1 = f.submit("t", work_priority::normal);
  auto hi = f.submit("t", work_priority::high);
  auto n2 = f.submit("t", work_priority::normal);
  EXPECT_EQ(f.order(), (std::vector<std::string>{hi, n1, n2, lo, bg}));
}

TEST(queue, aging_lifts_a_waiting_job_so_none_starves) {
  fixture f;
  auto bg = f.submit("t", work_priority::background);
  f.mono += 180; // three aging steps: background -> high
  auto hi = f.submit("t", work_priority::high);
  EXPECT_DOUBLE_EQ(f.q.effective_level(*f.q.get(bg), f.mono), 0);
  // Both at level 0 now; the older one goes first.
  EXPECT_EQ(f.order().front(), bg);
  (void)hi;
}

TEST(queue, partial_aging_does_not_overtake_a_higher_priority) {
  fixture f;
  auto low = f.submit("t", work_priority::low);
  f.mono += 59; // not yet one step
  auto normal = f.submit("t", work_priority::normal);
  EXPECT_EQ(f.order().front(), normal);
  f.mono += 1; // one step: low -> normal level, and it is older
  EXPECT_EQ(f.order().front(), low);
}

TEST(queue, producers_are_served_round_robin_within_a_level) {
  fixture f;
  std::vector<std::string> flood;
  for (int i = 0; i < 5; ++i)
    flood.push_back(f.submit("t", work_priority::normal, "flood"));
  auto other = f.submit("t", work_priority::normal, "other");
  // First pick: flood's oldest (neither producer served yet, older seq).
  auto first = f.order().front();
  EXPECT_EQ(first, flood[0]);
  ASSERT_TRUE(f.q.mark_leased(first, "L1", "w1", "h"));
  // The flood has been served; the other producer's job goes next.
  EXPECT_EQ(f.order().front(), other);
  ASSERT_TRUE(f.q.mark_leased(other, "L2", "w2", "h"));
  EXPECT_EQ(f.order().front(), flood[1]);
}

TEST(queue, candidates_filter_by_type_and_host) {
  fixture f;
  job_spec s;
  s.job_type = "thumbs";
  s.host_id = "pi";
  auto pi_job = std::get<0>(f.q.submit(s)).first->job_id;
  s.host_id.clear();
  auto any_job = std::get<0>(f.q.submit(s)).first->job_id;
  s.job_type = "backup";
  f.q.submit(s);
  auto c = f.q.candidates({"thumbs"}, "nuc", 10);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]->job_id, any_job);
  EXPECT_EQ(f.q.candidates({"thumbs"}, "pi", 10).size(), 2u);
  EXPECT_EQ(f.q.candidates({}, "pi", 10).size(), 3u);
  (void)pi_job;
}

TEST(queue, idempotency_key_returns_the_existing_job) {
  fixture f;
  job_spec s;
  s.job_type = "t";
  s.idempotency_key = "photo-123";
  auto a = f.q.submit(s);
  auto b = f.q.submit(s);
  ASSERT_EQ(a.index(), 0u);
  EXPECT_TRUE(std::get<0>(a).second);
  EXPECT_FALSE(std::get<0>(b).second);
  EXPECT_EQ(std::get<0>(a).first->job_id, std::get<0>(b).first->job_id);
  EXPECT_EQ(f.q.size(), 1u);
  EXPECT_EQ(f.q.take_events().size(), 1u); // one submission event only
}

TEST(queue, happy_path_transitions_each_emit_an_event) {
  fixture f;
  auto id = f.submit("t", work_priority::normal);
  ASSERT_TRUE(f.q.mark_leased(id, "L1", "w1", "pi"));
  ASSERT_TRUE(f.q.mark_running(id));
  EXPECT_FALSE(f.q.complete(id, "L1", true, {{"thumbs", 12}}, ""));
  auto ev = f.q.take_events();
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_FALSE(ev[0].from.has_value());
  EXPECT_EQ(ev[1].to, job_state::leased);
  EXPECT_EQ(ev[2].to, job_state::running);
  EXPECT_EQ(ev[3].to, job_state::succeeded);
  EXPECT_EQ(f.q.get(id)->result["thumbs"], 12);
  EXPECT_EQ(f.q.get(id)->attempts, 1);
}

TEST(queue, failure_retries_while_attempts_remain_then_the_job_is_dead) {
  fixture f;
  job_spec s;
  s.job_type = "t";
  s.max_attempts = 2;
  auto id = std::get<0>(f.q.submit(s)).first->job_id;
  ASSERT_TRUE(f.q.mark_leased(id, "L1", "w", "h"));
  EXPECT_FALSE(f.q.complete(id, "L1", false, nullptr, "exit 1"));
  EXPECT_EQ(f.q.get(id)->state, job_state::queued);
  ASSERT_TRUE(f.q.mark_leased(id, "L2", "w", "h"));
  EXPECT_FALSE(f.q.complete(id, "L2", false, nullptr, "exit 1"));
  EXPECT_EQ(f.q.get(id)->state, job_state::dead);
  EXPECT_EQ(f.q.get(id)->attempts, 2);
  EXPECT_EQ(f.q.get(id)->error, "exit 1") << "the dead letter keeps its last error";
}

// A job back in the queue waits queue.retry_backoff, doubled for each attempt
// it has used, at most retry_backoff_max; until then no worker is offered it.
TEST(queue, a_requeued_job_backs_off_10s_doubling_to_the_max) {
  queue_config cfg;
  cfg.retry_backoff_sec = 10;
  cfg.retry_backoff_max_sec = 30;
  fixture f(cfg);
  job_spec s;
  s.job_type = "t";
  s.max_attempts = 5;
  auto id = std::get<0>(f.q.submit(s)).first->job_id;
  std::vector<std::int64_t> waits;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto lease = "L" + std::to_string(attempt);
    ASSERT_TRUE(f.q.mark_leased(id, lease, "w", "h"));
    if (attempt == 2)
      f.q.lease_ended(lease, "expired"); // a lost lease backs off alike
    else
      EXPECT_FALSE(f.q.complete(id, lease, false, nullptr, "exit 1"));
    ASSERT_EQ(f.q.get(id)->state, job_state::queued);
    auto wait = f.q.get(id)->retry_at - f.wall;
    waits.push_back(wait);
    EXPECT_TRUE(f.order().empty()) << "offered before its backoff";
    f.wall += wait - 1;
    EXPECT_TRUE(f.order().empty());
    f.wall += 1;
    EXPECT_EQ(f.order(), std::vector<std::string>{id}) << "attempt " << attempt;
  }
  EXPECT_EQ(waits, (std::vector<std::int64_t>{10, 20, 30}));
  auto events = f.q.take_events();
  bool said = false;
  for (auto& e : events)
    said |= e.reason == "failed (attempt 1 of 5): exit 1; retried after 10s";
  EXPECT_TRUE(said);
  // It survives a restart: retry_at is part of the stored record.
  auto back = job_from_json(to_json(*f.q.get(id)));
  EXPECT_EQ(back.retry_at, f.q.get(id)->retry_at);
}

TEST(queue, a_dead_job_is_retried_with_its_attempts_anew_and_nothing_else_is) {
  fixture f;
  job_spec s;
  s.job_type = "t";
  s.max_attempts = 1;
  auto id = std::get<0>(f.q.submit(s)).first->job_id;
  ASSERT_TRUE(f.q.mark_leased(id, "L1", "w", "h"));
  f.q.lease_ended("L1", "expired");
  ASSERT_EQ(f.q.get(id)->state, job_state::dead);
  EXPECT_EQ(f.q.get(id)->error, "lease ended (expired)");
  EXPECT_EQ(f.q.dead(), 1u) << "counted for Home Assistant's Dead jobs";
  f.q.take_events();

  EXPECT_FALSE(f.q.retry(id, "fixed the input"));
  auto* j = f.q.get(id);
  EXPECT_EQ(j->state, job_state::queued);
  EXPECT_EQ(f.q.dead(), 0u);
  EXPECT_EQ(j->attempts, 0);
  EXPECT_EQ(f.order(), std::vector<std::string>{id}) << "at once, no backoff";
  auto ev = f.q.take_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].from, job_state::dead);
  EXPECT_EQ(ev[0].reason, "fixed the input (last error: lease ended (expired))");

  EXPECT_NE(f.q.retry(id, "").value_or(""), "") << "a queued job is not dead";
  EXPECT_EQ(*f.q.retry("nope", ""), "unknown job nope");
  // What lulld before dead letters wrote reads as dead.
  EXPECT_EQ(parse_job_state("failed"), job_state::dead);
  EXPECT_EQ(parse_job_state("DEAD"), job_state::dead);
}

TEST(queue, an_expired_lease_requeues_its_job) {
  fixture f;
  auto id = f.submit("t", work_priority::normal);
  ASSERT_TRUE(f.q.mark_leased(id, "L1", "w", "h"));
  ASSERT_TRUE(f.q.mark_running(id));
  f.q.lease_ended("L1", "expired");
  EXPECT_EQ(f.q.get(id)->state, job_state::queued);
  EXPECT_TRUE(f.q.get(id)->lease_id.empty());
  EXPECT_EQ(f.q.by_lease("L1"), nullptr);
  // A late completion through the dead lease is refused.
  EXPECT_TRUE(f.q.complete(id, "L1", true, nullptr, ""));
}

TEST(queue, completion_through_another_lease_is_refused) {
  fixture f;
  auto id = f.submit("t", work_priority::normal);
  ASSERT_TRUE(f.q.mark_leased(id, "L1", "w", "h"));
  auto err = f.q.complete(id, "L9", true, nullptr, "");
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("does not hold"), std::string::npos);
}

TEST(queue, cancel_returns_the_lease_to_revoke) {
  fixture f;
  auto queued = f.submit("t", work_priority::normal);
  auto running = f.submit("t", work_priority::normal);
  ASSERT_TRUE(f.q.mark_leased(running, "L1", "w", "h"));
  auto a = f.q.cancel(queued, "user");
  ASSERT_EQ(a.index(), 0u);
  EXPECT_FALSE(std::get<0>(a).has_value());
  auto b = f.q.cancel(running, "user");
  ASSERT_EQ(b.index(), 0u);
  EXPECT_EQ(std::get<0>(b), "L1");
  EXPECT_EQ(f.q.get(running)->state, job_state::cancelled);
  auto again = f.q.cancel(running, "user");
  ASSERT_EQ(again.index(), 1u);
  EXPECT_NE(std::get<1>(again).find("already cancelled"), std::string::npos);
}

TEST(queue, deadline_expires_a_job_still_waiting) {
  fixture f;
  job_spec s;
  s.job_type = "t";
  s.deadline = f.wall + 60;
  auto id = std::get<0>(f.q.submit(s)).first->job_id;
  f.q.tick();
  EXPECT_EQ(f.q.get(id)->state, job_state::queued);
  f.wall += 60;
  f.q.tick();
  EXPECT_EQ(f.q.get(id)->state, job_state::expired);
  EXPECT_TRUE(f.q.candidates({}, "", 10).empty());
}

TEST(queue, a_full_queue_refuses_with_a_reason) {
  queue_config cfg;
  cfg.max_jobs = 2;
  fixture f(cfg);
  f.submit("t", work_priority::normal);
  f.submit("t", work_priority::normal);
  job_spec s;
  s.job_type = "t";
  auto r = f.q.submit(s);
  ASSERT_EQ(r.index(), 1u);
  EXPECT_NE(std::get<1>(r).find("queue is full"), std::string::npos);
}

TEST(queue, jobs_round_trip_through_json_for_restore) {
  fixture f;
  job_spec s;
  s.job_type = "t";
  s.payload = job_payload(nlohmann::json{{"path", "/photos/1.jpg"}});
  s.idempotency_key = "k";
  s.deadline = f.wall + 100;
  auto id = std::get<0>(f.q.submit(s)).first->job_id;
  ASSERT_TRUE(f.q.mark_leased(id, "L1", "w", "pi"));
  auto saved = to_json(*f.q.get(id));
  fixture g;
  g.q.restore(job_from_json(saved));
  auto* j = g.q.get(id);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->state, job_state::leased);
  EXPECT_EQ(g.q.by_lease("L1"), j);
  EXPECT_EQ(j->spec.payload.json()["path"], "/photos/1.jpg");
  EXPECT_EQ(j->spec.deadline, f.wall + 100);
  // The idempotency key survives the restart.
  auto again = g.q.submit(s);
  EXPECT_FALSE(std::get<0>(again).second);
  // And a lease that died while lulld was down requeues it.
  g.q.lease_ended("L1", "expired while lulld was down");
  EXPECT_EQ(g.q.get(id)->state, job_state::queued);
}

TEST(queue, depths_count_queued_jobs_per_priority) {
  fixture f;
  f.submit("t", work_priority::high);
  f.submit("t", work_priority::background);
  auto id = f.submit("t", work_priority::background);
  f.q.mark_leased(id, "L", "w", "h");
  auto d = f.q.depths();
  EXPECT_EQ(d["high"], 1u);
  EXPECT_EQ(d["background"], 1u);
  EXPECT_EQ(d["normal"], 0u);
}

TEST(queue, depths_and_the_live_count_follow_every_change) {
  queue_config cfg;
  cfg.max_jobs = 6;
  cfg.finished_kept = 1;
  fixture f(cfg);
  auto recount = [&] {
    std::map<std::string, std::size_t> d = {{"high", 0}, {"normal", 0}, {"low", 0},
                                            {"background", 0}};
    static const char* names[] = {"high", "normal", "low", "background"};
    for (auto* j : f.q.list(job_state::queued, "", "", 100000))
      ++d[names[urgency(j->spec.priority)]];
    return d;
  };
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i)
    ids.push_back(f.submit("t", static_cast<work_priority>(i % 4)));
  EXPECT_EQ(f.q.depths(), recount());
  job_spec s;
  s.job_type = "t";
  EXPECT_TRUE(std::holds_alternative<std::string>(f.q.submit(s))) << "6 live jobs: full";
  f.q.take_dirty();
  f.q.committed();
  ASSERT_TRUE(f.q.mark_leased(ids[0], "L0", "w", "h"));
  ASSERT_TRUE(f.q.mark_leased(ids[1], "L1", "w", "h"));
  f.q.mark_running(ids[1]);
  EXPECT_FALSE(f.q.complete(ids[1], "L1", true, nullptr, ""));
  EXPECT_EQ(f.q.depths(), recount());
  // A finished job frees a place.
  EXPECT_EQ(f.q.submit(s).index(), 0u);
  f.q.cancel(ids[2], "no");
  f.q.lease_ended("L0", "expired");
  EXPECT_EQ(f.q.depths(), recount());
  // A rolled back batch puts the counts back too.
  auto before = f.q.depths();
  f.q.take_dirty();
  f.q.roll_back();
  EXPECT_EQ(f.q.depths(), recount());
  EXPECT_NE(f.q.depths(), before);
  f.q.take_dirty();
  f.q.committed();
  // The roll back brought all six back: full again.
  EXPECT_TRUE(std::holds_alternative<std::string>(f.q.submit(s)));
  EXPECT_EQ(f.q.depths(), recount());
}

namespace {

job_spec sized(const std::string& producer, std::size_t bytes) {
  job_spec s;
  s.job_type = "t";
  s.producer = producer;
  // A JSON string of `bytes` characters with its two quotes.
  s.payload = job_payload(nlohmann::json(std::string(bytes - 2, 'x')));
  return s;
}

std::string refusal(job_queue& q, const job_spec& s) {
  auto r = q.submit(s);
  return r.index() == 1 ? std::get<1>(r) : std::string();
}

} // namespace

// A payload is held as its JSON text, so what it costs in memory is what is
// counted: a tree of small values would cost many times its text.
TEST(queue, a_payload_is_kept_as_its_json_text) {
  nlohmann::json doc = {{"path", "/p/1.jpg"}, {"sizes", {1, 2, 3}}, {"x", 0.1}};
  job_payload p(doc);
  EXPECT_EQ(p.bytes(), doc.dump().size());
  EXPECT_EQ(p.json(), doc);
  EXPECT_EQ(job_payload().json(), nullptr);
  EXPECT_EQ(job_payload().bytes(), 4u); // null
}

// One producer may hold at most max_jobs_per_producer jobs that are not
// finished; another producer is not held back by it, and a job that
// finishes frees a place.
TEST(queue, a_producer_past_its_job_quota_is_refused_and_others_are_not) {
  queue_config cfg;
  cfg.max_jobs_per_producer = 3;
  fixture f(cfg);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(f.submit("t", work_priority::normal, "flood"));
  job_spec s;
  s.job_type = "t";
  s.producer = "flood";
  auto why = refusal(f.q, s);
  EXPECT_EQ(why, "producer 'flood' has 3 jobs waiting or running, the most "
                 "queue.max_jobs_per_producer allows (3); submit again when some have finished");
  EXPECT_EQ(f.q.usage("flood").jobs, 3u);
  EXPECT_EQ(f.q.refused(), 1u);
  // Somebody else still gets in.
  EXPECT_FALSE(f.submit("t", work_priority::normal, "other").empty());
  // A repeated idempotency key is not a new job: it is answered, not refused.
  s.idempotency_key = "k";
  // (the key is new: refused)
  EXPECT_FALSE(refusal(f.q, s).empty());
  // Leased and running jobs count; finished ones do not.
  ASSERT_TRUE(f.q.mark_leased(ids[0], "L0", "w", "h"));
  EXPECT_FALSE(refusal(f.q, s).empty());
  EXPECT_FALSE(f.q.complete(ids[0], "L0", true, nullptr, ""));
  EXPECT_EQ(f.q.usage("flood").jobs, 2u);
  EXPECT_TRUE(refusal(f.q, s).empty());
  // Now the key names a job: the same submit is answered with it.
  auto again = f.q.submit(s);
  ASSERT_EQ(again.index(), 0u);
  EXPECT_FALSE(std::get<0>(again).second);
}

// Payload bytes of unfinished jobs, per producer and in all: the error
// names the limit and what the producer holds.
TEST(queue, payload_bytes_are_bounded_per_producer_and_in_all) {
  queue_config cfg;
  cfg.max_bytes_per_producer = 10000;
  cfg.max_bytes = 25000;
  fixture f(cfg);
  for (int i = 0; i < 2; ++i)
    ASSERT_TRUE(refusal(f.q, sized("a", 4000)).empty());
  EXPECT_EQ(f.q.usage("a").bytes, 8000u);
  EXPECT_EQ(refusal(f.q, sized("a", 4000)),
            "producer 'a' has 8000 payload bytes in jobs waiting or running; this job's 4000 "
            "would pass queue.max_bytes_per_producer (10000)");
  // A smaller one still fits.
  EXPECT_TRUE(refusal(f.q, sized("a", 2000)).empty());
  // Others fill the rest of the global bound.
  EXPECT_TRUE(refusal(f.q, sized("b", 9000)).empty());
  EXPECT_TRUE(refusal(f.q, sized("c", 5000)).empty());
  EXPECT_EQ(f.q.live_bytes(), 24000u);
  EXPECT_EQ(refusal(f.q, sized("d", 2000)),
            "queue is full: 24000 payload bytes in jobs waiting or running; this job's 2000 "
            "would pass queue.max_bytes (25000)");
  // A cancelled job gives its bytes back.
  auto listed = f.q.list(std::nullopt, "", "", 100, "b");
  ASSERT_EQ(listed.size(), 1u);
  ASSERT_EQ(f.q.cancel(listed[0]->job_id, "").index(), 0u);
  EXPECT_EQ(f.q.usage("b").bytes, 0u);
  EXPECT_EQ(f.q.usage("b").jobs, 0u);
  EXPECT_TRUE(refusal(f.q, sized("d", 2000)).empty());
  EXPECT_EQ(f.q.refused(), 2u);
}

// After a restart the restored jobs count again: a producer at its quota
// before lulld stopped is at its quota after.
TEST(queue, restored_jobs_rebuild_the_producer_counts) {
  queue_config cfg;
  cfg.max_jobs_per_producer = 4;
  cfg.max_bytes_per_producer = 100000;
  fixture f(cfg);
  std::vector<nlohmann::json> saved;
  for (int i = 0; i < 4; ++i) {
    auto r = f.q.submit(sized("p", 1000));
    ASSERT_EQ(r.index(), 0u);
    saved.push_back(to_json(*std::get<0>(r).first));
  }
  auto leased = saved[1]["job_id"].get<std::string>();
  ASSERT_TRUE(f.q.mark_leased(leased, "L1", "w", "h"));
  saved[1] = to_json(*f.q.get(leased));
  auto done = f.q.submit(sized("q", 3000));
  auto done_id = std::get<0>(done).first->job_id;
  f.q.cancel(done_id, "");
  saved.push_back(to_json(*f.q.get(done_id)));

  fixture g(cfg);
  for (auto& rec : saved)
    g.q.restore(job_from_json(rec));
  EXPECT_EQ(g.q.usage("p").jobs, 4u);
  EXPECT_EQ(g.q.usage("p").bytes, 4000u);
  EXPECT_EQ(g.q.usage("q").jobs, 0u); // finished: not counted
  EXPECT_EQ(g.q.live_bytes(), 4000u);
  EXPECT_NE(refusal(g.q, sized("p", 1000)).find("queue.max_jobs_per_producer"),
            std::string::npos);
  // Restoring the same job twice (a second load) does not count it twice.
  g.q.restore(job_from_json(saved[0]));
  EXPECT_EQ(g.q.usage("p").jobs, 4u);
  EXPECT_EQ(g.q.usage("p").bytes, 4000u);
}

// A batch whose write failed is rolled back with its counts.
TEST(queue, a_rolled_back_submit_gives_its_quota_back) {
  queue_config cfg;
  cfg.max_jobs_per_producer = 1;
  fixture f(cfg);
  ASSERT_TRUE(refusal(f.q, sized("p", 100)).empty());
  EXPECT_EQ(f.q.usage("p").jobs, 1u);
  f.q.take_dirty();
  f.q.roll_back();
  EXPECT_EQ(f.q.usage("p").jobs, 0u);
  EXPECT_EQ(f.q.live_bytes(), 0u);
  EXPECT_TRUE(refusal(f.q, sized("p", 100)).empty());
}
