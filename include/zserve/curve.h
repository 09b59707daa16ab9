// CurveZMQ keys (docs/security.md). A process with a key pair speaks CURVE on
// every socket: encrypted, and its peers authenticated against the broker's
// and controller's allow-lists. Without one it speaks plain ZeroMQ (the
// default, meant for loopback).
//
// Keys are Z85 text, 40 characters each, as `zserve keygen` writes them.
#ifndef ZSERVE_CURVE_H_
#define ZSERVE_CURVE_H_

#include <string>

#include "zserve/status.h"

namespace zserve {

struct KeyPair {
  std::string public_key;
  std::string secret_key;
  bool empty() const { return secret_key.empty(); }
};

// A new random key pair.
StatusOr<KeyPair> GenerateKeyPair();

// A key pair from `source`: the path of a key file written by `zserve keygen`
// (`public-key = "..."` and `secret-key = "..."` lines), or the 40-character
// secret key itself. The public key is derived from the secret one and, when
// the file has one, must match it.
StatusOr<KeyPair> LoadKeyPair(const std::string& source);

// A public key from `source`: the 40-character key itself, or the path of a
// file with a `public-key = "..."` line (a .pub file or a key file).
StatusOr<std::string> LoadPublicKey(const std::string& source);

// The text of a key file: both keys, or (secret empty) the public one only.
std::string KeyFileText(const KeyPair& keys, const std::string& comment);

}  // namespace zserve

#endif  // ZSERVE_CURVE_H_
