#include <gtest/gtest.h>

#include <iostream>

#include "messages/codec.hpp"
#include "src/queue/queue_service.hpp"

using namespace lull;

namespace {

/// The lease manager's answers to the queue's asks, as it sends them.
lease_grant_reply granted(const std::string& lease_id, const std::string& host,
                          std::uint64_t token = 1) {
  lease_grant_reply g;
  g.approved = true;
  g.lease_id = lease_id;
  g.host_id = host;
  g.fencing_token = token;
  return g;
}

lease_grant_reply denied(const std::string& reason, double retry_after_sec = 0) {
  lease_grant_reply g;
  g.reason = reason;
  g.retry_after_sec = retry_after_sec;
  return g;
}

struct fixture {
  double mono = 100;
  std::int64_t wall = 1795428000;
  int ids = 0;
  queue_service svc;
  fixture()
    : svc(queue_service_options{}, queue_config{}, {[this] { return mono; }, [this] { return wall; },
                   [this] { return "j" + std::to_string(++ids); }}) {}

  static mqtt_message msg(const std::string& topic, const nlohmann::json& body) {
    return {topic, body.dump(), 1, false, "", "", ""};
  }
  static std::optional<nlohmann::json> reply_on(const queue_output& out, const std::string& topic) {
    for (auto& m : out.publish)
      if (m.topic == topic)
        return decode(m.payload, wire_format::json);
    return std::nullopt;
  }
  std::string submit(nlohmann::json body) {
    body["reply_to"] = "p/inbox";
    auto out = svc.handle(msg("scheduler/job/submit", body));
    auto r = reply_on(out, "p/inbox");
    return r ? r->value("job_id", "") : "";
  }
};

} // namespace

TEST(queue_service, submit_replies_with_the_job_and_publishes_its_state) {
  fixture f;
  auto out = f.svc.handle(fixture::msg(
    "scheduler/job/submit",
    {{"job_type", "thumbs"}, {"priority", "Background"}, {"cost_class", "low"},
     {"payload", {{"path", "/p/1.jpg"}}}, {"reply_to", "p/inbox"}, {"request_id", "r1"}}));
  auto r = fixture::reply_on(out, "p/inbox");
  ASSERT_TRUE(r);
  EXPECT_TRUE((*r)["ok"].get<bool>());
  EXPECT_TRUE((*r)["created"].get<bool>());
  EXPECT_EQ((*r)["request_id"], "r1");
  EXPECT_EQ((*r)["job"]["priority"], "BACKGROUND");
  EXPECT_EQ((*r)["job"]["cost_units"], 5);
  auto state = fixture::reply_on(out, "scheduler/job/" + (*r)["job_id"].get<std::string>() + "/state");
  ASSERT_TRUE(state);
  EXPECT_EQ((*state)["state"], "queued");
  EXPECT_TRUE(fixture::reply_on(out, "scheduler/events"));
}

TEST(queue_service, bad_submissions_name_the_field) {
  fixture f;
  auto check = [&](nlohmann::json body, const std::string& field) {
    body["reply_to"] = "p/inbox";
    auto out = f.svc.handle(fixture::msg("scheduler/job/submit", body));
    auto r = fixture::reply_on(out, "p/inbox");
    ASSERT_TRUE(r) << body.dump();
    EXPECT_EQ((*r)["error"]["code"], "InvalidRequest");
    EXPECT_NE((*r)["error"]["message"].get<std::string>().find(field), std::string::npos)
      << (*r)["error"]["message"];
  };
  check({{"priority", "high"}}, "'job_type'");
  check({{"job_type", "t"}, {"priority", "urgent"}}, "'priority'");
  check({{"job_type", "t"}, {"cost_units", 0}}, "'cost_units'");
  check({{"job_type", "t"}, {"max_attempts", "3"}}, "'max_attempts'");
  check({{"job_type", "t"}, {"deadline", "tomorrow"}}, "'deadline'");
  check({{"job_type", "t"}, {"host_id", "a/b"}}, "'host_id'");
  check({{"job_type", "t"}, {"gpu", 17}}, "field 'gpu' must be an integer from 0 to 16");
  check({{"job_type", "t"}, {"gpu", "1"}}, "field 'gpu'");
  EXPECT_EQ(f.svc.queue().size(), 0u);

  // A malformed request is logged too (its sender may read no replies),
  // naming the topic and the field; a good one, or a refusal of state, is not.
  auto out = f.svc.handle(fixture::msg("scheduler/job/submit", {{"job_type", "t"}, {"priority", "urgent"}}));
  ASSERT_EQ(out.warnings.size(), 1u);
  EXPECT_EQ(out.warnings[0].rfind("rejected message on scheduler/job/submit: InvalidRequest: "
                                  "field 'priority'",
                                  0),
            0u)
    << out.warnings[0];
  out = f.svc.handle(fixture::msg("scheduler/job/submit", {{"job_type", "t"}}));
  EXPECT_TRUE(out.warnings.empty());
  out = f.svc.handle(fixture::msg("scheduler/job/nope/cancel", {{"reply_to", "p/inbox"}}));
  ASSERT_TRUE(fixture::reply_on(out, "p/inbox"));
  EXPECT_TRUE(out.warnings.empty()) << "a job not found is no malformed request";
}

