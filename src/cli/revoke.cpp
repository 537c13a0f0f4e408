// lull revoke LEASE_ID [--reason TEXT]: an admin ends someone's lease.

#include <iostream>

#include "src/cli/commands.hpp"

namespace lull::cli {

CLI::App* add_revoke(CLI::App& app, revoke_opts& o) {
  auto* revoke = app.add_subcommand("revoke", "revoke a lease (admin)");
  revoke->add_option("lease_id", o.lease_id, "the lease id")->required();
  revoke->add_option("--reason", o.reason, "why (shown to the holder)");
  return revoke;
}

int do_revoke(const global_opts& g, const revoke_opts& o) {
  auto client = connect_or_say(g);
  if (!client)
    return ex_unavailable;
  auto r = client->revoke(o.lease_id, o.reason, call_timeout_of(g));
  if (auto* e = std::get_if<call_error>(&r))
    return report_error(g, "revoke", *e);
  std::cout << "lease " << o.lease_id << " revoked: " << std::get<lease_notice>(r).reason << "\n";
  return ex_ok;
}

} // namespace lull::cli
