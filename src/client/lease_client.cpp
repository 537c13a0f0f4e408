#include "src/client/lease_client.hpp"

#include <algorithm>
#include <thread>
#include <ctime>

#include "messages/codec.hpp"
#include "messages/util.hpp"

namespace lull {

namespace {

/// The worker's retained status (online, offline as its last will, stopped).
mqtt_message worker_status(const topic_names& topics, const std::string& worker,
                           const char* status) {
  return retained_json(topics.worker_status(worker),
                       nlohmann::json{{"v", 1}, {"worker_id", worker}, {"status", status}});
}

/// Forwards transport events to the client while it exists; the transport
/// holds this, not the client.
struct forwarder : transport_events {
  std::mutex mtx;
  transport_events* target = nullptr;
  template <class F>
  void with(F f) {
    std::lock_guard<std::mutex> guard(mtx);
    if (target != nullptr)
      f(*target);
  }
  void on_connected(int v) override {
    with([&](auto& t) { t.on_connected(v); });
  }
  void on_connect_failed(std::string r, bool retry_now) override {
    with([&](auto& t) { t.on_connect_failed(r, retry_now); });
  }
  void on_connection_lost(std::string r) override {
    with([&](auto& t) { t.on_connection_lost(r); });
  }
  void on_message(mqtt_message m) override {
    with([&](auto& t) { t.on_message(std::move(m)); });
  }
  void on_disconnected() override {
    with([](auto& t) { t.on_disconnected(); });
  }
};

call_error timeout_error(std::chrono::milliseconds t, const std::string& what) {
  return {true,
          {lease_error_code::internal_error,
           "no reply from lulld to the " + what + " within "
             + std::to_string(t.count() / 1000.0).substr(0, 4) + "s (is lulld running?)"}};
}

std::optional<call_error> error_of(const nlohmann::json& j) {
  if (j.is_object() && j.value("ok", true) == false) {
    call_error e;
    auto& err = j["error"];
    std::string code = err.is_object() ? err.value("code", "InternalError") : "InternalError";
    e.error.code = lease_error_code::internal_error;
    for (int c = 0; c <= static_cast<int>(lease_error_code::internal_error); ++c)
      if (code == to_string(static_cast<lease_error_code>(c)))
        e.error.code = static_cast<lease_error_code>(c);
    e.error.message = err.is_object() ? err.value("message", "") : "";
    if (auto it = j.find("retry_after_sec"); it != j.end() && it->is_number())
      e.retry_after_sec = std::clamp(it->get<double>(), 0.0, 60.0);
    return e;
  }
  return std::nullopt;
}

} // namespace

lease_client::lease_client(lease_client_options opts)
  : opts_(std::move(opts)), topics_(opts_.topic_prefix) {
  nonce_ = random_lease_id().substr(0, 12);
  reply_topic_ = topics_.full("workers/" + opts_.worker_id + "/reply/" + nonce_);
}

std::variant<std::unique_ptr<lease_client>, std::string>
lease_client::connect(lease_client_options opts) {
  if (!valid_id(opts.worker_id))
    return std::string("worker id '" + opts.worker_id
                       + "' must be 1-64 characters from [a-zA-Z0-9_-]");
  std::unique_ptr<lease_client> c(new lease_client(std::move(opts)));
  auto fwd = std::make_shared<forwarder>();
  fwd->target = c.get();
  c->self_events_ = fwd;
  transport_options t;
  t.uri = c->opts_.uri;
  t.client_id = "lull-" + c->opts_.worker_id + "-" + c->nonce_;
  t.username = c->opts_.username;
  t.password = c->opts_.password;
  t.prefer_v5 = c->opts_.mqtt_version != "3.1.1";
  t.fallback = c->opts_.mqtt_version == "auto";
  t.ca_file = c->opts_.ca_file;
  t.cert_file = c->opts_.cert_file;
  t.key_file = c->opts_.key_file;
  if (c->opts_.announce)
    t.will = worker_status(c->topics_, c->opts_.worker_id, "offline");
  c->transport_ = make_paho_transport(t, fwd);
  c->transport_->connect();
  std::unique_lock<std::mutex> guard(c->mtx_);
  auto deadline = std::chrono::steady_clock::now() + c->opts_.connect_timeout;
  while (!c->connected_) {
    if (c->cv_.wait_until(guard, deadline) == std::cv_status::timeout)
      break;
    if (!c->connected_ && c->connect_retry_now_) {
      c->connect_error_.clear();
      c->connect_retry_now_ = false;
      guard.unlock();
      c->transport_->connect();
      guard.lock();
    } else if (!c->connected_ && !c->connect_error_.empty()) {
      break;
    }
  }
  if (!c->connected_) {
    auto why = c->connect_error_.empty() ? std::string("timed out") : c->connect_error_;
    guard.unlock();
    return "cannot connect to " + c->opts_.uri + ": " + why;
  }
  guard.unlock();
  if (c->opts_.announce)
    c->transport_->publish(worker_status(c->topics_, c->opts_.worker_id, "online"));
  return c;
}

lease_client::~lease_client() {
  if (auto fwd = std::static_pointer_cast<forwarder>(self_events_)) {
    {
      std::unique_lock<std::mutex> guard(mtx_);
      connected_ = false;
    }
    if (transport_) {
      mqtt_message last;
      if (opts_.announce)
        last = worker_status(topics_, opts_.worker_id, "stopped");
      transport_->disconnect(last, std::chrono::milliseconds(1000));
      std::unique_lock<std::mutex> guard(mtx_);
      cv_.wait_for(guard, std::chrono::milliseconds(1500), [this] { return disconnected_; });
    }
    std::lock_guard<std::mutex> guard(fwd->mtx);
    fwd->target = nullptr;
  }
  transport_.reset();
}

int lease_client::mqtt_version() const { return transport_ ? transport_->mqtt_version() : 5; }

void lease_client::on_connected(int) {
  std::vector<std::string> filters = {reply_topic_};
  if (opts_.secure)
    filters.push_back(topics_.full("workers/" + opts_.worker_id + "/lease/+/state"));
  {
    std::lock_guard<std::mutex> guard(mtx_);
    for (auto& [id, fn] : watchers_)
      if (!opts_.secure)
        filters.push_back(state_topic(id));
    if (status_subscribed_)
      filters.push_back(topics_.scheduler_status());
    filters.insert(filters.end(), followed_.begin(), followed_.end());
  }
  transport_->subscribe(filters, 1);
  std::function<void()> hook;
  bool again = false;
  {
    std::lock_guard<std::mutex> guard(mtx_);
    again = ever_connected_;
    connected_ = ever_connected_ = true;
    hook = on_reconnect_;
    cv_.notify_all();
  }
  if (!again)
    return;
  // The broker may have fired this worker's last will while it was away.
  if (opts_.announce)
    transport_->publish(worker_status(topics_, opts_.worker_id, "online"));
  if (hook)
    hook();
}

void lease_client::on_reconnect(std::function<void()> fn) {
  std::lock_guard<std::mutex> guard(mtx_);
  on_reconnect_ = std::move(fn);
}

bool lease_client::connected() {
  std::lock_guard<std::mutex> guard(mtx_);
  return connected_;
}

void lease_client::on_connect_failed(std::string reason, bool retry_now) {
  std::lock_guard<std::mutex> guard(mtx_);
  connect_error_ = std::move(reason);
  connect_retry_now_ = retry_now;
  cv_.notify_all();
}

void lease_client::on_connection_lost(std::string) {
  std::lock_guard<std::mutex> guard(mtx_);
  connected_ = false;
}

void lease_client::on_disconnected() {
  std::lock_guard<std::mutex> guard(mtx_);
  disconnected_ = true;
  cv_.notify_all();
}

void lease_client::on_message(mqtt_message msg) {
  auto doc = decode(msg.payload, detect_format(msg.payload, msg.content_type));
  if (!doc || !doc->is_object())
    return;
  std::function<void(const std::string&, const nlohmann::json&)> follower;
  {
    std::lock_guard<std::mutex> guard(mtx_);
    for (auto& f : followed_)
      if (topic_matches(f, msg.topic)) {
        follower = follower_;
        break;
      }
  }
  if (follower) {
    auto prefix = topics_.full("x");
    prefix.pop_back();
    follower(msg.topic.substr(msg.topic.rfind(prefix, 0) == 0 ? prefix.size() : 0), *doc);
  }
  std::function<void(const lease_notice&)> fn;
  lease_notice notice;
  {
    std::lock_guard<std::mutex> guard(mtx_);
    if (msg.topic == reply_topic_) {
      std::string key = !msg.correlation_data.empty() ? msg.correlation_data
                                                      : peek_string(*doc, "request_id");
      if (auto it = pending_.find(key); it != pending_.end()) {
        it->second = std::move(*doc);
        cv_.notify_all();
      }
      return;
    }
    if (msg.topic == topics_.scheduler_status()) {
      status_ = std::move(*doc);
      cv_.notify_all();
      return;
    }
    notice.lease_id = peek_string(*doc, "lease_id");
    notice.state = peek_string(*doc, "state");
    notice.reason = peek_string(*doc, "reason");
    notice.type = peek_string(*doc, "type");
    if (doc->is_object()) {
      if (auto it = doc->find("suspended"); it != doc->end() && it->is_boolean())
        notice.suspended = it->get<bool>();
      if (auto it = doc->find("preempted"); it != doc->end() && it->is_boolean())
        notice.preempted = it->get<bool>();
    }
    if (auto it = watchers_.find(notice.lease_id); it != watchers_.end())
      fn = it->second;
    cv_.notify_all();
  }
  if (fn && !notice.state.empty())
    fn(notice);
}

std::string lease_client::action_topic(const std::string& lease_id,
                                       const std::string& action) const {
  if (opts_.secure)
    return topics_.full("scheduler/" + opts_.worker_id + "/lease/" + lease_id + "/" + action);
  return topics_.lease_action(lease_id, action);
}

std::string lease_client::request_topic(const std::string& relative) const {
  if (!opts_.secure)
    return topics_.full(relative);
  auto slash = relative.find('/');
  if (slash == std::string::npos)
    return topics_.full(relative);
  return topics_.full(relative.substr(0, slash) + "/" + opts_.worker_id + relative.substr(slash));
}

std::string lease_client::state_topic(const std::string& lease_id) const {
  if (opts_.secure)
    return topics_.full("workers/" + opts_.worker_id + "/lease/" + lease_id + "/state");
  return topics_.lease_action(lease_id, "state");
}

std::variant<nlohmann::json, call_error> lease_client::call(const std::string& topic,
                                                            nlohmann::json body,
                                                            std::chrono::milliseconds timeout,
                                                            const std::function<bool()>& cancelled) {
  std::string key;
  {
    std::lock_guard<std::mutex> guard(mtx_);
    key = nonce_ + "-" + std::to_string(++next_id_);
    pending_[key];
  }
  body["v"] = schema_version;
  body["request_id"] = key;
  body["reply_to"] = reply_topic_; // for a v3.1.1 connection; v5 uses the property
  if (!opts_.secure)
    body["worker_id"] = opts_.worker_id;
  // Nobody waits for the answer after `timeout`: the broker drops a v5
  // request it could not deliver by then (Message Expiry Interval), and
  // lulld drops one whose deadline passed (a request queued for lulld while
  // it was down must not be acted on at its restart).
  auto secs = std::max<std::int64_t>(
    1, std::chrono::duration_cast<std::chrono::seconds>(timeout + std::chrono::milliseconds(999))
         .count());
  body["deadline"] = static_cast<double>(std::time(nullptr) + secs);
  mqtt_message m{topic, body.dump(), 1, false, json_content_type, reply_topic_, key};
  m.expiry_sec = static_cast<std::uint32_t>(secs);
  transport_->publish(m);
  std::unique_lock<std::mutex> guard(mtx_);
  if (!cancelled) {
    cv_.wait_for(guard, timeout, [&] { return pending_[key].has_value(); });
  } else {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pending_[key].has_value() && std::chrono::steady_clock::now() < deadline) {
      cv_.wait_for(guard, std::chrono::milliseconds(100),
                   [&] { return pending_[key].has_value(); });
      if (!pending_[key].has_value()) {
        guard.unlock();
        bool stop = cancelled();
        guard.lock();
        if (stop)
          break;
      }
    }
  }
  auto reply = std::move(pending_[key]);
  pending_.erase(key);
  guard.unlock();
  if (!reply)
    return timeout_error(timeout, topic.substr(topic.rfind('/') + 1));
  if (auto e = error_of(*reply))
    return *e;
  return std::move(*reply);
}

