// The forwarder under a hostile client or a hostile upstream: see
// tests/fuzz/h2_harness.h for the input format and what is checked.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/h2_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  meshguard::fuzz::H2Harness::Run(data, size);
  return 0;
}
