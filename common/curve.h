// CURVE on zserve's sockets, and the ZAP handler that decides who may
// connect (docs/security.md).
//
// A server socket (the broker's ROUTERs, the controller's ROUTER and PUB) is
// a CURVE server in a ZAP domain; the ZAP handler of its process looks the
// peer's public key up in the allow-list and lets it in only with a role that
// the domain admits. It answers with the key's roles as the ZMQ "User-Id"
// of every message from that peer, which the controller checks per command.
#ifndef ZSERVE_COMMON_CURVE_H_
#define ZSERVE_COMMON_CURVE_H_

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <zmq.hpp>

#include "common/logging.h"
#include "zserve/curve.h"
#include "zserve/status.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
}  // namespace prometheus

namespace zserve {

// What a key may do. A key may have several roles.
enum class Role { kClient, kWorker, kAdmin, kBroker };
std::string_view RoleName(Role role);

// The ZAP domains of zserve's server sockets and the roles each admits.
inline constexpr std::string_view kDomainClient = "client";          // broker client ROUTER
inline constexpr std::string_view kDomainWorker = "worker";          // broker worker ROUTER
inline constexpr std::string_view kDomainController = "controller";  // controller ROUTER + PUB

// The keys a server lets in, by role. The file has one key per line:
//   ROLE PUBLIC-KEY [name...]
// with ROLE one of client, worker, admin, broker; blank lines and lines
// starting with # are skipped.
class AllowList {
 public:
  static StatusOr<AllowList> Load(const std::string& path);
  static StatusOr<AllowList> Parse(const std::string& text, const std::string& origin);

  // The roles of a Z85 public key; empty if it is not listed.
  std::set<Role> RolesOf(const std::string& public_key) const;
  size_t size() const { return roles_.size(); }

 private:
  std::map<std::string, std::set<Role>> roles_;
};

// "client,admin": the User-Id the ZAP handler gives a peer.
std::string RolesText(const std::set<Role>& roles);
// True if the peer that sent `message` (any frame of it) has `role`: the
// User-Id its ZAP handler gave it names the role. False on a plain socket.
bool PeerHasRole(const zmq::message_t& message, Role role);

// Makes `socket` a CURVE client of the server with public key `server_key`.
// No-op when `keys` is empty (plain ZeroMQ); an error when keys are given
// without a server key or are malformed.
Status SecureClient(zmq::socket_t& socket, const KeyPair& keys, const std::string& server_key);

// Makes `socket` a CURVE server in ZAP `domain`. No-op when `keys` is empty.
// Call before bind; the process needs a running ZapHandler.
Status SecureServer(zmq::socket_t& socket, const KeyPair& keys, std::string_view domain);

// The process's ZAP handler (RFC 27): a thread with a REP socket on
// inproc://zeromq.zap.01 of `context`, answering until destroyed. It admits
// CURVE peers whose key the allow-list gives a role the domain admits:
//   client: client; worker: worker; controller: any role.
// Every refusal counts in zserve_auth_refusals_total{domain}; the first for
// each key is logged.
class ZapHandler {
 public:
  static StatusOr<std::unique_ptr<ZapHandler>> Start(zmq::context_t& context, AllowList allow,
                                                     Logger logger, prometheus::Registry* metrics);
  // For a server (`who`: "broker", "controller") with key pair `keys`: its
  // allow-list loaded and the handler started. Null when `keys` is empty
  // (plain ZeroMQ); an error when the allow-list is missing or invalid.
  static StatusOr<std::unique_ptr<ZapHandler>> ForServer(std::string_view who, const KeyPair& keys,
                                                         const std::string& allow_file,
                                                         zmq::context_t& context, Logger logger,
                                                         prometheus::Registry* metrics);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  // Refusals so far, all domains.
  uint64_t refusals() const { return refusals_.load(); }

 private:
  ZapHandler(zmq::context_t& context, AllowList allow, Logger logger,
             prometheus::Registry* metrics);
  void Serve();
  // The reply to one request: status code and User-Id.
  std::pair<std::string, std::string> Decide(std::string_view domain, std::string_view mechanism,
                                             std::string_view credentials,
                                             std::string_view address);

  AllowList allow_;
  Logger log_;
  zmq::socket_t socket_;
  prometheus::Family<prometheus::Counter>* refused_family_ = nullptr;
  std::unordered_set<std::string> logged_;  // keys refused and logged once
  std::atomic<uint64_t> refusals_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace zserve

#endif  // ZSERVE_COMMON_CURVE_H_
