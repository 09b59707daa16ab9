// compose/ checked without a Docker engine (issue 8). Debian's docker-compose
// normalizes compose/docker-compose.yml (`docker-compose config`), and the
// result is checked against what the zserve binary says about itself
// (`zserve SUBCOMMAND --help`):
//   - every zserve service runs a real subcommand, with flags and ZSERVE_*
//     variables that subcommand lists, and its required options set;
//   - every socket binds all interfaces on a fixed port that the service
//     publishes or exposes; every address a service (or its health check)
//     connects to names a service that binds that port for that role;
//   - Prometheus (compose/prometheus.yml, as mounted) scrapes the metrics port
//     of every zserve service, scaled ones through DNS, and nothing else;
//   - the workers serve the backends of the deployment file the controller
//     mounts, as many as it asks for, and can be scaled;
//   - compose/Dockerfile builds on Debian 12 and its runtime stage holds the
//     binary alone, as a non-root user, with the package of every library the
//     binary links.
// Each check returns the problems it found; the last test case feeds each a
// broken copy and sees it complain. One test starts the deployment file
// under `zserve up` and runs the broker's health check against it.
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/process.h"
#include "tests/e2e/roles.h"
#include "tests/e2e/stack.h"
#include "tests/e2e/test_client.h"
#include "zserve/client.h"
#include "zserve/curve.h"

