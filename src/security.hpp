#pragma once
/// Who may do what when the broker vouches for identities (broker.secure,
/// docs/security.md): the lease service, the queue and the history server
/// each take these settings whole.

#include <algorithm>
#include <string>
#include <vector>

namespace lull {

struct security_settings {
  /// broker.secure: a sender's id comes from its topic
  /// (scheduler/<user>/..., history/<user>/request), which the broker's ACL
  /// pins to the user, and replies go only under workers/<user>/.
  bool secure = false;
  /// broker.admin_user: may read and cancel every job.
  std::string admin_user = "lull-admin";
  /// lease.high_users: may ask for HIGH leases and submit HIGH jobs; others
  /// get PermissionDenied.
  std::vector<std::string> high_users{"lull-admin"};

  /// Whether `user` may ask for HIGH work. Open mode has no users to tell
  /// apart, so anyone may.
  bool may_ask_high(const std::string& user) const {
    return !secure || std::find(high_users.begin(), high_users.end(), user) != high_users.end();
  }

  /// The PermissionDenied message for `user` trying to `what` (ask for a
  /// HIGH lease, submit a HIGH job), naming the rule and who may.
  std::string high_denied(const std::string& user, const char* what) const {
    std::string list;
    for (auto& u : high_users)
      list += (list.empty() ? "" : ", ") + u;
    return "user '" + user + "' may not " + what + ": HIGH priority is for lease.high_users ("
           + (list.empty() ? "nobody" : list) + ")";
  }
};

} // namespace lull
