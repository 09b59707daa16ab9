// Test helpers: raw MessagePack built with a packer, for headers the
// encoders never make (schemas tests only).
#ifndef ZSERVE_TESTS_SCHEMAS_RAW_MSGPACK_H_
#define ZSERVE_TESTS_SCHEMAS_RAW_MSGPACK_H_

#include <cstdint>
#include <functional>
#include <msgpack.hpp>
#include <string>
#include <string_view>

namespace zserve::testing {

using Packer = msgpack::packer<msgpack::sbuffer>;

inline std::string Raw(const std::function<void(Packer&)>& fill) {
  msgpack::sbuffer buf;
  Packer p(buf);
  fill(p);
  return std::string(buf.data(), buf.size());
}

inline void Str(Packer& p, std::string_view s) {
  p.pack_str(static_cast<uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

}  // namespace zserve::testing

#endif  // ZSERVE_TESTS_SCHEMAS_RAW_MSGPACK_H_
