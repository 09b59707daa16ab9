// libFuzzer target: the broker's handling of client messages (HandleClient:
// ZSP REQUEST and STATUS, MDP client requests and MMI), with dispatch,
// results, expiry and replies behind them. Input format: broker_fuzzer.h.
#include <cstddef>
#include <cstdint>

#include "fuzz/broker_fuzzer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using zserve::broker::BrokerFuzzer;
  static BrokerFuzzer* fuzzer = new BrokerFuzzer(zserve::broker::FuzzSide::kClient);
  fuzzer->Run(data, size);
  return 0;
}
