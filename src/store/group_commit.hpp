#pragma once
/// The group commit both writers of lulld's state use (the lease manager's
/// leases and fencing counter, the queue dispatcher's jobs): one
/// transaction per batch, rolled back whole on any error, and the failures
/// counted and logged the same way.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "src/store/store.hpp"

namespace lull {

/// begin, the writes `body` makes (it returns the first error it meets, or
/// a false sqlite_error), commit; rolled back on any error. The error's
/// message, or nullopt when everything was written.
template <class Body>
std::optional<std::string> write_batch(store& db, Body&& body) {
  auto err = db.begin();
  if (!err)
    err = body();
  if (!err)
    err = db.commit();
  if (!err)
    return std::nullopt;
  db.rollback();
  return err.message;
}

/// Failed writes of one kind ("lease", "job"): counted, logged once per
/// change of cause and then once per 100 (a failing disk fails every
/// tick), and cleared, with a line, by the next write that works.
class write_failures {
public:
  /// `component` and `what` name them in the log: "lease manager", "lease".
  write_failures(std::string component, std::string what)
    : component_(std::move(component)), what_(std::move(what)) {}

  /// A batch of `n` changes was rolled back for `cause` at `now` (unix s).
  void failed(std::size_t n, const std::string& cause, std::int64_t now);
  /// A batch with something in it was written: true when writes were
  /// failing until now.
  bool worked();

  std::uint64_t count() const { return count_; }
  bool failing() const { return failing_; }
  const std::string& last_error() const { return last_error_; }
  std::int64_t last_error_at() const { return last_error_at_; }

private:
  std::string component_, what_;
  std::uint64_t count_ = 0;
  std::string last_error_;
  std::int64_t last_error_at_ = 0;
  bool failing_ = false;
};

} // namespace lull
