// libFuzzer target: the broker's handling of worker messages (HandleWorker:
// ZSP READY, RESULTS, DISCONNECT, HEARTBEAT and MDP worker commands) while it
// holds a fixed set of client requests (in flight: tokens 1 and 9 on w1, 2 on
// m1, 11 to 13 on w2; ZSERVE_FUZZ_TRACE=1 prints what the broker sends).
// Input format: broker_fuzzer.h.
#include <cstddef>
#include <cstdint>

#include "fuzz/broker_fuzzer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using zserve::broker::BrokerFuzzer;
  static BrokerFuzzer* fuzzer = new BrokerFuzzer(zserve::broker::FuzzSide::kWorker);
  fuzzer->Run(data, size);
  return 0;
}
