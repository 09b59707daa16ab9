// Calls the sentiment endpoint through the zserve client library: one line
// of output per text, "<text>\t<reply>" or "<text>\tERROR <status>".
//
//   sentiment_client [--broker tcp://127.0.0.1:5555] [--method classify] TEXT...
#include <cstdio>
#include <string>
#include <vector>

#include "zserve/client.h"

int main(int argc, char** argv) {
  zserve::ClientOptions options;
  zserve::CallOptions call;
  call.method = "classify";
  std::vector<std::string> texts;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--broker" || arg == "--method") && i + 1 < argc) {
      (arg == "--broker" ? options.broker_address : call.method) = argv[++i];
    } else {
      texts.push_back(arg);
    }
  }
  auto client = zserve::Client::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "sentiment_client: %s\n", client.status().ToString().c_str());
    return 1;
  }
  int failed = 0;
  for (const std::string& text : texts) {
    zserve::StatusOr<std::string> r = (*client)->Call("sentiment", text, call);
    failed += !r.ok();
    std::printf("%s\t%s\n", text.c_str(),
                r.ok() ? r->c_str() : ("ERROR " + r.status().ToString()).c_str());
  }
  return failed == 0 ? 0 : 1;
}