TEST(queue_service, next_without_a_job_says_why_and_when_to_retry) {
  fixture f;
  auto out = f.svc.handle(fixture::msg(
    "scheduler/job/next", {{"worker_id", "w1"}, {"types", {"thumbs"}}, {"reply_to", "w/1"}}));
  auto r = fixture::reply_on(out, "w/1");
  ASSERT_TRUE(r);
  EXPECT_TRUE((*r)["job"].is_null());
  EXPECT_GT((*r)["retry_after_sec"].get<double>(), 0);
  EXPECT_NE((*r)["reason"].get<std::string>().find("thumbs"), std::string::npos);
}

TEST(queue_service, next_asks_for_a_lease_and_hands_out_job_and_lease) {
  fixture f;
  auto id = f.submit({{"job_type", "thumbs"}, {"cost_units", 30}, {"priority", "high"}});
  auto out = f.svc.handle(fixture::msg(
    "scheduler/job/next", {{"worker_id", "w1"}, {"host_id", "pi"}, {"reply_to", "w/1"}}));
  ASSERT_EQ(out.asks.size(), 1u);
  auto& ask = out.asks[0];
  EXPECT_EQ(ask.job_id, id);
  EXPECT_EQ(ask.cost_units, 30);
  EXPECT_EQ(ask.priority, work_priority::high);
  EXPECT_EQ(ask.host_id, "pi");
  auto done = f.svc.on_lease_reply(
    ask.ask_id, granted("L1", "pi", 7));
  auto r = fixture::reply_on(done, "w/1");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["job"]["job_id"], id);
  EXPECT_EQ((*r)["job"]["state"], "leased");
  EXPECT_EQ((*r)["lease"]["lease_id"], "L1");
  // The lease's release with an outcome completes the job.
  auto ev = f.svc.on_lease_outcome(
    {"released", "L1", "w1", "released", "succeeded", R"({"n":3})", ""});
  auto* j = f.svc.queue().get(id);
  EXPECT_EQ(j->state, job_state::succeeded);
  EXPECT_EQ(j->result["n"], 3);
  auto state = fixture::reply_on(ev, "scheduler/job/" + id + "/state");
  ASSERT_TRUE(state);
  EXPECT_EQ((*state)["state"], "succeeded");
}

TEST(queue_service, a_job_that_needs_a_gpu_asks_its_lease_for_it) {
  fixture f;
  auto id = f.submit({{"job_type", "render"}, {"gpu", 2}});
  EXPECT_EQ(f.svc.queue().get(id)->spec.gpu, 2);
  EXPECT_EQ(to_json(*f.svc.queue().get(id))["gpu"], 2);
  EXPECT_EQ(job_from_json(to_json(*f.svc.queue().get(id))).spec.gpu, 2) << "kept across restarts";
  auto out = f.svc.handle(fixture::msg(
    "scheduler/job/next", {{"worker_id", "w1"}, {"host_id", "desk"}, {"reply_to", "w/1"}}));
  ASSERT_EQ(out.asks.size(), 1u);
  EXPECT_EQ(out.asks[0].gpu, 2);
  EXPECT_EQ(to_lease_request(out.asks[0]).gpu, 2);
}