namespace {

using namespace zserve::testing;
using Problems = std::vector<std::string>;

const std::string kSourceDir = ZSERVE_SOURCE_DIR;
const std::string kComposeDir = kSourceDir + "/compose";

// ---------------------------------------------------------------------------
// Files and processes

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The absolute path of a program on PATH, or "".
std::string FindProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = dir + "/" + name;
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

struct Output {
  int code = -1;  // -1: still running after the limit (then killed)
  std::string out;
  std::string err;
};

// Runs a program to its end, at most `limit`; stdout and stderr captured.
Output Run(const std::string& program, const std::vector<std::string>& args,
           std::chrono::seconds limit = std::chrono::seconds(60)) {
  static const struct Dir {
    std::string path = MakeTempDir();
    ~Dir() { rmdir(path.c_str()); }
  } dir;
  static int runs = 0;
  const std::string err_path = dir.path + "/stderr-" + std::to_string(++runs);
  Output o;
  {
    Process p(program, args, err_path);
    o.code = p.Wait(limit).value_or(-1);
    o.out = p.output();
  }
  o.err = ReadFile(err_path);
  std::remove(err_path.c_str());
  return o;
}

std::string Join(const std::vector<std::string>& words, const std::string& sep = " ") {
  std::string s;
  for (const std::string& w : words) s += (s.empty() ? "" : sep) + w;
  return s;
}

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string Basename(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Dirname(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// True when some problem contains every one of `words` (to check that a
// broken file is reported for the right reason).
bool Reported(const Problems& problems, const std::vector<std::string>& words) {
  for (const std::string& p : problems) {
    bool all = true;
    for (const std::string& w : words) all = all && p.find(w) != std::string::npos;
    if (all) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// What the binary accepts: `zserve [SUBCOMMAND...] --help`, as CLI11 prints it:
//   --admin-bind TEXT=tcp://127.0.0.1:5557 (Env:ZSERVE_ADMIN_BIND)
//   --store TEXT REQUIRED (Env:ZSERVE_STORE)
//   --json                      Print the JSON document

struct OptionHelp {
  bool takes_value = false;
  bool required = false;
  std::string default_value;
  std::string env;  // CLI11's envname, "" if none
};

struct Help {
  std::map<std::string, OptionHelp> options;  // by long name, "--store"
  std::set<std::string> subcommands;
  bool positionals = false;
};

Help ParseHelp(const std::string& text) {
  static const std::regex option_re(R"(^\s+(?:-\w,)?(--[A-Za-z0-9][A-Za-z0-9_-]*)(.*)$)");
  static const std::regex type_re(R"(^ (TEXT|INT|UINT|FLOAT|NUMBER|BOOLEAN)\b)");
  // The default follows the type (and its validator, single spaces only).
  static const std::regex default_re(R"(^ [A-Z]+(?::(?:[^=\s]|\s(?!\s))*)?=(\S*))");
  static const std::regex env_re(R"(\(Env:([A-Za-z0-9_]+)\))");
  static const std::regex section_re(R"(^([A-Z][A-Za-z ]*):\s*$)");
  static const std::regex subcommand_re(R"(^\s+([a-z][a-z0-9_-]*)(\s{2,}.*)?$)");
  Help help;
  std::string section;
  std::stringstream lines(text);
  std::string line;
  std::smatch m;
  while (std::getline(lines, line)) {
    if (std::regex_match(line, m, section_re)) {
      section = m[1];
      if (section == "Positionals") help.positionals = true;
    } else if (section == "Options" && std::regex_match(line, m, option_re)) {
      const std::string rest = m[2];
      OptionHelp o;
      o.takes_value = std::regex_search(rest, type_re);
      o.required = rest.find(" REQUIRED") != std::string::npos;
      std::smatch v;
      if (std::regex_search(rest, v, default_re)) o.default_value = v[1];
      if (std::regex_search(rest, v, env_re)) o.env = v[1];
      help.options[m[1]] = o;
    } else if (section == "Subcommands" && std::regex_match(line, m, subcommand_re)) {
      help.subcommands.insert(m[1]);
    }
  }
  return help;
}

// `zserve PATH... --help`, parsed, once per path.
const Help& HelpOf(const std::vector<std::string>& path) {
  static std::map<std::vector<std::string>, Help> cache;
  auto it = cache.find(path);
  if (it != cache.end()) return it->second;
  std::vector<std::string> args = path;
  args.push_back("--help");
  Output o = Run(kBinary, args);
  INFO("zserve " << Join(args) << "\n" << o.out << o.err);
  REQUIRE(o.code == 0);
  Help help = ParseHelp(o.out);
  REQUIRE(help.options.count("--help") == 1);
  return cache.emplace(path, std::move(help)).first->second;
}

// An option of a subcommand or of one of its parents, innermost first.
const OptionHelp* FindOption(const std::vector<std::string>& path, const std::string& name) {
  for (size_t n = path.size() + 1; n-- > 0;) {
    const Help& help = HelpOf(std::vector<std::string>(path.begin(), path.begin() + n));
    auto it = help.options.find(name);
    if (it != help.options.end()) return &it->second;
  }
  return nullptr;
}

// A command line of the zserve binary (without "zserve"), as it would parse
// it, with the environment it runs in.
struct Invocation {
  std::vector<std::string> args;
  std::vector<std::string> path;             // subcommands: {"ctl", "get"}
  std::map<std::string, std::string> flags;  // given on the line ("" for a switch)
  std::vector<std::string> positionals;
  std::map<std::string, std::string> env;
};

std::string Line(const Invocation& inv) { return "`zserve " + Join(inv.args) + "`"; }

std::string Command(const Invocation& inv) { return "`zserve " + Join(inv.path) + "`"; }

// Parses `args`; reports what the binary would refuse: an unknown subcommand
// or flag, a flag without its value, a stray argument, a required option
// neither given nor set by its environment variable.
Invocation ParseInvocation(const std::vector<std::string>& args,
                           const std::map<std::string, std::string>& env, const std::string& where,
                           Problems* problems) {
  Invocation inv;
  inv.args = args;
  inv.env = env;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (StartsWith(a, "--")) {
      const size_t eq = a.find('=');
      const std::string name = a.substr(0, eq);
      const OptionHelp* o = FindOption(inv.path, name);
      if (o == nullptr) {
        problems->push_back(where + ": " + Command(inv) + " has no flag " + name + " (its --help)");
        continue;
      }
      std::string value;
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
      } else if (o->takes_value) {
        if (i + 1 == args.size()) {
          problems->push_back(where + ": " + name + " needs a value");
        } else {
          value = args[++i];
        }
      }
      inv.flags[name] = value;
    } else if (StartsWith(a, "-")) {
      problems->push_back(where + ": " + a + ": use long flags (--name)");
    } else if (inv.positionals.empty() && HelpOf(inv.path).subcommands.count(a) == 1) {
      inv.path.push_back(a);
    } else if (inv.path.empty()) {
      problems->push_back(where + ": '" + a + "' is not a zserve subcommand (zserve --help)");
      return inv;
    } else {
      if (!HelpOf(inv.path).positionals) {
        problems->push_back(where + ": " + Command(inv) + " takes no argument '" + a + "'");
      }
      inv.positionals.push_back(a);
    }
  }
  if (inv.path.empty()) {
    problems->push_back(where + ": no zserve subcommand in " + Line(inv));
    return inv;
  }
  for (const auto& [name, o] : HelpOf(inv.path).options) {
    if (o.required && inv.flags.count(name) == 0 && (o.env.empty() || inv.env.count(o.env) == 0)) {
      problems->push_back(where + ": " + Command(inv) + " requires " + name +
                          (o.env.empty() ? "" : " (or " + o.env + ")"));
    }
  }
  return inv;
}

// The value an option takes: given on the line, else from its environment
// variable, else its default.
std::string Value(const Invocation& inv, const std::string& option) {
  auto flag = inv.flags.find(option);
  if (flag != inv.flags.end()) return flag->second;
  const OptionHelp* o = FindOption(inv.path, option);
  if (o == nullptr) return "";
  if (!o->env.empty()) {
    auto env = inv.env.find(o->env);
    if (env != inv.env.end()) return env->second;
  }
  return o->default_value;
}

// Every option along an invocation's path (the innermost wins).
std::map<std::string, OptionHelp> OptionsOf(const std::vector<std::string>& path) {
  std::map<std::string, OptionHelp> all;
  for (size_t n = path.size() + 1; n-- > 0;) {
    for (const auto& [name, o] : HelpOf({path.begin(), path.begin() + n}).options) {
      all.emplace(name, o);
    }
  }
  return all;
}

// ---------------------------------------------------------------------------
// The compose file, normalized by docker-compose

const YAML::Node& ComposeConfig() {
  static std::optional<YAML::Node> config;
  if (!config) {
    const std::string docker_compose = FindProgram("docker-compose");
    INFO("docker-compose is Debian's package docker-compose (the Makefile's TEST_PACKAGES)");
    REQUIRE(!docker_compose.empty());
    Output o = Run(docker_compose, {"--project-directory", kComposeDir, "-f",
                                    kComposeDir + "/docker-compose.yml", "config"});
    INFO("docker-compose config:\n" << o.out << o.err);
    REQUIRE(o.code == 0);
    config = YAML::Load(o.out);
    REQUIRE(config->IsMap());
    REQUIRE((*config)["services"].IsMap());
  }
  return *config;
}

std::vector<std::string> AsArgv(const YAML::Node& n) {
  std::vector<std::string> argv;
  if (n.IsSequence()) {
    for (const YAML::Node& a : n) argv.push_back(a.as<std::string>());
  } else if (n.IsScalar()) {
    std::stringstream words(n.as<std::string>());
    std::string w;
    while (words >> w) argv.push_back(w);
  }
  return argv;
}

std::map<std::string, std::string> EnvOf(const YAML::Node& n) {
  std::map<std::string, std::string> env;
  if (n.IsMap()) {
    for (const auto& kv : n)
      env[kv.first.as<std::string>()] = kv.second.IsNull() ? "" : kv.second.as<std::string>();
  } else if (n.IsSequence()) {
    for (const YAML::Node& e : n) {
      const std::string s = e.as<std::string>();
      const size_t eq = s.find('=');
      env[s.substr(0, eq)] = eq == std::string::npos ? "" : s.substr(eq + 1);
    }
  }
  return env;
}

struct Bind {
  std::string host;  // "*", "0.0.0.0", "127.0.0.1", ...
  int port = -1;
};

// "tcp://HOST:PORT" or "HOST:PORT".
std::optional<Bind> ParseAddress(const std::string& address) {
  static const std::regex re(R"(^(?:tcp://)?([^:/]+|\[[^\]]*\]):(\d+)$)");
  std::smatch m;
  if (!std::regex_match(address, m, re)) return std::nullopt;
  return Bind{m[1], std::stoi(m[2])};
}

struct Service {
  std::string name;
  YAML::Node node;
  std::map<std::string, std::string> env;
  bool zserve = false;                // runs the zserve image
  Invocation main;                    // its command
  std::optional<Invocation> health;   // its health check, when it runs zserve
  std::map<std::string, Bind> binds;  // by option: "--admin-bind" -> *:5557
  bool serves() const { return zserve && !main.path.empty() && !one_shot(); }
  // `zserve keygen --set`: writes the keys and exits.
  bool one_shot() const { return zserve && !main.path.empty() && main.path[0] == "keygen"; }
  std::string command() const { return main.path.empty() ? "" : main.path[0]; }
  bool scalable() const { return command() == "worker"; }
};

// Services of the normalized file, their command lines parsed (problems of
// parsing reported), their binds resolved.
std::vector<Service> LoadServices(const YAML::Node& compose, Problems* problems) {
  std::vector<Service> services;
  for (const auto& kv : compose["services"]) {
    Service s;
    s.name = kv.first.as<std::string>();
    s.node = kv.second;
    s.env = EnvOf(s.node["environment"]);
    const YAML::Node image = s.node["image"];
    s.zserve = s.node["build"].IsDefined() ||
               (image.IsScalar() && StartsWith(image.as<std::string>(), "zserve"));
    if (!s.zserve) {
      services.push_back(std::move(s));
      continue;
    }
    const std::string where = "service " + s.name;
    if (s.node["entrypoint"].IsDefined()) {
      problems->push_back(where + ": sets entrypoint; the image's is zserve");
    }
    s.main = ParseInvocation(AsArgv(s.node["command"]), s.env, where + " command", problems);
    std::vector<std::string> test = AsArgv(s.node["healthcheck"]["test"]);
    if (!test.empty() && test[0] != "NONE") {
      if (test[0] != "CMD" || test.size() < 2 || Basename(test[1]) != "zserve") {
        problems->push_back(where +
                            ": health check is not [\"CMD\", \"zserve\", ...]: " + Join(test));
      } else {
        s.health = ParseInvocation({test.begin() + 2, test.end()}, s.env, where + " healthcheck",
                                   problems);
      }
    }
    if (!s.main.path.empty()) {
      for (const auto& [name, o] : HelpOf({s.main.path[0]}).options) {
        if (!EndsWith(name, "-bind")) continue;
        const std::string value = Value(s.main, name);
        if (value.empty()) continue;
        std::optional<Bind> b = ParseAddress(value);
        if (!b) {
          problems->push_back(where + ": " + name + " '" + value + "' is not HOST:PORT");
          continue;
        }
        s.binds[name] = *b;
      }
    }
    services.push_back(std::move(s));
  }
  return services;
}

const Service* FindService(const std::vector<Service>& services, const std::string& name) {
  for (const Service& s : services) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

// A container port of a `ports` entry ("127.0.0.1:5555:5555/tcp", "9090",
// or the long form), and whether it is published on a host port.
std::optional<int> ContainerPort(const YAML::Node& entry) {
  if (entry.IsMap()) return entry["target"].as<int>();
  std::string s = entry.as<std::string>();
  s = s.substr(0, s.find('/'));
  const size_t colon = s.find_last_of(':');
  const std::string port = colon == std::string::npos ? s : s.substr(colon + 1);
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return std::stoi(port);
}

// ---------------------------------------------------------------------------
// The checks

// Every zserve service runs `zserve controller|broker|worker` with flags its
// --help lists; every ZSERVE_* variable it sets is one of its options' env
// names; the broker's health check is its readiness.
Problems CheckCommands(const YAML::Node& compose) {
  Problems problems;
  std::vector<Service> services = LoadServices(compose, &problems);
  bool any = false;
  for (const Service& s : services) {
    if (!s.zserve) continue;
    any = true;
    const std::string where = "service " + s.name;
    if (s.one_shot()) {
      if (s.node["restart"].as<std::string>("") != "no") {
        problems.push_back(where + ": runs `zserve keygen` but restarts (restart: \"no\")");
      }
      continue;
    }
    if (!s.serves()) continue;  // reported by the parse
    const std::string command = s.command();
    if (command != "controller" && command != "broker" && command != "worker") {
      problems.push_back(where + ": runs `zserve " + command +
                         "`; a compose service is one controller, broker or worker");
    }
    // CURVE is on in compose (docs/security.md): every server has a key
    // from the keys service's volume, and waits for it to be written.
    if (Value(s.main, "--curve-key").empty()) {
      problems.push_back(where + ": CURVE is off (no --curve-key / ZSERVE_CURVE_KEY)");
    }
    const YAML::Node depends = YAML::Clone(s.node["depends_on"]);
    const YAML::Node on_keys = depends.IsMap() ? depends["keys"] : YAML::Node();
    if (!on_keys.IsDefined() || !on_keys.IsMap() ||
        on_keys["condition"].as<std::string>("") != "service_completed_successfully") {
      problems.push_back(where + ": does not wait for the keys service to complete");
    }
    std::set<std::string> env_names;
    for (const auto& [name, o] : OptionsOf(s.main.path)) env_names.insert(o.env);
    for (const auto& [key, value] : s.env) {
      if (StartsWith(key, "ZSERVE_") && env_names.count(key) == 0) {
        problems.push_back(where + ": sets " + key + ", which " + Command(s.main) +
                           " --help does not list");
      }
    }
    if (command == "broker") {
      if (!s.health || s.health->path != std::vector<std::string>{"status"} ||
          s.health->flags.count("--ready") == 0) {
        problems.push_back(where + ": its health check is not `zserve status --ready`");
      }
    }
  }
  if (!any) problems.push_back("no service runs the zserve image");
  return problems;
}

// Options holding an address another process binds, and which bind.
struct Link {
  std::string command, option, target_command, target_option;
};
const std::vector<Link> kLinks = {
    {"broker", "--controller", "controller", "--admin-bind"},
    {"broker", "--controller-pub", "controller", "--pub-bind"},
    {"worker", "--broker", "broker", "--worker-bind"},
    {"worker", "--controller", "controller", "--admin-bind"},
    {"worker", "--controller-pub", "controller", "--pub-bind"},
    {"status", "--broker", "broker", "--client-bind"},
    {"call", "--broker", "broker", "--client-bind"},
    {"bench", "--broker", "broker", "--client-bind"},
    {"ctl", "--controller", "controller", "--admin-bind"},
    {"apply", "--controller", "controller", "--admin-bind"},
};

// Each socket binds all interfaces on a fixed port, published or exposed;
// each address a command or health check connects to names a service (or,
// for a health check, its own container) that binds that port for that role;
// a service depends on those it connects to.
Problems CheckAddresses(const YAML::Node& compose) {
  Problems problems;
  std::vector<Service> services = LoadServices(compose, &problems);
  for (const Service& s : services) {
    if (!s.serves()) continue;
    const std::string where = "service " + s.name;
    std::set<int> bound, published, exposed;
    for (const auto& [option, b] : s.binds) {
      if (b.host != "*" && b.host != "0.0.0.0") {
        problems.push_back(where + ": " + option + " binds " + b.host + ":" +
                           std::to_string(b.port) +
                           ": other containers cannot reach it (bind * or 0.0.0.0)");
      }
      if (b.port == 0) {
        problems.push_back(where + ": " + option + " binds a free port: nobody can find it");
      }
      bound.insert(b.port);
    }
    if (s.binds.count("--metrics-bind") == 0) {
      problems.push_back(where + ": serves no metrics (--metrics-bind is empty)");
    }
    for (const YAML::Node& p : s.node["ports"]) {
      std::optional<int> port = ContainerPort(p);
      if (!port || bound.count(*port) == 0) {
        problems.push_back(where + ": publishes container port " +
                           (port ? std::to_string(*port) : "?") + ", which it does not bind");
      } else {
        published.insert(*port);
      }
    }
    for (const YAML::Node& e : s.node["expose"]) {
      std::optional<int> port = ContainerPort(e);
      if (!port || bound.count(*port) == 0) {
        problems.push_back(where + ": exposes port " + e.as<std::string>() +
                           ", which it does not bind");
      } else {
        exposed.insert(*port);
      }
    }
    for (int port : bound) {
      if (published.count(port) == 0 && exposed.count(port) == 0) {
        problems.push_back(where + ": binds port " + std::to_string(port) +
                           " but neither publishes nor exposes it");
      }
    }

    std::vector<const Invocation*> invocations{&s.main};
    if (s.health) invocations.push_back(&*s.health);
    for (const Invocation* inv : invocations) {
      const bool in_health = s.health && inv == &*s.health;
      const std::string what = where + (in_health ? " healthcheck" : "");
      for (const auto& [option, o] : OptionsOf(inv->path)) {
        if (EndsWith(option, "-bind")) continue;
        const std::string value = Value(*inv, option);
        const Link* link = nullptr;
        for (const Link& l : kLinks) {
          const bool on_path =
              std::find(inv->path.begin(), inv->path.end(), l.command) != inv->path.end();
          if (on_path && l.option == option) link = &l;
        }
        if (link == nullptr) {
          if (StartsWith(value, "tcp://")) {
            problems.push_back(what + ": " + option + " = " + value +
                               " is an address this test has no rule for (kLinks)");
          }
          continue;
        }
        if (value.empty()) continue;  // not connected (e.g. a worker not following user_config)
        std::optional<Bind> address = ParseAddress(value);
        if (!address) {
          problems.push_back(what + ": " + option + " = '" + value + "' is not tcp://HOST:PORT");
          continue;
        }
        const bool local = address->host == "127.0.0.1" || address->host == "localhost";
        const Service* target = local ? &s : FindService(services, address->host);
        const std::string wants = "zserve " + link->target_command + " " + link->target_option;
        if (target == nullptr || !target->serves()) {
          problems.push_back(what + ": " + option + " = " + value + ": '" + address->host +
                             "' is no zserve service (wants the " + wants + " port)");
          continue;
        }
        auto bind = target->binds.find(link->target_option);
        if (target->command() != link->target_command || bind == target->binds.end() ||
            bind->second.port != address->port) {
          problems.push_back(what + ": " + option + " = " + value + ", but that port of service " +
                             target->name + " is not its " + wants);
          continue;
        }
        if (!in_health && target != &s && !s.node["depends_on"][target->name].IsDefined()) {
          problems.push_back(where + ": connects to " + target->name +
                             " but does not depend on it");
        }
      }
    }
  }
  for (const Service& s : services) {
    for (const auto& kv : s.node["depends_on"]) {
      const std::string target = kv.first.as<std::string>();
      const Service* t = FindService(services, target);
      if (kv.second["condition"].IsDefined() &&
          kv.second["condition"].as<std::string>() == "service_healthy" &&
          (t == nullptr || !t->node["healthcheck"]["test"].IsDefined())) {
        problems.push_back("service " + s.name + ": waits for " + target +
                           " to be healthy, which has no health check");
      }
    }
  }
  return problems;
}

// Prometheus scrapes the metrics port of every zserve service (scaled ones by
// DNS, since a static target reaches one container), and only those.
Problems CheckPrometheus(const YAML::Node& compose, const YAML::Node& prometheus) {
  Problems problems;
  std::vector<Service> services = LoadServices(compose, &problems);
  struct Target {
    std::string host;
    int port;
    bool dns;
    std::string job;
  };
  std::vector<Target> targets;
  for (const YAML::Node& job : prometheus["scrape_configs"]) {
    const std::string name = job["job_name"].as<std::string>("?");
    if (job["metrics_path"].IsDefined() && job["metrics_path"].as<std::string>() != "/metrics") {
      problems.push_back("job " + name + ": zserve serves /metrics");
    }
    for (const YAML::Node& sc : job["static_configs"]) {
      for (const YAML::Node& t : sc["targets"]) {
        std::optional<Bind> a = ParseAddress(t.as<std::string>());
        if (!a) {
          problems.push_back("job " + name + ": target '" + t.as<std::string>() +
                             "' is not HOST:PORT");
        } else {
          targets.push_back({a->host, a->port, false, name});
        }
      }
    }
    for (const YAML::Node& dns : job["dns_sd_configs"]) {
      const std::string type = dns["type"].as<std::string>("SRV");
      if (type != "A" && type != "AAAA") {
        problems.push_back("job " + name + ": dns_sd_configs type " + type +
                           ": Docker's DNS answers A records for a service");
      }
      if (!dns["port"].IsDefined()) {
        problems.push_back("job " + name + ": dns_sd_configs without a port");
        continue;
      }
      for (const YAML::Node& n : dns["names"]) {
        targets.push_back({n.as<std::string>(), dns["port"].as<int>(), true, name});
      }
    }
  }
  for (const Service& s : services) {
    if (!s.serves() || s.binds.count("--metrics-bind") == 0) continue;
    const int port = s.binds.at("--metrics-bind").port;
    bool found = false;
    for (const Target& t : targets) {
      if (t.host != s.name || t.port != port) continue;
      found = true;
      if (s.scalable() && !t.dns) {
        problems.push_back(
            "job " + t.job + ": " + s.name +
            " scales; a static target reaches one of its containers: use dns_sd_configs");
      }
    }
    if (!found) {
      problems.push_back("service " + s.name + " serves metrics on port " + std::to_string(port) +
                         ", which prometheus.yml does not scrape");
    }
  }
  for (const Target& t : targets) {
    if (t.host == "localhost" || t.host == "127.0.0.1") continue;  // Prometheus itself
    const Service* s = FindService(services, t.host);
    if (s == nullptr || !s->serves() || s->binds.count("--metrics-bind") == 0 ||
        s->binds.at("--metrics-bind").port != t.port) {
      problems.push_back("job " + t.job + ": target " + t.host + ":" + std::to_string(t.port) +
                         " is no zserve service's metrics port");
    }
  }
  return problems;
}

// The source of the mount of `target` in a service ("" if none), and whether
// it is a bind mount of a host path and read-only.
struct Mount {
  std::string source;
  bool bind = false;
  bool read_only = false;
};
std::optional<Mount> MountAt(const YAML::Node& service, const std::string& target) {
  for (const YAML::Node& v : service["volumes"]) {
    Mount m;
    std::string to;
    if (v.IsMap()) {
      m.source = v["source"].as<std::string>("");
      to = v["target"].as<std::string>("");
      m.bind = v["type"].as<std::string>("") == "bind";
      m.read_only = v["read_only"].as<bool>(false);
    } else {
      std::vector<std::string> parts;
      std::stringstream s(v.as<std::string>());
      std::string part;
      while (std::getline(s, part, ':')) parts.push_back(part);
      if (parts.size() < 2) continue;
      m.source = parts[0];
      to = parts[1];
      m.bind = StartsWith(m.source, "/") || StartsWith(m.source, ".");
      m.read_only = parts.size() > 2 && parts[2].find("ro") != std::string::npos;
    }
    if (to == target) return m;
  }
  return std::nullopt;
}

// The controller keeps its store on a named volume and reads a deployment
// file mounted read-only; the workers serve that file's backends, as many
// containers as its num_replicas, and scale (no container name, no host port).
Problems CheckDeployment(const YAML::Node& compose, const YAML::Node& deployment) {
  Problems problems;
  std::vector<Service> services = LoadServices(compose, &problems);
  int controllers = 0;
  for (const Service& s : services) {
    if (s.command() != "controller") continue;
    ++controllers;
    const std::string where = "service " + s.name;
    const std::string store = Value(s.main, "--store");
    std::optional<Mount> state = MountAt(s.node, Dirname(store));
    if (!state || state->bind || !compose["volumes"][state->source].IsDefined()) {
      problems.push_back(where + ": its store " + store + " is not on a named volume");
    }
    const std::string config = Value(s.main, "--config");
    std::optional<Mount> file = MountAt(s.node, config);
    if (config.empty() || !file || !file->bind || !file->read_only) {
      problems.push_back(where + ": its deployment file '" + config +
                         "' is not a read-only mount of a host file");
    }
  }
  if (controllers != 1) problems.push_back("not exactly one controller service");

  struct Backend {
    std::string handler;
    int replicas = 1;
    int containers = 0;
  };
  std::map<std::string, Backend> backends;
  for (const auto& kv : deployment["backends"]) {
    const std::string name = kv.first.as<std::string>();
    backends[name] = {kv.second["handler"].as<std::string>(name),
                      kv.second["num_replicas"].as<int>(1), 0};
  }
  for (const Service& s : services) {
    if (!s.scalable()) continue;
    const std::string where = "service " + s.name;
    if (s.node["container_name"].IsDefined()) {
      problems.push_back(where + ": a container_name stops `--scale`");
    }
    if (s.node["ports"].IsDefined() && s.node["ports"].size() > 0) {
      problems.push_back(where + ": a published host port stops `--scale`");
    }
    const std::string backend = Value(s.main, "--backend");
    auto b = backends.find(backend);
    if (b == backends.end()) {
      problems.push_back(where + ": serves backend '" + backend +
                         "', which the deployment file lacks");
      continue;
    }
    const std::string handler = Value(s.main, "--handler");
    if (handler != b->second.handler) {
      problems.push_back(where + ": runs handler '" + handler + "', the file says '" +
                         b->second.handler + "' for backend " + backend);
    }
    int containers = 1;
    if (s.node["deploy"]["replicas"].IsDefined())
      containers = s.node["deploy"]["replicas"].as<int>();
    if (s.node["scale"].IsDefined()) containers = s.node["scale"].as<int>();
    b->second.containers += containers;
  }
  for (const auto& [name, b] : backends) {
    if (b.containers == 0) {
      problems.push_back("backend " + name + " of the deployment file has no worker service");
    } else if (b.containers != b.replicas) {
      problems.push_back("backend " + name + ": num_replicas " + std::to_string(b.replicas) +
                         " in the file, " + std::to_string(b.containers) + " worker containers");
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------
// The Dockerfile

struct Instruction {
  std::string keyword;  // upper case
  std::string args;
};

struct Stage {
  std::string image;
  std::string name;
  std::vector<Instruction> body;
};

std::vector<Stage> ParseDockerfile(const std::string& text) {
  std::vector<Stage> stages;
  std::stringstream lines(text);
  std::string line, logical;
  auto flush = [&] {
    std::stringstream words(logical);
    std::string keyword;
    words >> keyword;
    for (char& c : keyword) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::string args;
    std::getline(words, args);
    args.erase(0, args.find_first_not_of(" \t"));
    logical.clear();
    if (keyword.empty()) return;
    if (keyword == "FROM") {
      std::stringstream a(args);
      Stage stage;
      std::string word, as;
      while (a >> word && StartsWith(word, "--")) {
      }
      stage.image = word;
      if (a >> as && (as == "AS" || as == "as")) a >> stage.name;
      stages.push_back(stage);
    } else if (!stages.empty()) {
      stages.back().body.push_back({keyword, args});
    }
  };
  while (std::getline(lines, line)) {
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;  // comments inside RUN too
    const bool continued = EndsWith(line, "\\");
    logical += (logical.empty() ? "" : " ") + (continued ? line.substr(0, line.size() - 1) : line);
    if (!continued) flush();
  }
  flush();
  return stages;
}

// Packages of `apt-get install` commands in a RUN.
std::vector<std::string> AptInstalls(const std::string& run) {
  std::vector<std::string> packages;
  std::stringstream words(run);
  std::string w, previous;
  bool in_install = false;
  while (words >> w) {
    if (w == "&&" || w == "||" || w == ";" || w == "|") {
      in_install = false;
    } else if (previous == "apt-get" && w == "install") {
      in_install = true;
    } else if (in_install && !StartsWith(w, "-")) {
      const bool last = EndsWith(w, ";");
      packages.push_back(last ? w.substr(0, w.size() - 1) : w);
      if (last) in_install = false;
    }
    previous = w;
  }
  return packages;
}

// The libraries the binary links, each with the Debian packages holding it.
std::map<std::string, std::set<std::string>> LinkedLibraryPackages(const std::string& binary) {
  const std::string readelf = FindProgram("readelf");
  const std::string dpkg_query = FindProgram("dpkg-query");
  REQUIRE(!readelf.empty());
  REQUIRE(!dpkg_query.empty());
  Output elf = Run(readelf, {"-d", binary});
  REQUIRE(elf.code == 0);
  static const std::regex needed_re(R"(\(NEEDED\)\s+Shared library: \[([^\]]+)\])");
  std::vector<std::string> args{"-S"};
  for (auto it = std::sregex_iterator(elf.out.begin(), elf.out.end(), needed_re);
       it != std::sregex_iterator(); ++it) {
    // A sanitizer build of the tests links the sanitizer runtimes; the image
    // is never built that way.
    static const std::regex sanitizer_re(R"(^lib(asan|ubsan|tsan|lsan)\.so.*)");
    if (std::regex_match((*it)[1].str(), sanitizer_re)) continue;
    args.push_back("*/" + (*it)[1].str());
  }
  // One query for all: lines "libzmq5:amd64: /usr/lib/x86_64-linux-gnu/libzmq.so.5".
  Output owners = Run(dpkg_query, args);
  INFO("dpkg-query " << Join(args) << ":\n" << owners.out << owners.err);
  REQUIRE(owners.code == 0);
  std::map<std::string, std::set<std::string>> libraries;
  std::stringstream lines(owners.out);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t colon = line.find(": ");
    if (colon == std::string::npos) continue;
    const std::string library = Basename(line.substr(colon + 2));
    std::stringstream packages(line.substr(0, colon));
    std::string package;
    while (std::getline(packages, package, ',')) {
      package.erase(0, package.find_first_not_of(' '));
      libraries[library].insert(package.substr(0, package.find(':')));
    }
  }
  REQUIRE(libraries.size() == args.size() - 1);
  REQUIRE(!libraries.empty());
  return libraries;
}

// In every Debian image already: apt itself depends on them.
const std::set<std::string> kBasePackages = {"libc6", "libstdc++6", "libgcc-s1"};

// Every stage builds on Debian 12; the build stage takes its packages from the
// Makefile (`make deps`); the runtime stage installs runtime libraries only,
// the package of each library the binary links, copies the zserve binary and
// nothing else onto PATH, runs it as the entrypoint, as a non-root user.
Problems CheckDockerfile(const std::string& text,
                         const std::map<std::string, std::set<std::string>>& libraries) {
  Problems problems;
  std::vector<Stage> stages = ParseDockerfile(text);
  if (stages.size() < 2) {
    problems.push_back("not a multi-stage build");
    return problems;
  }
  std::set<std::string> names;
  for (const Stage& stage : stages) {
    if (!StartsWith(stage.image, "debian:bookworm") && names.count(stage.image) == 0) {
      problems.push_back("stage " + stage.name + " builds FROM " + stage.image +
                         ", not debian:bookworm (Debian 12)");
    }
    if (!stage.name.empty()) names.insert(stage.name);
  }
  const Stage& runtime = stages.back();
  std::string build_binary;  // where a build stage's cmake puts zserve
  bool make_deps = false;
  static const std::regex make_deps_re(R"(\bmake\b[^&;|]*\bdeps\b)");
  static const std::regex build_dir_re(R"(\bcmake\b[^&;|]*\s-B\s*(\S+))");
  for (size_t i = 0; i + 1 < stages.size(); ++i) {
    std::string workdir = "/";
    for (const Instruction& in : stages[i].body) {
      if (in.keyword == "WORKDIR") workdir = in.args;
      if (in.keyword != "RUN") continue;
      make_deps = make_deps || std::regex_search(in.args, make_deps_re);
      for (const std::string& p : AptInstalls(in.args)) {
        if (p != "make") {
          problems.push_back("build stage installs " + p +
                             " itself: the package list is the Makefile's (make deps)");
        }
      }
      std::smatch m;
      if (std::regex_search(in.args, m, build_dir_re)) {
        const std::string dir = m[1];
        build_binary = (StartsWith(dir, "/") ? dir : workdir + "/" + dir) + "/zserve";
      }
    }
  }
  if (!make_deps) problems.push_back("no build stage runs `make deps`");

  std::set<std::string> installed;
  std::string user;
  int copies = 0;
  std::string entrypoint;
  for (const Instruction& in : runtime.body) {
    if (in.keyword == "RUN") {
      for (const std::string& p : AptInstalls(in.args)) {
        installed.insert(p);
        if (EndsWith(p, "-dev") || p == "build-essential" || p == "cmake") {
          problems.push_back("runtime stage installs build package " + p);
        }
      }
    } else if (in.keyword == "USER") {
      user = in.args;
    } else if (in.keyword == "ENTRYPOINT") {
      entrypoint = in.args;
    } else if (in.keyword == "ADD") {
      problems.push_back("runtime stage ADDs " + in.args + ": it holds the zserve binary only");
    } else if (in.keyword == "COPY") {
      ++copies;
      std::stringstream words(in.args);
      std::vector<std::string> parts;
      std::string from, w;
      while (words >> w) {
        if (StartsWith(w, "--from=")) {
          from = w.substr(7);
        } else if (!StartsWith(w, "--")) {
          parts.push_back(w);
        }
      }
      if (from.empty() || names.count(from) == 0 || parts.size() != 2 ||
          Basename(parts[0]) != "zserve") {
        problems.push_back("runtime stage copies `" + in.args +
                           "`: only the zserve binary, from the build stage");
        continue;
      }
      if (!build_binary.empty() && parts[0] != build_binary) {
        problems.push_back("runtime stage copies " + parts[0] + ", the build makes " +
                           build_binary);
      }
      const std::string dest = EndsWith(parts[1], "/") ? parts[1] + "zserve" : parts[1];
      if (dest != "/usr/local/bin/zserve" && dest != "/usr/bin/zserve") {
        problems.push_back("runtime stage puts the binary at " + dest +
                           ", not on PATH (health checks run `zserve`)");
      }
    }
  }
  if (copies != 1)
    problems.push_back("runtime stage has " + std::to_string(copies) + " COPY lines");
  const std::string user_name = user.substr(0, user.find(':'));
  if (user.empty() || user_name == "root" || user_name == "0") {
    problems.push_back("runtime stage runs as root (USER '" + user + "')");
  }
  static const std::regex entrypoint_re(R"(^\[\s*"([^"]*)\")");
  std::smatch m;
  if (!std::regex_search(entrypoint, m, entrypoint_re) || Basename(m[1]) != "zserve") {
    problems.push_back("runtime ENTRYPOINT is not [\"zserve\"]: compose commands are subcommands");
  }
  for (const auto& [library, packages] : libraries) {
    bool ok = false;
    for (const std::string& p : packages) ok = ok || installed.count(p) || kBasePackages.count(p);
    if (!ok) {
      problems.push_back("runtime stage lacks the package of " + library + " (" +
                         Join({packages.begin(), packages.end()}, ", ") + ")");
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------
// Fixtures

std::vector<Service> Services() {
  Problems ignored;
  return LoadServices(ComposeConfig(), &ignored);
}

// A service's mount of a file by its option's value, as a path on this host.
std::string MountedFile(const std::string& service, const std::string& option) {
  std::vector<Service> services = Services();
  const Service* s = FindService(services, service);
  REQUIRE(s != nullptr);
  const std::string target =
      s->zserve ? Value(s->main, option) : option;  // option: a container path for others
  std::optional<Mount> m = MountAt(s->node, target);
  INFO("service " << service << " mounts nothing at " << target);
  REQUIRE(m);
  return m->source;
}

YAML::Node Deployment() { return YAML::LoadFile(MountedFile("controller", "--config")); }

YAML::Node PrometheusConfig() {
  return YAML::LoadFile(MountedFile("prometheus", "/etc/prometheus/prometheus.yml"));
}

const std::map<std::string, std::set<std::string>>& Libraries() {
  static const auto libraries = LinkedLibraryPackages(kBinary);
  return libraries;
}

std::string DockerfilePath() {
  const YAML::Node build = ComposeConfig()["services"]["controller"]["build"];
  return build["context"].as<std::string>() + "/" + build["dockerfile"].as<std::string>();
}

#define CHECK_NO_PROBLEMS(problems)            \
  do {                                         \
    const Problems& p_ = (problems);           \
    INFO("problems:\n  " << Join(p_, "\n  ")); \
    CHECK(p_.empty());                         \
  } while (false)

// ---------------------------------------------------------------------------

TEST_CASE("docker-compose config accepts the compose file", "[compose]") {
  const YAML::Node& compose = ComposeConfig();
  std::set<std::string> names;
  for (const auto& kv : compose["services"]) names.insert(kv.first.as<std::string>());
  for (const char* name : {"controller", "broker", "worker", "worker-dense", "prometheus"}) {
    INFO(name);
    CHECK(names.count(name) == 1);
  }
  // Every zserve service builds the same image from compose/Dockerfile.
  for (const Service& s : Services()) {
    if (!s.zserve) continue;
    INFO("service " << s.name);
    CHECK(s.node["image"].as<std::string>("") == "zserve:local");
    CHECK(s.node["build"]["context"].as<std::string>("") == kSourceDir);
    CHECK(s.node["build"]["dockerfile"].as<std::string>("") == "compose/Dockerfile");
  }
}

TEST_CASE("every zserve service runs a real subcommand with flags and variables it lists",
          "[compose]") {
  CHECK_NO_PROBLEMS(CheckCommands(ComposeConfig()));
  std::set<std::string> commands;
  for (const Service& s : Services()) commands.insert(s.command());
  CHECK(commands.count("controller") == 1);
  CHECK(commands.count("broker") == 1);
  CHECK(commands.count("worker") == 1);
}

TEST_CASE("every address a service connects to is bound by the service it names", "[compose]") {
  CHECK_NO_PROBLEMS(CheckAddresses(ComposeConfig()));
  // The connections that must exist, not only be consistent when present.
  std::vector<Service> services = Services();
  const Service* broker = FindService(services, "broker");
  const Service* worker = FindService(services, "worker");
  REQUIRE(broker != nullptr);
  REQUIRE(worker != nullptr);
  CHECK(Value(broker->main, "--controller") == "tcp://controller:5557");
  CHECK(Value(broker->main, "--controller-pub") == "tcp://controller:5558");
  CHECK(Value(worker->main, "--broker") == "tcp://broker:5556");
  CHECK(Value(worker->main, "--controller") == "tcp://controller:5557");  // follows user_config
}

TEST_CASE("Prometheus scrapes every metrics port of every zserve service", "[compose]") {
  CHECK_NO_PROBLEMS(CheckPrometheus(ComposeConfig(), PrometheusConfig()));
  const std::string promtool = FindProgram("promtool");
  INFO("promtool is in Debian's package prometheus (the Makefile's TEST_PACKAGES)");
  REQUIRE(!promtool.empty());
  Output o = Run(promtool,
                 {"check", "config", MountedFile("prometheus", "/etc/prometheus/prometheus.yml")});
  INFO(o.out << o.err);
  CHECK(o.code == 0);
}

TEST_CASE("the workers serve the backends of the mounted deployment file", "[compose]") {
  CHECK(MountedFile("controller", "--config") == kComposeDir + "/deployment.yaml");
  CHECK_NO_PROBLEMS(CheckDeployment(ComposeConfig(), Deployment()));
}

TEST_CASE("the mounted deployment file serves with CURVE keys and passes the broker health check",
          "[compose]") {
  const std::string path = MountedFile("controller", "--config");
  const YAML::Node deployment = YAML::LoadFile(path);
  // The keys service's command, writing into a directory of this test; the
  // containers' key paths point there.
  std::vector<Service> services = Services();
  const Service* keygen = FindService(services, "keys");
  REQUIRE(keygen != nullptr);
  REQUIRE(keygen->one_shot());
  const std::string container_keys = Value(keygen->main, "--set");
  REQUIRE(!container_keys.empty());
  const std::string keys = MakeTempDir() + "/keys";
  std::vector<std::string> keygen_args = keygen->main.args;
  std::replace(keygen_args.begin(), keygen_args.end(), container_keys, keys);
  REQUIRE(Run(kBinary, keygen_args).code == 0);
  auto local = [&](std::string arg) {
    if (StartsWith(arg, container_keys)) arg = keys + arg.substr(container_keys.size());
    return arg;
  };
  // Controller, broker and workers with the keys each compose service names.
  auto curve_args = [&](const std::string& service, std::vector<std::string> options) {
    const Service* s = FindService(services, service);
    REQUIRE(s != nullptr);
    std::vector<std::string> args;
    for (const std::string& option : options) {
      std::string value = Value(s->main, option);
      REQUIRE(!value.empty());
      args.push_back(option);
      args.push_back(local(value));
    }
    return args;
  };
  RolesOptions ro;
  ro.controller_args = curve_args("controller", {"--curve-key", "--curve-allow"});
  ro.broker_args = curve_args("broker", {"--curve-key", "--curve-allow", "--curve-controller-key"});
  Roles roles(ReadFile(path), ro);
  INFO(ReadFile(roles.log()));
  for (const auto& kv : deployment["backends"]) {
    const std::string backend = kv.first.as<std::string>();
    for (int i = 0; i < kv.second["num_replicas"].as<int>(1); ++i) {
      roles.StartWorker(backend, kv.second["handler"].as<std::string>(backend),
                        curve_args("worker", {"--curve-key", "--curve-broker-key"}));
    }
  }

  // The broker's health check, pointed at this broker.
  const Service* broker = FindService(services, "broker");
  REQUIRE(broker != nullptr);
  REQUIRE(broker->health);
  auto health_check = [&](const std::string& address) {
    std::vector<std::string> args = broker->health->args;
    for (size_t i = 0; i < args.size(); ++i) {
      args[i] = local(args[i]);
      if (i > 0 && args[i - 1] == "--broker") args[i] = address;
    }
    return Run(kBinary, args, std::chrono::seconds(30));
  };
  REQUIRE(Eventually([&] { return health_check(roles.client_address()).code == 0; },
                     std::chrono::milliseconds(30'000), std::chrono::milliseconds(200)));
  Output nobody = health_check("tcp://127.0.0.1:" + std::to_string(FreePort()));
  CHECK(nobody.code == 1);

  zserve::ClientOptions o;
  o.broker_address = roles.client_address();
  zserve::StatusOr<zserve::KeyPair> client_key = zserve::LoadKeyPair(keys + "/client.key");
  zserve::StatusOr<std::string> broker_key = zserve::LoadPublicKey(keys + "/broker.key.pub");
  REQUIRE(client_key.ok());
  REQUIRE(broker_key.ok());
  o.curve_key = *client_key;
  o.curve_server_key = *broker_key;
  std::unique_ptr<zserve::Client> client = std::move(zserve::Client::Create(o)).value();
  for (const auto& kv : deployment["endpoints"]) {
    const std::string endpoint = kv.first.as<std::string>();
    const std::string backend = kv.second["backend"].as<std::string>("");
    const std::string handler = deployment["backends"][backend]["handler"].as<std::string>(backend);
    INFO("endpoint " << endpoint << " (handler " << handler << ")");
    if (handler == "dense") {
      zserve::StatusOr<std::string> r = client->Call(endpoint, std::string(64 * 4, '\0'));
      REQUIRE(r.ok());
      CHECK(r->size() == 16 * 4);
    } else {
      zserve::StatusOr<std::string> r = client->Call(endpoint, "7");
      INFO((r.ok() ? "" : r.status().ToString()));
      CHECK(r.ok());
    }
  }
}

TEST_CASE("the Dockerfile builds on Debian 12 and runs the binary alone as non-root", "[compose]") {
  CHECK(DockerfilePath() == kComposeDir + "/Dockerfile");
  CHECK_NO_PROBLEMS(CheckDockerfile(ReadFile(DockerfilePath()), Libraries()));
  // The build context is the repository root: host build directories stay out.
  const std::string ignore = ReadFile(kSourceDir + "/.dockerignore");
  CHECK(ignore.find("build*") != std::string::npos);
}

// Each check, fed a broken copy, reports it: the checks above can fail.
TEST_CASE("the checks report broken files", "[compose]") {
  YAML::Node compose = YAML::Clone(ComposeConfig());
  YAML::Node services = compose["services"];

  SECTION("a made-up flag, subcommand or variable") {
    services["worker"]["command"].push_back("--no-such-flag");
    services["broker"]["command"][0] = "router";
    services["controller"]["environment"]["ZSERVE_NO_SUCH"] = "1";
    services["worker-dense"]["environment"]["ZSERVE_CLIENT_BIND"] = "tcp://*:5555";  // a broker's
    Problems p = CheckCommands(compose);
    INFO("problems:\n  " << Join(p, "\n  "));
    CHECK(Reported(p, {"service worker", "--no-such-flag"}));
    CHECK(Reported(p, {"service broker", "'router' is not a zserve subcommand"}));
    CHECK(Reported(p, {"service controller", "ZSERVE_NO_SUCH"}));
    CHECK(Reported(p, {"service worker-dense", "ZSERVE_CLIENT_BIND"}));
  }
  SECTION("a required option missing and a health check that is not readiness") {
    services["worker"]["environment"].remove("ZSERVE_BACKEND");
    services["broker"]["healthcheck"]["test"] = YAML::Load(R"(["CMD", "zserve", "status"])");
    Problems p = CheckCommands(compose);
    INFO("problems:\n  " << Join(p, "\n  "));
    CHECK(Reported(p, {"service worker", "requires --backend"}));
    CHECK(Reported(p, {"service broker", "status --ready"}));
  }
  SECTION("a server without CURVE, one not waiting for its keys, a restarting keygen") {
    services["worker-dense"]["environment"].remove("ZSERVE_CURVE_KEY");
    services["worker-dense"]["environment"].remove("ZSERVE_CURVE_BROKER_KEY");
    services["worker-dense"]["environment"].remove("ZSERVE_CURVE_CONTROLLER_KEY");
    services["broker"]["depends_on"].remove("keys");
    services["keys"]["restart"] = "always";
    Problems p = CheckCommands(compose);
    INFO("problems:\n  " << Join(p, "\n  "));
    CHECK(Reported(p, {"service worker-dense", "CURVE is off"}));
    CHECK(Reported(p, {"service broker", "keys service"}));
    CHECK(Reported(p, {"service keys", "restarts"}));
  }
  SECTION("an address of the wrong role, service or interface") {
    services["worker"]["environment"]["ZSERVE_WORKER_BROKER"] = "tcp://broker:5555";  // clients'
    services["worker-dense"]["environment"]["ZSERVE_CONTROLLER"] = "tcp://nosuch:5557";
    services["controller"]["environment"]["ZSERVE_ADMIN_BIND"] = "tcp://127.0.0.1:5557";
    services["broker"]["environment"].remove("ZSERVE_CONTROLLER_PUB");  // default: itself
    services["broker"]["expose"] = YAML::Load("['5556', '6000']");
    Problems p = CheckAddresses(compose);
    INFO("problems:\n  " << Join(p, "\n  "));
    CHECK(Reported(p, {"service worker:", "tcp://broker:5555", "worker-bind"}));
    CHECK(Reported(p, {"service worker-dense", "'nosuch' is no zserve service"}));
    CHECK(Reported(p, {"service controller", "--admin-bind", "127.0.0.1"}));
    CHECK(Reported(p, {"service broker:", "--controller-pub", "tcp://127.0.0.1:5558"}));
    CHECK(Reported(p, {"service broker", "exposes port 6000"}));
  }
  SECTION("a health check waited for that does not exist") {
    services["controller"].remove("healthcheck");
    CHECK(Reported(CheckAddresses(compose), {"waits for controller", "no health check"}));
  }
  SECTION("Prometheus missing a port, scraping a scaled service statically, or a stale target") {
    YAML::Node prometheus = YAML::Clone(PrometheusConfig());
    YAML::Node jobs = prometheus["scrape_configs"];
    YAML::Node kept = YAML::Load("[]");
    for (YAML::Node job : jobs) {
      if (job["job_name"].as<std::string>() != "zserve-broker") kept.push_back(job);
    }
    kept.push_back(YAML::Load(
        "{job_name: extra, static_configs: [{targets: ['worker:9102', 'controller:9999']}]}"));
    prometheus["scrape_configs"] = kept;
    Problems p = CheckPrometheus(compose, prometheus);
    INFO("problems:\n  " << Join(p, "\n  "));
    CHECK(Reported(p, {"service broker", "9101", "does not scrape"}));
    CHECK(Reported(p, {"worker scales", "dns_sd_configs"}));
    CHECK(Reported(p, {"controller:9999", "no zserve service's metrics port"}));

    services["worker-dense"]["environment"]["ZSERVE_METRICS_BIND"] = "0.0.0.0:9103";
    CHECK(Reported(CheckPrometheus(compose, PrometheusConfig()),
                   {"service worker-dense", "9103", "does not scrape"}));
  }
  SECTION("workers that do not match the deployment file or cannot scale") {
    YAML::Node deployment = YAML::Clone(Deployment());
    services["worker"]["container_name"] = "echo";
    services["worker"]["ports"] = YAML::Load("['9102:9102']");
    services["worker-dense"]["environment"]["ZSERVE_HANDLER"] = "sleep";
    deployment["backends"]["echo"]["num_replicas"] = 3;
    deployment["backends"]["extra"]["handler"] = "echo";
    services["controller"]["volumes"] = YAML::Load("['/tmp/state:/var/lib/zserve']");
    Problems p = CheckDeployment(compose, deployment);
    INFO("problems:\n  " << Join(p, "\n  "));
    CHECK(Reported(p, {"service worker", "container_name"}));
    CHECK(Reported(p, {"service worker", "host port"}));
    CHECK(Reported(p, {"service worker-dense", "handler 'sleep'"}));
    CHECK(Reported(p, {"backend echo", "num_replicas 3"}));
    CHECK(Reported(p, {"backend extra", "no worker service"}));
    CHECK(Reported(p, {"service controller", "named volume"}));
    CHECK(Reported(p, {"service controller", "read-only mount"}));
  }
  SECTION("a Dockerfile on another base, as root, copying more, missing a library") {
    std::string text = ReadFile(DockerfilePath());
    auto replace = [&text](const std::string& from, const std::string& to) {
      const size_t at = text.find(from);
      REQUIRE(at != std::string::npos);
      text.replace(at, from.size(), to);
    };
    replace("FROM debian:bookworm AS build", "FROM ubuntu:24.04 AS build");
    replace("USER 10001:10001", "USER root");
    replace("      libzmq5 \\\n", "");
    replace("ENTRYPOINT", "COPY --from=build /src /src\nENTRYPOINT");
    Problems p = CheckDockerfile(text, Libraries());
    INFO("problems:\n  " << Join(p, "\n  "));
    CHECK(Reported(p, {"ubuntu:24.04"}));
    CHECK(Reported(p, {"runs as root"}));
    CHECK(Reported(p, {"libzmq.so.5", "libzmq5"}));
    CHECK(Reported(p, {"copies `--from=build /src /src`"}));
    CHECK(Reported(p, {"2 COPY lines"}));
  }
  SECTION("a Dockerfile whose build stage lists packages itself") {
    std::string text = ReadFile(DockerfilePath());
    const size_t at = text.find("RUN make deps");
    REQUIRE(at != std::string::npos);
    text.replace(at, 13, "RUN apt-get install -y libzmq3-dev && true");
    Problems p = CheckDockerfile(text, Libraries());
    INFO("problems:\n  " << Join(p, "\n  "));
    CHECK(Reported(p, {"build stage installs libzmq3-dev"}));
    CHECK(Reported(p, {"no build stage runs `make deps`"}));
  }
}

}  // namespace