std::variant<lease_grant_reply, call_error> lease_client::request(lease_request req,
                                                                  std::chrono::milliseconds timeout) {
  nlohmann::json body = nlohmann::json::object();
  if (!req.job_type.empty())
    body["job_type"] = req.job_type;
  if (!req.host_id.empty())
    body["host_id"] = req.host_id;
  if (req.cost_units)
    body["cost_units"] = *req.cost_units;
  if (req.cost_class_)
    body["cost_class"] = to_string(*req.cost_class_);
  body["priority"] = to_string(req.priority);
  if (req.expected_duration_sec)
    body["expected_duration_sec"] = *req.expected_duration_sec;
  if (req.ttl_sec)
    body["ttl_sec"] = *req.ttl_sec;
  body["constraints"] = {{"cpu_heavy", req.constraints.cpu_heavy},
                         {"disk_write_heavy", req.constraints.disk_write_heavy},
                         {"network_heavy", req.constraints.network_heavy}};
  auto topic = opts_.secure
                 ? topics_.full("scheduler/" + opts_.worker_id + "/lease/request")
                 : topics_.lease_request();
  auto r = call(topic, std::move(body), timeout);
  if (auto* e = std::get_if<call_error>(&r))
    return *e;
  auto g = grant_reply_from_json(std::get<nlohmann::json>(r));
  if (!g)
    return call_error{false, {lease_error_code::internal_error, "lulld's reply is not a lease "
                                                                "decision"}};
  return *g;
}