TEST(queue_service, a_denied_lease_is_reported_with_its_reason) {
  fixture f;
  f.submit({{"job_type", "t"}});
  auto out = f.svc.handle(fixture::msg("scheduler/job/next", {{"worker_id", "w"}, {"reply_to", "w/1"}}));
  ASSERT_EQ(out.asks.size(), 1u);
  auto r = fixture::reply_on(
    f.svc.on_lease_reply(out.asks[0].ask_id, denied("System is BUSY; waiting for QUIET", 12.5)),
    "w/1");
  ASSERT_TRUE(r);
  EXPECT_TRUE((*r)["job"].is_null());
  EXPECT_EQ((*r)["reason"], "System is BUSY; waiting for QUIET");
  EXPECT_DOUBLE_EQ((*r)["retry_after_sec"].get<double>(), 12.5);
  EXPECT_EQ(f.svc.queue().list(job_state::queued, "", "", 10).size(), 1u);
}

TEST(queue_service, a_waiting_worker_gets_the_job_submitted_later) {
  fixture f;
  auto out = f.svc.handle(fixture::msg(
    "scheduler/job/next", {{"worker_id", "w"}, {"wait_sec", 30}, {"reply_to", "w/1"}}));
  EXPECT_FALSE(fixture::reply_on(out, "w/1"));
  EXPECT_TRUE(out.asks.empty());
  auto sub = f.svc.handle(fixture::msg("scheduler/job/submit", {{"job_type", "t"}, {"reply_to", "p"}}));
  ASSERT_EQ(sub.asks.size(), 1u);
  f.mono += 31; // the wait is over: a denial is the final answer now
  auto r = fixture::reply_on(f.svc.on_lease_reply(sub.asks[0].ask_id,
                                                  denied("busy")),
                             "w/1");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["reason"], "busy");
}

TEST(queue_service, an_expired_lease_requeues_and_cancel_revokes) {
  fixture f;
  auto id = f.submit({{"job_type", "t"}});
  auto out = f.svc.handle(fixture::msg("scheduler/job/next", {{"worker_id", "w"}, {"reply_to", "w/1"}}));
  f.svc.on_lease_reply(out.asks[0].ask_id, granted("L1", "h"));
  f.svc.on_lease_outcome({"running", "L1", "w", {}, {}, {}, {}});
  EXPECT_EQ(f.svc.queue().get(id)->state, job_state::running);
  f.svc.on_lease_outcome({"expired", "L1", "w", "heartbeat missed", {}, {}, {}});
  EXPECT_EQ(f.svc.queue().get(id)->state, job_state::queued);
  // Not handed out again before queue.retry_backoff (10 s after one attempt).
  out = f.svc.handle(fixture::msg("scheduler/job/next", {{"worker_id", "w2"}, {"reply_to", "w/2"},
                                                         {"wait_sec", 0}}));
  EXPECT_TRUE(out.asks.empty());
  f.wall += 10;
  out = f.svc.handle(fixture::msg("scheduler/job/next", {{"worker_id", "w"}, {"reply_to", "w/1"}}));
  ASSERT_EQ(out.asks.size(), 1u);
  f.svc.on_lease_reply(out.asks[0].ask_id, granted("L2", "h"));
  auto c = f.svc.handle(fixture::msg("scheduler/job/" + id + "/cancel", {{"reply_to", "p"}}));
  ASSERT_EQ(c.revoke.size(), 1u);
  EXPECT_EQ(c.revoke[0].first, "L2");
  EXPECT_EQ(f.svc.queue().get(id)->state, job_state::cancelled);
  auto again = fixture::reply_on(
    f.svc.handle(fixture::msg("scheduler/job/" + id + "/cancel", {{"reply_to", "p"}})), "p");
  EXPECT_EQ((*again)["error"]["code"], "InvalidStateTransition");
  auto missing = fixture::reply_on(
    f.svc.handle(fixture::msg("scheduler/job/nope/cancel", {{"reply_to", "p"}})), "p");
  EXPECT_EQ((*missing)["error"]["code"], "ResourceNotFound");
}

TEST(queue_service, list_and_get) {
  fixture f;
  auto a = f.submit({{"job_type", "t"}});
  f.submit({{"job_type", "u"}});
  auto l = fixture::reply_on(f.svc.handle(fixture::msg("scheduler/job/list",
                                                       {{"job_type", "t"}, {"reply_to", "x"}})),
                             "x");
  ASSERT_TRUE(l);
  ASSERT_EQ((*l)["jobs"].size(), 1u);
  EXPECT_EQ((*l)["depths"]["normal"], 2);
  auto g = fixture::reply_on(
    f.svc.handle(fixture::msg("scheduler/job/get", {{"job_id", a}, {"reply_to", "x"}})), "x");
  EXPECT_EQ((*g)["job"]["job_id"], a);
}

