#include "controller/deployment_file.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <vector>

namespace zserve::controller {
namespace {

using schemas::BackendConfig;
using schemas::ConfigState;
using schemas::EndpointConfig;

// Every refusal names the file, the place and the key.
class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}

  Status Error(const YAML::Node& at, const std::string& what) const {
    std::string where = origin_;
    if (at.Mark().line >= 0) where += ":" + std::to_string(at.Mark().line + 1);
    return BadRequest(where + ": " + what);
  }

  // Every mapping of the document, at any depth, has each key once: YAML
  // parsers differ on a second one (yaml-cpp keeps the first), so a file
  // that gives one is refused, not read one way or the other. A collection
  // reached again through an alias is checked once (by where it starts in
  // the text), so aliases cannot make the walk longer than the file.
  Status CheckNoDuplicateKeys(const YAML::Node& node) const {
    std::set<int> seen;
    return CheckNoDuplicateKeys(node, &seen);
  }

  Status CheckNoDuplicateKeys(const YAML::Node& node, std::set<int>* seen) const {
    if (!node.IsSequence() && !node.IsMap()) return Status::Ok();
    if (!seen->insert(node.Mark().pos).second) return Status::Ok();
    if (node.IsSequence()) {
      for (const auto& item : node) {
        if (Status s = CheckNoDuplicateKeys(item, seen); !s.ok()) return s;
      }
      return Status::Ok();
    }
    std::vector<std::string_view> keys;
    for (const auto& kv : node) {
      if (kv.first.IsScalar()) keys.push_back(kv.first.Scalar());
      if (Status s = CheckNoDuplicateKeys(kv.second, seen); !s.ok()) return s;
    }
    std::sort(keys.begin(), keys.end());
    if (auto twice = std::adjacent_find(keys.begin(), keys.end()); twice != keys.end()) {
      bool first = true;  // the error points at the second
      for (const auto& kv : node) {
        if (!kv.first.IsScalar() || kv.first.Scalar() != *twice) continue;
        if (!first) return Error(kv.first, "key '" + std::string(*twice) + "' is given twice");
        first = false;
      }
    }
    return Status::Ok();
  }

