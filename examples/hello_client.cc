// Calls an endpoint through the zserve client library, once synchronously
// and 100 times asynchronously on one socket.
//
//   ./build/examples/hello_client [BROKER_ADDRESS]
#include <cstdio>
#include <string>

#include "zserve/client.h"

int main(int argc, char** argv) {
  zserve::ClientOptions options;
  if (argc > 1) options.broker_address = argv[1];
  auto client = zserve::Client::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }

  zserve::StatusOr<std::string> reply = (*client)->Call("echo", "hello");
  if (!reply.ok()) {
    std::fprintf(stderr, "%s\n", reply.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", reply->c_str());

  int ok = 0;
  for (int i = 0; i < 100; ++i) {
    (*client)->CallAsync("echo", std::to_string(i), {},
                         [&ok](zserve::StatusOr<std::string> r) { ok += r.ok(); });
  }
  (*client)->Wait();  // runs every callback, each exactly once
  std::printf("%d of 100 async calls answered OK\n", ok);
  return ok == 100 ? 0 : 1;
}