TEST(queue_service, a_purged_job_clears_its_retained_state) {
  double mono = 100;
  int ids = 0;
  queue_config qc;
  qc.finished_kept = 2;
  queue_service svc(queue_service_options{}, qc,
                    {[&] { return mono; }, [] { return std::int64_t{1795428000}; },
                     [&] { return "j" + std::to_string(++ids); }});
  std::vector<std::string> cleared;
  for (int i = 0; i < 4; ++i) {
    svc.handle(fixture::msg("scheduler/job/submit", {{"job_type", "t"}, {"reply_to", "p"}}));
    auto out = svc.handle(
      fixture::msg("scheduler/job/j" + std::to_string(i + 1) + "/cancel", {{"reply_to", "p"}}));
    for (auto& m : out.publish)
      if (m.retain && m.payload.empty())
        cleared.push_back(m.topic);
  }
  // Two finished jobs are kept; the two before them are forgotten, and the
  // broker is told to forget their retained states too.
  EXPECT_EQ(cleared, (std::vector<std::string>{"scheduler/job/j1/state", "scheduler/job/j2/state"}));
  EXPECT_EQ(svc.queue().get("j1"), nullptr);
}

TEST(queue_service, secure_mode_takes_identities_from_topics) {
  queue_service_options o;
  o.security.secure = true;
  double mono = 100;
  int ids = 0;
  queue_service svc(o, queue_config{},
                    {[&] { return mono; }, [] { return std::int64_t{1795428000}; },
                     [&] { return "j" + std::to_string(++ids); }});
  auto msg = fixture::msg;
  // The open topics are not listened to in secure mode.
  for (auto& f : svc.filters())
    EXPECT_EQ(f.rfind("scheduler/+/job/", 0), 0u) << f;
  // The producer comes from the topic, whatever the payload says.
  auto out = svc.handle(msg("scheduler/wa/job/submit",
                            {{"job_type", "t"}, {"producer", "wb"}, {"reply_to", "workers/wa/r"}}));
  auto r = fixture::reply_on(out, "workers/wa/r");
  ASSERT_TRUE(r);
  auto id = (*r)["job_id"].get<std::string>();
  EXPECT_EQ((*r)["job"]["producer"], "wa");
  // A reply outside the sender's inbox is not sent, and it is said why.
  out = svc.handle(msg("scheduler/wb/job/list", {{"reply_to", "workers/wa/r"}}));
  EXPECT_TRUE(out.publish.empty());
  ASSERT_EQ(out.warnings.size(), 1u);
  EXPECT_NE(out.warnings[0].find("workers/wb/"), std::string::npos) << out.warnings[0];
  EXPECT_EQ(svc.unanswerable(), 1u);
  // Another user cannot read, list or cancel the job; its producer and the admin can.
  out = svc.handle(msg("scheduler/wb/job/get", {{"job_id", id}, {"reply_to", "workers/wb/r"}}));
  r = fixture::reply_on(out, "workers/wb/r");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["error"]["code"], "NotHolder");
  out = svc.handle(msg("scheduler/wb/job/list", {{"reply_to", "workers/wb/r"}}));
  r = fixture::reply_on(out, "workers/wb/r");
  ASSERT_TRUE(r);
  EXPECT_TRUE((*r)["jobs"].empty());
  out = svc.handle(msg("scheduler/wb/job/" + id + "/cancel", {{"reply_to", "workers/wb/r"}}));
  r = fixture::reply_on(out, "workers/wb/r");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["error"]["code"], "NotHolder");
  EXPECT_NE((*r)["error"]["message"].get<std::string>().find("submitted by wa"), std::string::npos);
  out = svc.handle(msg("scheduler/lull-admin/job/list", {{"reply_to", "workers/lull-admin/r"}}));
  r = fixture::reply_on(out, "workers/lull-admin/r");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["jobs"].size(), 1u);
  // The worker id of a `next` is the topic's user: the lease is asked for wb.
  out = svc.handle(msg("scheduler/wb/job/next",
                       {{"worker_id", "wa"}, {"types", {"t"}}, {"reply_to", "workers/wb/r"}}));
  ASSERT_EQ(out.asks.size(), 1u);
  EXPECT_EQ(out.asks[0].worker_id, "wb");
  out = svc.handle(msg("scheduler/wa/job/" + id + "/cancel", {{"reply_to", "workers/wa/r"}}));
  r = fixture::reply_on(out, "workers/wa/r");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["ok"], true) << r->dump();
}