std::variant<nlohmann::json, call_error>
lease_client::call_repeated(const std::string& topic, const nlohmann::json& body,
                            std::chrono::milliseconds t, const std::string& what,
                            const std::function<bool()>& cancelled) {
  auto deadline = std::chrono::steady_clock::now() + t;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    auto r = call(topic, body, std::clamp(left, std::chrono::milliseconds(1),
                                          std::chrono::milliseconds(1000)),
                  cancelled);
    auto* e = std::get_if<call_error>(&r);
    if (!e)
      return r;
    // lulld asked for a slower pace: a heartbeat or a release is not given
    // up for that (a release dropped here would leave its job to run again
    // when the lease expires); it is sent again after the wait lulld named.
    bool throttled = e->error.code == lease_error_code::request_throttled;
    if (!e->timed_out && !throttled)
      return r;
    if ((cancelled && cancelled()) || std::chrono::steady_clock::now() >= deadline)
      return throttled ? r : timeout_error(t, what);
    if (throttled) {
      auto pause = std::chrono::milliseconds(
        static_cast<long>(1000 * e->retry_after_sec.value_or(0.5)));
      std::this_thread::sleep_for(std::min(
        pause, std::chrono::duration_cast<std::chrono::milliseconds>(
                 deadline - std::chrono::steady_clock::now())));
    }
  }
}

