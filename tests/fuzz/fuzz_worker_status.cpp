// Worker status on stats/worker/<id>: the registry must take any payload.
#include "src/workers/worker_registry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lull::worker_registry reg(90);
  std::string payload(reinterpret_cast<const char*>(data), size);
  reg.on_status("w1", payload, 1.0, 1795000000);
  reg.on_status("w1", payload, 2.0, 1795000001);
  (void)reg.summary("h", 1795000002).dump();
  (void)reg.check_stale(1000.0);
  return 0;
}