// -- a write that fails: nothing acknowledged, nothing half-done -----------

namespace {

struct held {
  double mono = 100;
  std::int64_t wall = 1795428000;
  int ids = 0;
  queue_service svc;
  held()
    : svc(
        [] {
          queue_service_options o;
          o.hold_acks = true;
          return o;
        }(),
        queue_config{},
        {[this] { return mono; }, [this] { return wall; },
         [this] { return "j" + std::to_string(++ids); }}) {}
  /// What the dispatcher does after a successful write.
  queue_output written(queue_output out) {
    svc.queue().take_dirty();
    svc.committed(out);
    return out;
  }
  queue_output failed(queue_output out) {
    svc.queue().take_dirty();
    return svc.roll_back(std::move(out), "database or disk is full");
  }
};

} // namespace

TEST(queue_service_writes, a_submit_that_cannot_be_written_answers_internal_error_and_keeps_nothing) {
  held h;
  nlohmann::json body = {{"job_type", "t"}, {"idempotency_key", "k1"}, {"reply_to", "p/inbox"}};
  auto out = h.svc.handle(fixture::msg("scheduler/job/submit", body));
  EXPECT_FALSE(fixture::reply_on(out, "p/inbox")) << "the reply waits for the write";
  out = h.failed(std::move(out));
  auto r = fixture::reply_on(out, "p/inbox");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["error"]["code"], "InternalError");
  EXPECT_NE((*r)["error"]["message"].get<std::string>().find("database or disk is full"),
            std::string::npos);
  EXPECT_FALSE(fixture::reply_on(out, "scheduler/events")) << "no event for a job that is not";
  EXPECT_EQ(h.svc.queue().size(), 0u);
  // The producer's retry with the same key creates the job and is written.
  auto again = h.written(h.svc.handle(fixture::msg("scheduler/job/submit", body)));
  auto r2 = fixture::reply_on(again, "p/inbox");
  ASSERT_TRUE(r2);
  EXPECT_TRUE((*r2)["created"].get<bool>());
  EXPECT_EQ(h.svc.queue().size(), 1u);
}

TEST(queue_service_writes, a_hand_out_that_cannot_be_written_answers_the_worker_and_revokes_the_lease) {
  held h;
  h.written(h.svc.handle(fixture::msg("scheduler/job/submit",
                                      {{"job_type", "t"}, {"reply_to", "p/inbox"}})));
  auto next = h.written(h.svc.handle(
    fixture::msg("scheduler/job/next", {{"worker_id", "w1"}, {"reply_to", "w/1"}, {"wait_sec", 30}})));
  ASSERT_EQ(next.asks.size(), 1u);
  auto out = h.failed(h.svc.on_lease_reply(
    next.asks[0].ask_id, granted("L1", "pi")));
  auto r = fixture::reply_on(out, "w/1");
  ASSERT_TRUE(r) << "the worker is answered, not left waiting";
  EXPECT_EQ((*r)["error"]["code"], "InternalError");
  ASSERT_EQ(out.revoke.size(), 1u);
  EXPECT_EQ(out.revoke[0].first, "L1");
  EXPECT_EQ(h.svc.depths()["normal"], 1u) << "the job is queued again, not skipped";
  // The next worker gets it.
  auto n2 = h.written(h.svc.handle(
    fixture::msg("scheduler/job/next", {{"worker_id", "w2"}, {"reply_to", "w/2"}})));
  EXPECT_EQ(n2.asks.size(), 1u);
}