  // How many YAML documents with content `yaml` holds (an empty one, as
  // after a last ---, does not count), counting to 2 at most.
  static int CountDocuments(const std::string& yaml) {
    struct Content : YAML::EventHandler {
      bool seen = false;
      void OnDocumentStart(const YAML::Mark&) override {}
      void OnDocumentEnd() override {}
      void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
      void OnAlias(const YAML::Mark&, YAML::anchor_t) override { seen = true; }
      void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    const std::string&) override {
        seen = true;
      }
      void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                           YAML::EmitterStyle::value) override {
        seen = true;
      }
      void OnSequenceEnd() override {}
      void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                      YAML::EmitterStyle::value) override {
        seen = true;
      }
      void OnMapEnd() override {}
    } content;
    std::istringstream in(yaml);
    YAML::Parser parser(in);
    int documents = 0;
    // Each document takes up input: at most one per byte, and a few more.
    for (size_t parsed = 0;
         parsed < yaml.size() + 2 && documents < 2 && parser.HandleNextDocument(content);
         ++parsed) {
      documents += content.seen ? 1 : 0;
      content.seen = false;
    }
    return documents;
  }

  // A key that names something (a backend, an endpoint, a field): a
  // scalar, not null (~, null or nothing), which would read as "null".
  Status Name(const YAML::Node& key, const std::string& what, std::string* out) const {
    if (!key.IsScalar()) {
      return Error(key, what + " must be a name, not " +
                            (key.IsNull() ? "null (~, null or nothing)" : "a list or mapping"));
    }
    *out = key.Scalar();
    return Status::Ok();
  }

  Status CheckKeys(const YAML::Node& map, const std::string& what,
                   const std::set<std::string>& allowed) const {
    if (!map.IsMap()) return Error(map, what + " must be a mapping");
    for (const auto& kv : map) {
      std::string key;
      if (Status s = Name(kv.first, "a key of " + what, &key); !s.ok()) return s;
      if (!allowed.contains(key)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        return Error(kv.first, "unknown key '" + key + "' in " + what + " (known: " + list + ")");
      }
    }
    return Status::Ok();
  }

  // Decimal digits, with a sign: "0100" is 100 (YAML 1.2's core schema),
  // not octal 64 as yaml-cpp reads it; hex, octal and other forms are refused.
  Status U32(const YAML::Node& map, const std::string& key, uint32_t* out) const {
    const YAML::Node n = map[key];
    if (!n) return Status::Ok();
    std::string_view text = n.IsScalar() ? std::string_view(n.Scalar()) : std::string_view();
    const bool negative = text.starts_with('-');
    if (negative || text.starts_with('+')) text.remove_prefix(1);
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || end != text.data() + text.size() ||
        (ec != std::errc() && ec != std::errc::result_out_of_range)) {
      return Error(n, "'" + key + "' must be a whole number, got '" + n.Scalar() + "'");
    }
    if (negative && (v != 0 || ec == std::errc::result_out_of_range)) {
      return Error(n, "'" + key + "' must be >= 0, got '" + n.Scalar() + "'");
    }
    if (ec != std::errc() || v > UINT32_MAX) {  // the field's own range says more, below that
      return Error(n, "'" + key + "' is " + n.Scalar() + ", too large (at most 4294967295)");
    }
    *out = static_cast<uint32_t>(v);
    return Status::Ok();
  }

  Status Str(const YAML::Node& map, const std::string& key, std::string* out) const {
    const YAML::Node n = map[key];
    if (!n) return Status::Ok();
    if (!n.IsScalar()) return Error(n, "'" + key + "' must be a string");
    *out = n.Scalar();
    return Status::Ok();
  }

  // A list of HTTP methods, or one method as a scalar; upper-cased.
  Status Methods(const YAML::Node& map, const std::string& key,
                 std::vector<std::string>* out) const {
    const YAML::Node n = map[key];
    if (!n) return Status::Ok();
    if (!n.IsScalar() && !n.IsSequence()) {
      return Error(n, "'" + key + "' must be a list of HTTP methods, e.g. [GET, POST]");
    }
    out->clear();
    auto add = [out](std::string m) {
      for (char& c : m) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      out->push_back(std::move(m));
    };
    if (n.IsScalar()) {
      add(n.Scalar());
      return Status::Ok();
    }
    for (const auto& item : n) {
      if (!item.IsScalar()) return Error(item, "'" + key + "' items must be method names");
      add(item.Scalar());
    }
    return Status::Ok();
  }

  Status Weights(const YAML::Node& map, const std::string& key,
                 std::map<std::string, double>* out) const {
    const YAML::Node n = map[key];
    if (!n) return Status::Ok();
    if (!n.IsMap()) return Error(n, "'" + key + "' must map backend names to numbers");
    for (const auto& kv : n) {
      std::string backend;
      if (Status s = Name(kv.first, "a backend in '" + key + "'", &backend); !s.ok()) return s;
      try {
        (*out)[backend] = kv.second.as<double>();
      } catch (const YAML::Exception&) {
        return Error(kv.second, "'" + key + "' values must be numbers");
      }
    }
    return Status::Ok();
  }

 private:
  std::string origin_;
};

// Writes a user_config collection as one line of flow-style YAML that reads
// back as the same value. yaml-cpp's `Emitter << Node` forgets how a scalar
// was written, so a quoted "1" or "true" came out plain: a number or a
// boolean to the handler. Here a scalar the file quoted (yaml-cpp tags it
// "!", a plain one "?") is written double-quoted, with escapes where it
// needs them; a plain one as yaml-cpp writes it. A node reached more than
// once (through an alias) is written once with an anchor and then as an
// alias, as yaml-cpp does, so aliases cannot make the text longer than the
// file.
class FlowWriter {
 public:
  // Empty when yaml-cpp cannot write `root`; `error` says why.
  static std::string Write(const YAML::Node& root, std::string* error) {
    FlowWriter w;
    w.Count(root);
    YAML::Emitter out;
    w.Emit(root, &out);
    if (!out.good()) {
      *error = "yaml-cpp: " + out.GetLastError();
      return "";
    }
    return out.c_str();
  }

