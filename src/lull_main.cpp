// lull: the worker's command line. Each command is a file in src/cli/; the
// list of them is src/cli/app.cpp.
//
//   lull run [--cost N|--class C] [--priority P] [--host H] [--wait D] -- CMD ARGS...
//   lull status
//   lull revoke LEASE_ID [--reason TEXT]
//   lull submit --type T [--payload JSON] ...   lull jobs   lull cancel JOB_ID
//   lull work --type T -- CMD ARGS...            lull history --group quiet --range 1h

#include "src/cli/cli.hpp"

int main(int argc, char** argv) { return lull::cli::main(argc, argv); }
