#include "cli/curve_flags.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

namespace zserve::cli {

void CurveFlags::Add(CLI::App* cmd, unsigned flag_set) {
  which = flag_set;
  cmd->add_option("--curve-key", key,
                  "CURVE key pair file (zserve keygen) or secret key: CURVE on (docs/security.md)")
      ->envname("ZSERVE_CURVE_KEY");
  if (flag_set & kCurveAllow) {
    cmd->add_option("--curve-allow", allow, "Allow-list of peer keys by role (with --curve-key)")
        ->envname("ZSERVE_CURVE_ALLOW");
  }
  if (flag_set & kCurveBroker) {
    cmd->add_option("--curve-broker-key", broker_key, "The broker's public key: file or key")
        ->envname("ZSERVE_CURVE_BROKER_KEY");
  }
  if (flag_set & kCurveController) {
    cmd->add_option("--curve-controller-key", controller_key,
                    "The controller's public key: file or key")
        ->envname("ZSERVE_CURVE_CONTROLLER_KEY");
  }
}

StatusOr<CurveKeys> LoadCurveKeys(const CurveFlags& flags) {
  CurveKeys keys;
  if (flags.key.empty()) {
    if (!flags.allow.empty() || !flags.broker_key.empty() || !flags.controller_key.empty()) {
      return BadRequest("CURVE server keys or an allow-list were given without --curve-key");
    }
    return keys;  // plain ZeroMQ
  }
  StatusOr<KeyPair> pair = LoadKeyPair(flags.key);
  if (!pair.ok()) return pair.status();
  keys.key = std::move(pair).value();
  struct Needed {
    unsigned bit;
    const std::string* source;
    std::string* out;
    const char* flag;
  };
  for (const Needed& n :
       {Needed{kCurveBroker, &flags.broker_key, &keys.broker_key, "--curve-broker-key"},
        Needed{kCurveController, &flags.controller_key, &keys.controller_key,
               "--curve-controller-key"}}) {
    if (!(flags.which & n.bit)) continue;
    if (n.source->empty()) return BadRequest(std::string("--curve-key needs ") + n.flag);
    StatusOr<std::string> key = LoadPublicKey(*n.source);
    if (!key.ok()) return key.status();
    *n.out = std::move(key).value();
  }
  if (flags.which & kCurveAllow) {
    if (flags.allow.empty()) return BadRequest("--curve-key needs --curve-allow on a server");
    keys.allow_file = flags.allow;
  }
  return keys;
}

namespace {

// Writes `text` to `path`, created readable by the owner only when `secret`
// (never readable by others, not even for a moment). `fresh`: `path` must
// not exist yet.
Status WriteKeyFile(const std::string& path, const std::string& text, bool secret, bool fresh) {
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (fresh ? O_EXCL : O_TRUNC);
  int fd = open(path.c_str(), flags, secret ? 0600 : 0644);
  if (fd < 0 && errno == EEXIST) {
    return BadRequest("'" + path + "' exists; keygen never replaces a key (remove it first)");
  }
  if (fd < 0) return BadRequest("cannot write '" + path + "': " + std::strerror(errno));
  bool ok = fchmod(fd, secret ? 0600 : 0644) == 0;  // a file kept from before, too
  for (size_t done = 0; ok && done < text.size();) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = close(fd) == 0 && ok;
  if (!ok) return BadRequest("cannot write '" + path + "': " + std::strerror(errno));
  return Status::Ok();
}

// PATH (the pair, 0600) and PATH.pub; the pair's public key. `fresh`: neither
// may exist yet.
StatusOr<std::string> WritePair(const std::string& path, bool fresh) {
  if (fresh && std::filesystem::exists(path + ".pub")) {
    return BadRequest("'" + path + ".pub' exists; keygen never replaces a key (remove it first)");
  }
  StatusOr<KeyPair> keys = GenerateKeyPair();
  if (!keys.ok()) return keys.status();
  std::string name = std::filesystem::path(path).filename().string();
  if (Status s = WriteKeyFile(
          path, KeyFileText(*keys, "zserve CURVE key pair '" + name + "': keep it secret"), true,
          fresh);
      !s.ok()) {
    return s;
  }
  if (Status s = WriteKeyFile(
          path + ".pub",
          KeyFileText({keys->public_key, ""}, "zserve CURVE public key '" + name + "'"), false,
          fresh);
      !s.ok()) {
    return s;
  }
  return keys->public_key;
}

struct KeygenArgs {
  std::string path;
  std::string role;
  std::string allow;
  std::string set_dir;
};

int Keygen(const KeygenArgs& a) {
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "zserve keygen: %s\n", s.ToString().c_str());
    return 1;
  };
  if (!a.set_dir.empty() && !a.path.empty()) {
    return fail(BadRequest("give a PATH or --set DIR, not both"));
  }
  if (!a.set_dir.empty()) {
    // A whole deployment's keys, once: kept if the allow-list is there.
    std::string allow = a.set_dir + "/allow";
    if (std::filesystem::exists(allow)) {
      std::printf("keys in %s kept (its allow list exists)\n", a.set_dir.c_str());
      return 0;
    }
    std::error_code ec;
    std::filesystem::create_directories(a.set_dir, ec);
    if (ec) return fail(BadRequest("cannot create '" + a.set_dir + "': " + ec.message()));
    std::string lines = "# role public-key name (docs/security.md)\n";
    struct Member {
      const char* name;
      std::vector<const char*> roles;
    };
    for (const Member& m :
         {Member{"controller", {}}, Member{"broker", {"broker"}}, Member{"worker", {"worker"}},
          Member{"client", {"client"}}, Member{"admin", {"admin", "client"}}}) {
      // Not fresh: keys of an attempt cut short before the allow-list are
      // not in use yet.
      StatusOr<std::string> key = WritePair(a.set_dir + "/" + m.name + ".key", /*fresh=*/false);
      if (!key.ok()) return fail(key.status());
      for (const char* role : m.roles)
        lines += std::string(role) + " " + *key + " " + m.name + "\n";
    }
    if (Status s = WriteKeyFile(allow, lines, false, /*fresh=*/false); !s.ok()) return fail(s);
    std::printf("wrote %s: controller, broker, worker, client and admin keys and the allow list\n",
                a.set_dir.c_str());
    return 0;
  }
  if (a.path.empty()) return fail(BadRequest("give a PATH for the key pair, or --set DIR"));
  if (!a.allow.empty() && a.role.empty()) return fail(BadRequest("--allow needs --role"));
  if (a.allow.empty() && !a.role.empty()) return fail(BadRequest("--role needs --allow"));
  StatusOr<std::string> key = WritePair(a.path, /*fresh=*/true);
  if (!key.ok()) return fail(key.status());
  std::printf("wrote %s (secret) and %s.pub\n", a.path.c_str(), a.path.c_str());
  if (!a.allow.empty()) {
    std::ofstream out(a.allow, std::ios::app);
    out << a.role << " " << *key << " " << std::filesystem::path(a.path).filename().string()
        << "\n";
    if (!out.flush()) return fail(BadRequest("cannot append to '" + a.allow + "'"));
    std::printf("added it to %s as %s\n", a.allow.c_str(), a.role.c_str());
  }
  return 0;
}

}  // namespace

std::function<int()> AddKeygenCommand(CLI::App& app) {
  auto args = std::make_shared<KeygenArgs>();
  CLI::App* cmd = app.add_subcommand(
      "keygen", "Write a CURVE key pair: PATH (secret) and PATH.pub (docs/security.md)");
  cmd->add_option("path", args->path, "Where to write the key pair");
  cmd->add_option("--role", args->role, "With --allow: what the key may do")
      ->check(CLI::IsMember({"client", "worker", "admin", "broker"}));
  cmd->add_option("--allow", args->allow, "Append the public key to this allow-list");
  cmd->add_option("--set", args->set_dir,
                  "Write a deployment's keys and allow list into DIR, unless there already");
  return [cmd, args] { return cmd->parsed() ? Keygen(*args) : -1; };
}

}  // namespace zserve::cli