 private:
  struct Seen {
    YAML::Node node;
    int refs = 0;
    int anchor = 0;  // 0: not written yet
  };

  // yaml-cpp tells nodes apart only by Node::is, so they are filed by where
  // they start in the text and told apart with it.
  Seen& Find(const YAML::Node& node) {
    std::vector<Seen>& at = seen_[node.Mark().pos];
    for (Seen& s : at) {
      if (s.node.is(node)) return s;
    }
    return at.emplace_back(Seen{node});
  }

  void Count(const YAML::Node& node) {
    if (++Find(node).refs > 1) return;
    if (node.IsMap()) {
      for (const auto& kv : node) {
        Count(kv.first);
        Count(kv.second);
      }
    } else if (node.IsSequence()) {
      for (const auto& item : node) Count(item);
    }
  }

  void Emit(const YAML::Node& node, YAML::Emitter* out) {
    if (Seen& s = Find(node); s.refs > 1) {
      if (s.anchor != 0) {
        *out << YAML::Alias(std::to_string(s.anchor));
        return;
      }
      s.anchor = ++anchors_;
      *out << YAML::Anchor(std::to_string(s.anchor));
    }
    const std::string& tag = node.Tag();
    if (!tag.empty() && tag != "?" && tag != "!") *out << YAML::VerbatimTag(tag);
    if (node.IsNull()) {
      *out << YAML::Null;
    } else if (node.IsScalar()) {
      if (tag == "!") *out << YAML::DoubleQuoted;
      *out << node.Scalar();
    } else if (node.IsMap()) {
      *out << YAML::Flow << YAML::BeginMap;
      for (const auto& kv : node) {
        Emit(kv.first, out);
        Emit(kv.second, out);
      }
      *out << YAML::EndMap;
    } else if (node.IsSequence()) {
      *out << YAML::Flow << YAML::BeginSeq;
      for (const auto& item : node) Emit(item, out);
      *out << YAML::EndSeq;
    }
  }

  std::map<int, std::vector<Seen>> seen_;
  int anchors_ = 0;
};

Status ReadBackend(const Reader& r, const std::string& name, const YAML::Node& n,
                   BackendConfig* b) {
  static const std::set<std::string> kKeys = {"handler",
                                              "num_replicas",
                                              "max_batch_size",
                                              "batch_wait_timeout_ms",
                                              "max_concurrent_queries",
                                              "max_queued_requests",
                                              "retry_on_replica_failure",
                                              "user_config"};
  if (Status s = r.CheckKeys(n, "backend '" + name + "'", kKeys); !s.ok()) return s;
  b->name = name;
  b->handler = name;  // a backend named after a built-in handler needs no `handler:`
  Status s = r.Str(n, "handler", &b->handler);
  if (s.ok()) s = r.U32(n, "num_replicas", &b->num_replicas);
  if (s.ok()) s = r.U32(n, "max_batch_size", &b->max_batch_size);
  if (s.ok()) s = r.U32(n, "batch_wait_timeout_ms", &b->batch_wait_timeout_ms);
  if (s.ok()) s = r.U32(n, "max_concurrent_queries", &b->max_concurrent_queries);
  if (s.ok()) s = r.U32(n, "max_queued_requests", &b->max_queued_requests);
  if (s.ok()) s = r.U32(n, "retry_on_replica_failure", &b->retry_on_replica_failure);
  if (!s.ok()) return s;
  if (const YAML::Node uc = n["user_config"]) {
    // Any YAML value; handed to the handler as text (a scalar as it is,
    // nothing as empty).
    if (uc.IsNull()) {
      b->user_config.clear();
    } else if (uc.IsScalar()) {
      b->user_config = uc.Scalar();
    } else {
      std::string error;
      b->user_config = FlowWriter::Write(uc, &error);
      if (!error.empty()) return r.Error(uc, "user_config cannot be written as YAML: " + error);
    }
  }
  return Status::Ok();
}

