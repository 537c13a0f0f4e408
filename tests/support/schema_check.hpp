#pragma once
/// lulld's own decoders, as a test asks them: would lulld accept this
/// message a client published? A recorder subscribes to every topic lulld
/// reads from clients (worker status, lease requests and actions, job
/// requests, the pause and Home Assistant's switch) and hands each message
/// it saw to the same code lulld runs on it: the worker registry's
/// on_status, and a lease_service and queue_service of lulld's own (fresh,
/// open or secure by the topic's layout), whose replies say what they refused.
/// A topic lulld does not read from clients is refused too, so a new kind of
/// message in an example fails here until its decoder is added.

#include <optional>
#include <string>
#include <vector>

#include "messages/mqtt_message.hpp"
#include "messages/topics.hpp"
#include "tests/support/support.hpp"

namespace lull::test {

/// The topic filters lulld reads from clients (open and secure layouts),
/// without those only lulld's roles write (snapshots, assessments,
/// availability).
std::vector<std::string> client_input_filters(const topic_names& topics = {});

/// Why lulld refuses `msg`, as "<decoder>: <error>", or nullopt when its
/// decoders accept it. Only the message's form is judged: a heartbeat for a
/// lease lulld does not hold is accepted here (lulld answers it
/// ResourceNotFound, which is about state, not schema).
std::optional<std::string> lulld_refusal(const mqtt_message& msg, const topic_names& topics = {});

/// The error codes that mean "this message is malformed", not "not now".
bool is_schema_error(const std::string& code);

/// Lines of lulld's log in which it refuses a client's message for its
/// form: the worker registry's and the queue's rejections, the lease
/// manager's with a schema error code, ignored pause and switch commands.
std::vector<std::string> refusal_log_lines(const std::string& log);

/// Records every message published on client_input_filters() from the
/// moment it is made (retained ones included).
class input_recorder {
public:
  explicit input_recorder(const std::string& broker_uri, const topic_names& topics = {});

  bool connected() const { return c_.connected(); }
  std::vector<mqtt_message> messages() { return c_.received(); }
  /// Messages recorded on topics matching `filter`.
  std::size_t count(const std::string& filter);
  /// Waits until a message on a topic matching `filter` satisfies `pred`.
  bool wait_for(const std::string& filter, const std::function<bool(const mqtt_message&)>& pred,
                std::chrono::milliseconds timeout);
  /// One line per recorded message lulld's decoders refuse: the topic, the
  /// payload and why.
  std::vector<std::string> refusals();

private:
  topic_names topics_;
  client c_;
};

} // namespace lull::test