std::variant<nlohmann::json, call_error>
lease_client::heartbeat(const std::string& lease_id, std::chrono::milliseconds t,
                        const std::optional<lease_process>& process) {
  return call_repeated(action_topic(lease_id, "heartbeat"),
                       process ? to_json(*process) : nlohmann::json::object(), t, "heartbeat");
}

std::variant<nlohmann::json, call_error> lease_client::release(const std::string& lease_id,
                                                               std::chrono::milliseconds t,
                                                               const std::string& reason,
                                                               const nlohmann::json& extra,
                                                               const std::function<bool()>& cancelled) {
  nlohmann::json body = extra.is_object() ? extra : nlohmann::json::object();
  if (!reason.empty())
    body["reason"] = reason;
  return call_repeated(action_topic(lease_id, "release"), body, t, "release", cancelled);
}

std::variant<nlohmann::json, call_error> lease_client::report(const std::string& lease_id,
                                                              double progress,
                                                              const std::string& message,
                                                              std::chrono::milliseconds t) {
  return call(action_topic(lease_id, "report"), {{"progress", progress}, {"message", message}},
              t);
}

void lease_client::watch(const std::string& lease_id,
                         std::function<void(const lease_notice&)> fn) {
  {
    std::lock_guard<std::mutex> guard(mtx_);
    if (!fn) {
      watchers_.erase(lease_id); // stop watching
      return;
    }
    watchers_[lease_id] = std::move(fn);
  }
  if (!opts_.secure)
    transport_->subscribe({state_topic(lease_id)}, 1);
}