TEST(queue_service_writes, a_failed_write_withdraws_its_asks_so_the_worker_is_asked_for_again) {
  held h;
  // A worker parks, then a submit finds it: the submit's write fails.
  h.written(h.svc.handle(
    fixture::msg("scheduler/job/next", {{"worker_id", "w1"}, {"reply_to", "w/1"}, {"wait_sec", 30}})));
  auto sub = h.svc.handle(fixture::msg("scheduler/job/submit",
                                       {{"job_type", "t"}, {"reply_to", "p/inbox"}}));
  ASSERT_EQ(sub.asks.size(), 1u);
  h.failed(std::move(sub));
  // Once the job is written, the parked worker is asked for at once.
  auto ok = h.written(h.svc.handle(fixture::msg("scheduler/job/submit",
                                                {{"job_type", "t"}, {"reply_to", "p/inbox"}})));
  EXPECT_EQ(ok.asks.size(), 1u) << "the worker's first ask was withdrawn, not left in flight";
}

TEST(queue_service_writes, a_completion_that_cannot_be_written_can_be_applied_again) {
  held h;
  h.written(h.svc.handle(fixture::msg("scheduler/job/submit",
                                      {{"job_type", "t"}, {"reply_to", "p/inbox"}})));
  auto next = h.written(h.svc.handle(
    fixture::msg("scheduler/job/next", {{"worker_id", "w1"}, {"reply_to", "w/1"}})));
  ASSERT_EQ(next.asks.size(), 1u);
  auto job_id = next.asks[0].job_id;
  h.written(h.svc.on_lease_reply(next.asks[0].ask_id,
                                 granted("L1", "pi")));
  lease_outcome done{"released", "L1", "w1", "released", "succeeded", "", ""};
  h.failed(h.svc.on_lease_outcome(done));
  EXPECT_EQ(h.svc.queue().get(job_id)->state, job_state::leased);
  h.written(h.svc.on_lease_outcome(done));
  EXPECT_EQ(h.svc.queue().get(job_id)->state, job_state::succeeded);
}

TEST(queue_service, no_job_is_proposed_while_lulld_is_off_the_broker) {
  fixture f;
  f.submit({{"job_type", "t"}});
  f.svc.set_bus_up(false);
  auto out = f.svc.handle(fixture::msg(
    "scheduler/job/next", {{"worker_id", "w1"}, {"reply_to", "w/1"}, {"wait_sec", 30}}));
  EXPECT_TRUE(out.asks.empty()) << "a lease granted now would reach the worker too late";
  EXPECT_FALSE(fixture::reply_on(out, "w/1")) << "the worker stays parked";
  f.svc.set_bus_up(true);
  f.mono += 1;
  auto back = f.svc.tick();
  EXPECT_EQ(back.asks.size(), 1u);
}

TEST(queue_service, secure_mode_lets_only_high_users_submit_high_jobs) {
  queue_service_options o;
  o.security.secure = true;
  o.security.high_users = {"lull-admin", "ops"};
  double mono = 100;
  int ids = 0;
  queue_service svc(o, queue_config{},
                    {[&] { return mono; }, [] { return std::int64_t{1795428000}; },
                     [&] { return "j" + std::to_string(++ids); }});
  auto msg = fixture::msg;
  auto out = svc.handle(msg("scheduler/wa/job/submit",
                            {{"job_type", "t"}, {"priority", "high"}, {"reply_to", "workers/wa/r"}}));
  auto r = fixture::reply_on(out, "workers/wa/r");
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["ok"], false);
  EXPECT_EQ((*r)["error"]["code"], "PermissionDenied");
  EXPECT_EQ((*r)["error"]["message"],
            "user 'wa' may not submit a HIGH job: HIGH priority is for lease.high_users "
            "(lull-admin, ops)");
  // Below HIGH, and HIGH from a listed user, go in.
  out = svc.handle(msg("scheduler/wa/job/submit",
                       {{"job_type", "t"}, {"priority", "normal"}, {"reply_to", "workers/wa/r"}}));
  EXPECT_EQ((*fixture::reply_on(out, "workers/wa/r"))["ok"], true);
  out = svc.handle(msg("scheduler/ops/job/submit",
                       {{"job_type", "t"}, {"priority", "high"}, {"reply_to", "workers/ops/r"}}));
  auto ok = fixture::reply_on(out, "workers/ops/r");
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)["ok"], true);
  EXPECT_EQ((*ok)["job"]["priority"], "HIGH");
}

// -- replies that fit: job lists page within limits.max_reply_bytes ---------