Status ReadEndpoint(const Reader& r, const std::string& name, const YAML::Node& n,
                    EndpointConfig* e) {
  if (Status s = r.CheckKeys(n, "endpoint '" + name + "'",
                             {"backend", "traffic", "shadow", "timeout_ms", "route", "methods"});
      !s.ok()) {
    return s;
  }
  e->name = name;
  if (n["backend"] && n["traffic"]) {
    return r.Error(n, "endpoint '" + name + "' has both 'backend' and 'traffic'; give one");
  }
  std::string backend;
  Status s = r.Str(n, "backend", &backend);
  if (s.ok() && !backend.empty()) e->traffic[backend] = 1.0;
  if (s.ok()) s = r.Weights(n, "traffic", &e->traffic);
  if (s.ok()) s = r.Weights(n, "shadow", &e->shadow);
  if (s.ok()) s = r.U32(n, "timeout_ms", &e->timeout_ms);
  if (s.ok()) s = r.Str(n, "route", &e->route);
  if (s.ok()) s = r.Methods(n, "methods", &e->methods);
  if (s.ok() && e->traffic.empty()) {
    return r.Error(n, "endpoint '" + name + "' needs 'backend' or 'traffic'");
  }
  return s;
}

}  // namespace

StatusOr<ConfigState> ParseDeployment(const std::string& yaml, const std::string& origin) {
  Reader r(origin);
  ConfigState state;
  try {
    YAML::Node root = YAML::Load(yaml);
    if (!root || root.IsNull()) return BadRequest(origin + ": the file is empty");
    if (Reader::CountDocuments(yaml) > 1) {
      return BadRequest(origin +
                        ": the file has more than one YAML document (separated by ---); "
                        "give one");
    }
    if (Status s = r.CheckNoDuplicateKeys(root); !s.ok()) return s;
    if (Status s = r.CheckKeys(root, "the deployment", {"backends", "endpoints"}); !s.ok()) {
      return s;
    }
    if (const YAML::Node backends = root["backends"]) {
      if (!backends.IsMap()) return r.Error(backends, "'backends' must be a mapping");
      for (const auto& kv : backends) {
        BackendConfig b;
        std::string name;
        Status s = r.Name(kv.first, "a backend", &name);
        if (s.ok()) s = ReadBackend(r, name, kv.second, &b);
        if (!s.ok()) return s;
        if (!state.backends.emplace(name, std::move(b)).second) {
          return r.Error(kv.first, "backend '" + name + "' is given twice");
        }
      }
    }
    if (const YAML::Node endpoints = root["endpoints"]) {
      if (!endpoints.IsMap()) return r.Error(endpoints, "'endpoints' must be a mapping");
      for (const auto& kv : endpoints) {
        EndpointConfig e;
        std::string name;
        Status s = r.Name(kv.first, "an endpoint", &name);
        if (s.ok()) s = ReadEndpoint(r, name, kv.second, &e);
        if (!s.ok()) return s;
        if (!state.endpoints.emplace(name, std::move(e)).second) {
          return r.Error(kv.first, "endpoint '" + name + "' is given twice");
        }
      }
    }
  } catch (const YAML::Exception& e) {
    return BadRequest(origin + ": not valid YAML: " + e.what());
  }
  if (Status s = schemas::Validate(state); !s.ok()) {
    return BadRequest(origin + ": " + s.message());
  }
  return state;
}

StatusOr<ConfigState> LoadDeploymentFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return BadRequest("deployment file '" + path + "' is a directory");
  }
  std::ifstream in(path);
  if (!in) return NotFound("cannot read deployment file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseDeployment(ss.str(), path);
}

}  // namespace zserve::controller