std::variant<lease_notice, call_error> lease_client::revoke(const std::string& lease_id,
                                                            const std::string& reason,
                                                            std::chrono::milliseconds timeout) {
  // The notice is public (scheduler/lease/<id>/state); an admin in secure mode
  // gets no reply (lulld only answers workers' inboxes), so wait for it.
  auto notice_topic = topics_.lease_action(lease_id, "state");
  std::optional<lease_notice> got;
  std::mutex m;
  {
    std::lock_guard<std::mutex> guard(mtx_);
    watchers_[lease_id] = [&](const lease_notice& n) {
      if (n.state == "REVOKED") {
        std::lock_guard<std::mutex> g2(m);
        got = n;
      }
    };
  }
  transport_->subscribe({notice_topic}, 1);
  std::string key;
  {
    std::lock_guard<std::mutex> guard(mtx_);
    key = nonce_ + "-" + std::to_string(++next_id_);
    pending_[key];
  }
  nlohmann::json body = {{"v", schema_version}, {"request_id", key}, {"reply_to", reply_topic_}};
  if (!reason.empty())
    body["reason"] = reason;
  transport_->publish({topics_.lease_action(lease_id, "revoke"), body.dump(), 1, false,
                       json_content_type, reply_topic_, key});
  std::unique_lock<std::mutex> guard(mtx_);
  std::optional<call_error> err;
  cv_.wait_for(guard, timeout, [&] {
    if (auto& r = pending_[key]; r)
      if (auto e = error_of(*r)) {
        err = e;
        return true;
      }
    std::lock_guard<std::mutex> g2(m);
    return got.has_value();
  });
  pending_.erase(key);
  watchers_.erase(lease_id);
  guard.unlock();
  if (err)
    return *err;
  std::lock_guard<std::mutex> g2(m);
  if (got)
    return *got;
  return timeout_error(timeout, "revoke");
}

void lease_client::follow(const std::vector<std::string>& filters,
                          std::function<void(const std::string&, const nlohmann::json&)> fn) {
  std::vector<std::string> full;
  {
    std::lock_guard<std::mutex> guard(mtx_);
    follower_ = std::move(fn);
    for (auto& f : filters)
      full.push_back(topics_.full(f));
    followed_.insert(followed_.end(), full.begin(), full.end());
  }
  transport_->subscribe(full, 1);
}

std::optional<nlohmann::json> lease_client::status(std::chrono::milliseconds timeout) {
  {
    std::lock_guard<std::mutex> guard(mtx_);
    status_.reset();
    status_subscribed_ = true;
  }
  transport_->subscribe({topics_.scheduler_status()}, 1);
  std::unique_lock<std::mutex> guard(mtx_);
  cv_.wait_for(guard, timeout, [&] { return status_.has_value(); });
  return status_;
}

std::optional<nlohmann::json>
lease_client::status_where(const std::function<bool(const nlohmann::json&)>& pred,
                           std::chrono::milliseconds timeout) {
  {
    std::lock_guard<std::mutex> guard(mtx_);
    status_.reset();
    status_subscribed_ = true;
  }
  transport_->subscribe({topics_.scheduler_status()}, 1);
  std::unique_lock<std::mutex> guard(mtx_);
  if (cv_.wait_for(guard, timeout, [&] { return status_ && pred(*status_); }))
    return status_;
  return std::nullopt;
}

void lease_client::publish(const std::string& relative, const nlohmann::json& body,
                           bool retain) {
  transport_->publish(retain ? retained_json(topics_.full(relative), body)
                             : event_json(topics_.full(relative), body, 1));
}

} // namespace lull