namespace {

struct budgeted {
  double mono = 100;
  std::int64_t wall = 1795428000;
  int ids = 0;
  queue_service svc;
  explicit budgeted(std::size_t max_reply_bytes)
    : svc(
        [&] {
          queue_service_options o;
          o.limits.max_reply_bytes = max_reply_bytes;
          return o;
        }(),
        queue_config{},
        {[this] { return mono; }, [this] { return wall; },
         [this] { return "j" + std::to_string(1000 + ++ids); }}) {}

  /// The reply to `body` on `topic`, with its size on the wire.
  std::pair<nlohmann::json, std::size_t> ask(const std::string& topic, nlohmann::json body) {
    body["reply_to"] = "x";
    auto out = svc.handle(fixture::msg(topic, body));
    for (auto& m : out.publish)
      if (m.topic == "x")
        return {*decode(m.payload, wire_format::json), m.payload.size()};
    return {nlohmann::json(), 0};
  }
  std::string submit(std::size_t payload_bytes) {
    auto [r, n] = ask("scheduler/job/submit",
                      {{"job_type", "t"}, {"payload", {{"blob", std::string(payload_bytes, 'p')}}}});
    return r.value("job_id", "");
  }
};

} // namespace

TEST(queue_service_pages, a_list_pages_within_the_budget_and_the_cursor_loses_and_repeats_nothing) {
  budgeted f(16384);
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i)
    ids.push_back(f.submit(1000));
  ASSERT_EQ(ids.back().empty(), false);
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  while (true) {
    nlohmann::json body = {{"limit", 1000}};
    if (!cursor.empty())
      body["cursor"] = cursor;
    auto [r, bytes] = f.ask("scheduler/job/list", body);
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
    EXPECT_LE(bytes, 16384u);
    EXPECT_EQ(r["depths"]["normal"], ids.size()) << "every page carries the depths";
    ++pages;
    for (auto& j : r["jobs"]) {
      seen.push_back(j["job_id"].get<std::string>());
      EXPECT_TRUE(j["payload"]["blob"].is_string()) << "a small payload is inlined";
    }
    // Jobs submitted while a client pages come after it.
    if (pages == 2)
      ids.push_back(f.submit(10));
    if (!r.contains("next"))
      break;
    cursor = r["next"].get<std::string>();
    ASSERT_LT(pages, 100);
  }
  EXPECT_EQ(seen, ids);
  EXPECT_GE(pages, 4);
  std::cout << "[ info ] 41 jobs of ~1.7 kB in " << pages << " pages of at most 16384 bytes\n";
}

TEST(queue_service_pages, large_payloads_are_left_out_of_lists_with_their_size_and_get_returns_them) {
  budgeted f(256 * 1024);
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(f.submit(60000));
  auto [r, bytes] = f.ask("scheduler/job/list", {{"limit", 100}});
  ASSERT_EQ(r["jobs"].size(), 20u) << r.dump().substr(0, 500);
  EXPECT_FALSE(r.contains("next"));
  EXPECT_LT(bytes, 32 * 1024u) << "20 jobs without their 60 kB payloads";
  for (auto& j : r["jobs"]) {
    EXPECT_FALSE(j.contains("payload"));
    EXPECT_GT(j["payload_bytes"].get<std::size_t>(), 60000u);
    EXPECT_EQ(j["result_bytes"], 4u); // null
  }
  auto [g, gbytes] = f.ask("scheduler/job/get", {{"job_id", ids[3]}});
  EXPECT_EQ(g["job"]["payload"]["blob"].get<std::string>().size(), 60000u);
  EXPECT_LE(gbytes, 256 * 1024u);
  std::cout << "[ info ] list of 20 jobs with 60 kB payloads: one reply of " << bytes
            << " bytes\n";
}

