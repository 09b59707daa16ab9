#include "common/curve.h"

#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <zmq.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>

#include "common/zmq_util.h"

namespace zserve {

namespace {

constexpr size_t kZ85KeyChars = 40;
constexpr size_t kBinaryKeyBytes = 32;
// Refused keys remembered for logging once each; past this, refusals are
// only counted.
constexpr size_t kMaxLoggedKeys = 1024;

bool IsZ85Key(std::string_view text) {
  if (text.size() != kZ85KeyChars) return false;
  std::array<uint8_t, kBinaryKeyBytes> bytes;
  std::string z(text);
  return zmq_z85_decode(bytes.data(), z.c_str()) != nullptr;
}

Status CurveAvailable() {
  if (zmq_has("curve") == 0) {
    return Internal("this libzmq was built without CURVE (libsodium); keys cannot be used");
  }
  return Status::Ok();
}

// The value of a `NAME = "VALUE"` line of a key file, or empty.
std::string KeyFileField(const std::string& text, std::string_view name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line.compare(start, name.size(), name) != 0) continue;
    size_t open = line.find('"', start + name.size());
    size_t close = open == std::string::npos ? open : line.find('"', open + 1);
    if (close == std::string::npos) continue;
    return line.substr(open + 1, close - open - 1);
  }
  return std::string();
}

// The file at `path`, or an error naming it as `what` ("key file").
StatusOr<std::string> ReadTextFile(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) return BadRequest("cannot read " + what + " '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

StatusOr<KeyPair> GenerateKeyPair() {
  if (Status s = CurveAvailable(); !s.ok()) return s;
  char pub[kZ85KeyChars + 1], sec[kZ85KeyChars + 1];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Internal(std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()));
  }
  return KeyPair{pub, sec};
}

StatusOr<KeyPair> LoadKeyPair(const std::string& source) {
  if (Status s = CurveAvailable(); !s.ok()) return s;
  std::string secret = source, stated_public;
  if (!IsZ85Key(source)) {
    StatusOr<std::string> text = ReadTextFile(source, "key file");
    if (!text.ok()) return text.status();
    secret = KeyFileField(*text, "secret-key");
    stated_public = KeyFileField(*text, "public-key");
    if (secret.empty()) {
      return BadRequest("key file '" + source + "' has no secret-key line (a .pub file?)");
    }
    if (!IsZ85Key(secret)) {
      return BadRequest("key file '" + source + "': secret-key is not a 40-character Z85 key");
    }
  }
  char pub[kZ85KeyChars + 1];
  if (zmq_curve_public(pub, secret.c_str()) != 0) {
    return BadRequest("not a CURVE secret key: " + source);
  }
  if (!stated_public.empty() && stated_public != pub) {
    return BadRequest("key file '" + source + "': public-key does not belong to secret-key");
  }
  return KeyPair{pub, secret};
}

StatusOr<std::string> LoadPublicKey(const std::string& source) {
  if (IsZ85Key(source)) return source;
  StatusOr<std::string> text = ReadTextFile(source, "key file");
  if (!text.ok()) return text.status();
  std::string key = KeyFileField(*text, "public-key");
  if (!IsZ85Key(key)) {
    return BadRequest("key file '" + source + "' has no 40-character Z85 public-key line");
  }
  return key;
}

std::string KeyFileText(const KeyPair& keys, const std::string& comment) {
  std::string text = "# " + comment + "\n";
  text += "public-key = \"" + keys.public_key + "\"\n";
  if (!keys.secret_key.empty()) text += "secret-key = \"" + keys.secret_key + "\"\n";
  return text;
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kClient:
      return "client";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
    case Role::kBroker:
      return "broker";
  }
  return "?";
}

StatusOr<AllowList> AllowList::Load(const std::string& path) {
  StatusOr<std::string> text = ReadTextFile(path, "allow-list");
  if (!text.ok()) return text.status();
  return Parse(*text, path);
}

