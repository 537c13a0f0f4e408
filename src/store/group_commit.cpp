#include "src/store/group_commit.hpp"

#include "src/log.hpp"

namespace lull {

void write_failures::failed(std::size_t n, const std::string& cause, std::int64_t now) {
  ++count_;
  bool repeat = cause == last_error_;
  last_error_ = cause;
  last_error_at_ = now;
  failing_ = true;
  if (!repeat || count_ % 100 == 1)
    log::error("{}: cannot store {} {} changes: {}; they are rolled back and their requests "
               "answered InternalError ({} failed writes so far)",
               component_, n, what_, cause, count_);
}

bool write_failures::worked() {
  if (!failing_)
    return false;
  failing_ = false;
  log::info("{}: {} writes work again after {} failed", component_, what_, count_);
  return true;
}

} // namespace lull
