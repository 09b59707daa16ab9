// common/cached_pid.cc: getpid() from a cache, for libzmq's fork checks.
#include <dlfcn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

namespace {

pid_t KernelPid() { return static_cast<pid_t>(syscall(SYS_getpid)); }

}  // namespace

TEST_CASE("getpid answers this process's pid and is the one shared libraries call", "[common]") {
  CHECK(getpid() == KernelPid());
  // What libzmq's call resolves to: the executable's cached getpid, not libc's.
  void* resolved = dlsym(RTLD_DEFAULT, "getpid");
  REQUIRE(resolved != nullptr);
  Dl_info info{};
  REQUIRE(dladdr(resolved, &info) != 0);
  REQUIRE(info.dli_fname != nullptr);
  CHECK(std::string(info.dli_fname).find("libc.so") == std::string::npos);
  CHECK(resolved == reinterpret_cast<void*>(&getpid));
}

TEST_CASE("A forked child's getpid answers the child's pid, not the parent's", "[common]") {
  const pid_t parent = getpid();
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    pid_t seen[2] = {getpid(), KernelPid()};
    ssize_t n = write(fds[1], seen, sizeof seen);
    _exit(n == sizeof seen ? 0 : 1);
  }
  close(fds[1]);
  pid_t seen[2] = {0, 0};
  ssize_t n = read(fds[0], seen, sizeof seen);
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(n == static_cast<ssize_t>(sizeof seen));
  CHECK(WIFEXITED(status));
  CHECK(seen[0] == child);
  CHECK(seen[1] == child);
  CHECK(getpid() == parent);
  CHECK(getpid() == KernelPid());
}