StatusOr<AllowList> AllowList::Parse(const std::string& text, const std::string& origin) {
  AllowList list;
  std::istringstream in(text);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::istringstream words(line);
    std::string role_name, key;
    if (!(words >> role_name) || role_name.starts_with('#')) continue;
    std::string where = origin + ":" + std::to_string(number) + ": ";
    Role role;
    if (role_name == "client") {
      role = Role::kClient;
    } else if (role_name == "worker") {
      role = Role::kWorker;
    } else if (role_name == "admin") {
      role = Role::kAdmin;
    } else if (role_name == "broker") {
      role = Role::kBroker;
    } else {
      return BadRequest(where + "unknown role '" + role_name +
                        "' (client, worker, admin or broker)");
    }
    if (!(words >> key)) return BadRequest(where + "a public key must follow the role");
    if (!IsZ85Key(key)) return BadRequest(where + "'" + key + "' is not a 40-character Z85 key");
    list.roles_[key].insert(role);
  }
  return list;
}

std::set<Role> AllowList::RolesOf(const std::string& public_key) const {
  auto it = roles_.find(public_key);
  return it == roles_.end() ? std::set<Role>() : it->second;
}

std::string RolesText(const std::set<Role>& roles) {
  std::string text;
  for (Role r : roles) {
    if (!text.empty()) text += ',';
    text += RoleName(r);
  }
  return text;
}

bool PeerHasRole(const zmq::message_t& message, Role role) {
  const char* user_id = zmq_msg_gets(message.handle(), "User-Id");
  if (user_id == nullptr) return false;
  std::string_view roles(user_id), name = RoleName(role);
  while (!roles.empty()) {
    size_t comma = roles.find(',');
    if (roles.substr(0, comma) == name) return true;
    if (comma == std::string_view::npos) break;
    roles.remove_prefix(comma + 1);
  }
  return false;
}

Status SecureClient(zmq::socket_t& socket, const KeyPair& keys, const std::string& server_key) {
  if (keys.empty()) return Status::Ok();
  if (server_key.empty()) {
    return BadRequest("a CURVE key is set but not the server's public key to connect with");
  }
  try {
    socket.set(zmq::sockopt::curve_secretkey, keys.secret_key);
    socket.set(zmq::sockopt::curve_publickey, keys.public_key);
    socket.set(zmq::sockopt::curve_serverkey, server_key);
  } catch (const zmq::error_t& e) {
    return BadRequest(std::string("CURVE keys refused by ZeroMQ: ") + e.what());
  }
  return Status::Ok();
}

Status SecureServer(zmq::socket_t& socket, const KeyPair& keys, std::string_view domain) {
  if (keys.empty()) return Status::Ok();
  try {
    socket.set(zmq::sockopt::curve_server, 1);
    socket.set(zmq::sockopt::curve_secretkey, keys.secret_key);
    socket.set(zmq::sockopt::zap_domain, domain);
  } catch (const zmq::error_t& e) {
    return BadRequest(std::string("CURVE keys refused by ZeroMQ: ") + e.what());
  }
  return Status::Ok();
}

ZapHandler::ZapHandler(zmq::context_t& context, AllowList allow, Logger logger,
                       prometheus::Registry* metrics)
    : allow_(std::move(allow)), log_(std::move(logger)), socket_(context, zmq::socket_type::rep) {
  if (metrics != nullptr) {
    refused_family_ = &prometheus::BuildCounter()
                           .Name("zserve_auth_refusals_total")
                           .Help("Connections refused by CURVE authentication, by ZAP domain")
                           .Register(*metrics);
  }
}