TEST(queue_service_pages, a_job_too_large_for_the_budget_is_reply_too_large_naming_the_limit) {
  // Stored while the budget was larger (a restart with a lower one).
  budgeted big(256 * 1024);
  auto id = big.submit(6000);
  budgeted f(4096);
  f.svc.queue().restore(*big.svc.queue().get(id));
  auto [g, n] = f.ask("scheduler/job/get", {{"job_id", id}});
  EXPECT_EQ(g["error"]["code"], "ReplyTooLarge") << g.dump();
  auto msg = g["error"]["message"].get<std::string>();
  EXPECT_NE(msg.find("job " + id), std::string::npos) << msg;
  EXPECT_NE(msg.find("4096 bytes"), std::string::npos) << msg;
  EXPECT_LE(n, 4096u);
  // Not handed out to a worker who could never be told it, and the worker hears why.
  auto [next, nn] = f.ask("scheduler/job/next", {{"worker_id", "w"}});
  EXPECT_TRUE(next["job"].is_null()) << next.dump();
  EXPECT_NE(next["reason"].get<std::string>().find("limits.max_reply_bytes"), std::string::npos)
    << next.dump();
  // A new submit that could never be handed out is refused at once.
  auto [s, sn] = f.ask("scheduler/job/submit",
                       {{"job_type", "t"}, {"payload", std::string(3000, 'z')}});
  EXPECT_EQ(s["error"]["code"], "PayloadTooLarge") << s.dump();
  EXPECT_NE(s["error"]["message"].get<std::string>().find("2048 bytes"), std::string::npos)
    << s.dump();
  // Listed, without its payload; under this budget payloads over 512
  // bytes stay out, so any job fits a page.
  big.submit(600);
  f.svc.queue().restore(*big.svc.queue().list(std::nullopt, "", "", 10)[1]);
  auto [l, ln] = f.ask("scheduler/job/list", nlohmann::json::object());
  ASSERT_EQ(l["jobs"].size(), 2u) << l.dump();
  EXPECT_FALSE(l["jobs"][0].contains("payload"));
  EXPECT_FALSE(l["jobs"][1].contains("payload"));
  EXPECT_EQ(l["jobs"][1]["payload_bytes"], 611u);
  EXPECT_LE(ln, 4096u);
  EXPECT_EQ(f.svc.queue().size(), 2u);
}

TEST(queue_service_pages, a_bad_cursor_is_an_invalid_request) {
  budgeted f(4096);
  f.submit(10);
  for (auto bad : {nlohmann::json("x17"), nlohmann::json("j"), nlohmann::json("j-1"),
                   nlohmann::json(17), nlohmann::json("j99999999999999999999999")}) {
    auto [r, n] = f.ask("scheduler/job/list", {{"cursor", bad}});
    EXPECT_EQ(r["error"]["code"], "InvalidRequest") << bad.dump() << " " << r.dump();
    EXPECT_NE(r["error"]["message"].get<std::string>().find("'cursor'"), std::string::npos);
  }
  // The cursor of the last job: an empty page, no next.
  auto [all, n] = f.ask("scheduler/job/list", nlohmann::json::object());
  auto [rest, m] = f.ask("scheduler/job/list", {{"cursor", "j" + all["jobs"][0]["seq"].dump()}});
  EXPECT_TRUE(rest["jobs"].empty());
  EXPECT_FALSE(rest.contains("next"));
}

// A producer past its quota gets RequestThrottled naming the limit and its
// count, while another producer's submit is still accepted.
TEST(queue_service, a_producer_past_its_quota_is_throttled_by_name) {
  double mono = 100;
  int ids = 0;
  queue_config qc;
  qc.max_jobs_per_producer = 2;
  queue_service svc(queue_service_options{}, qc,
                    {[&] { return mono; }, [] { return std::int64_t{1795428000}; },
                     [&] { return "j" + std::to_string(++ids); }});
  auto submit = [&](const std::string& producer) {
    auto out = svc.handle(fixture::msg(
      "scheduler/job/submit",
      {{"job_type", "t"}, {"producer", producer}, {"payload", {{"n", 1}}}, {"reply_to", "p"}}));
    auto r = fixture::reply_on(out, "p");
    return r ? *r : nlohmann::json();
  };
  EXPECT_TRUE(submit("flood").value("ok", false));
  EXPECT_TRUE(submit("flood").value("ok", false));
  auto refused = submit("flood");
  EXPECT_FALSE(refused.value("ok", true));
  EXPECT_EQ(refused["error"]["code"], "RequestThrottled");
  auto why = refused["error"]["message"].get<std::string>();
  EXPECT_NE(why.find("producer 'flood' has 2 jobs"), std::string::npos) << why;
  EXPECT_NE(why.find("queue.max_jobs_per_producer"), std::string::npos) << why;
  EXPECT_TRUE(submit("other").value("ok", false));
  EXPECT_EQ(svc.queue().size(), 3u);
}