StatusOr<std::unique_ptr<ZapHandler>> ZapHandler::Start(zmq::context_t& context, AllowList allow,
                                                        Logger logger,
                                                        prometheus::Registry* metrics) {
  std::unique_ptr<ZapHandler> h(new ZapHandler(context, std::move(allow), logger, metrics));
  try {
    h->socket_.set(zmq::sockopt::linger, 0);
    h->socket_.bind("inproc://zeromq.zap.01");
  } catch (const zmq::error_t& e) {
    return Internal(std::string("cannot start the ZAP handler: ") + e.what());
  }
  if (h->refused_family_ != nullptr) {
    for (std::string_view d : {kDomainClient, kDomainWorker, kDomainController}) {
      h->refused_family_->Add({{"domain", std::string(d)}});  // exported at 0
    }
  }
  h->thread_ = std::thread([p = h.get()] { p->Serve(); });
  return h;
}

StatusOr<std::unique_ptr<ZapHandler>> ZapHandler::ForServer(std::string_view who,
                                                            const KeyPair& keys,
                                                            const std::string& allow_file,
                                                            zmq::context_t& context, Logger logger,
                                                            prometheus::Registry* metrics) {
  if (keys.empty()) return std::unique_ptr<ZapHandler>();
  if (allow_file.empty()) {
    return BadRequest("a " + std::string(who) +
                      " with a CURVE key needs an allow-list (--curve-allow)");
  }
  StatusOr<AllowList> allow = AllowList::Load(allow_file);
  if (!allow.ok()) return allow.status();
  return Start(context, std::move(allow).value(), std::move(logger), metrics);
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ZapHandler::Serve() {
  Frames request;
  while (!stop_) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      continue;
    }
    if (!RecvFrames(socket_, &request)) continue;
    // RFC 27: version, request id, domain, address, routing id, mechanism,
    // credentials...
    std::string status = "400", user_id;
    if (request.size() >= 6 && View(request[0]) == "1.0") {
      std::string_view credentials = request.size() >= 7 ? View(request[6]) : std::string_view();
      std::tie(status, user_id) =
          Decide(View(request[2]), View(request[5]), credentials, View(request[3]));
    }
    std::string_view request_id = request.size() >= 2 ? View(request[1]) : std::string_view();
    std::string_view text = status == "200" ? "OK" : "not allowed";
    std::array<zmq::message_t, 6> reply{
        zmq::message_t(std::string_view("1.0")),   zmq::message_t(request_id),
        zmq::message_t(std::string_view(status)),  zmq::message_t(text),
        zmq::message_t(std::string_view(user_id)), zmq::message_t()};
    try {
      for (size_t i = 0; i < reply.size(); ++i) {
        socket_.send(reply[i],
                     i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
    }
  }
}

std::pair<std::string, std::string> ZapHandler::Decide(std::string_view domain,
                                                       std::string_view mechanism,
                                                       std::string_view credentials,
                                                       std::string_view address) {
  std::string key;
  std::set<Role> roles;
  if (mechanism == "CURVE" && credentials.size() == kBinaryKeyBytes) {
    char z85[kZ85KeyChars + 1];
    zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(credentials.data()), kBinaryKeyBytes);
    key = z85;
    roles = allow_.RolesOf(key);
  }
  bool admitted = false;
  if (domain == kDomainClient) {
    admitted = roles.contains(Role::kClient);
  } else if (domain == kDomainWorker) {
    admitted = roles.contains(Role::kWorker);
  } else if (domain == kDomainController) {
    admitted = !roles.empty();
  }
  if (admitted) return {"200", RolesText(roles)};
  ++refusals_;
  if (refused_family_ != nullptr &&
      (domain == kDomainClient || domain == kDomainWorker || domain == kDomainController)) {
    refused_family_->Add({{"domain", std::string(domain)}}).Increment();
  }
  std::string log_key = std::string(domain) + "/" + (key.empty() ? "(no key)" : key);
  if (logged_.size() < kMaxLoggedKeys && logged_.insert(log_key).second) {
    log_->warn(
        "refused {} key {} from {} on the {} socket ({}); further refusals of it are only "
        "counted",
        roles.empty() ? "unknown" : RolesText(roles), key.empty() ? "(none)" : key, address, domain,
        roles.empty() ? "not in the allow-list" : "role not admitted");
  }
  return {"400", ""};
}

}  // namespace zserve
