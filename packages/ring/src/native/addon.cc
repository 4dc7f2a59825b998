// Native half of @tcmu/ring: the syscalls Node cannot make itself (this file),
// plain shared mappings and fd polling for the simulator (mapping.cc), and the
// consumer side of a TCMU ring with its native READ/WRITE lane (ring_engine.cc).

#include <cerrno>
#include <string>

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#include "common.h"

namespace tcmu {

int DrainEvents(int fd) {
  int count = 0;
  for (;;) {
    uint32_t value;
    ssize_t n = read(fd, &value, sizeof value);
    if (n == static_cast<ssize_t>(sizeof value)) {
      ++count;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return count;
    if (n == 0) return kEndOfFile;
    if (n < 0) return -errno;
    return -EIO;  // short read: not a UIO/socketpair event
  }
}

// UIO: a 4-byte write calls the driver's irqcontrol (tcmu_irqcontrol), which
// reaps completions. EAGAIN (a socketpair peer's full queue) means an earlier
// kick is still pending, which is as good as this one.
int KickFd(int fd) {
  uint32_t value = 1;
  for (;;) {
    ssize_t n = write(fd, &value, sizeof value);
    if (n == static_cast<ssize_t>(sizeof value)) return 1;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return n < 0 ? -errno : -EIO;
  }
}

namespace {

Napi::Value OpenUio(const Napi::CallbackInfo& info) {
  std::string path = StringArg(info, 0, "path");
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw ErrnoError(info.Env(), errno, "open", path);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "name");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) throw ErrnoError(info.Env(), errno, "memfd_create");
  return Napi::Number::New(info.Env(), fd);
}

// A non-blocking, message-preserving pair that stands in for a UIO fd:
// each 4-byte write on one end is one "interrupt" on the other.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
    throw ErrnoError(info.Env(), errno, "socketpair");
  }
  Napi::Array pair = Napi::Array::New(info.Env(), 2);
  pair.Set(uint32_t{0}, Napi::Number::New(info.Env(), fds[0]));
  pair.Set(uint32_t{1}, Napi::Number::New(info.Env(), fds[1]));
  return pair;
}

Napi::Value Kick(const Napi::CallbackInfo& info) {
  int result = KickFd(IntArg(info, 0, "fd"));
  if (result < 0) throw ErrnoError(info.Env(), -result, "write");
  return Napi::Boolean::New(info.Env(), result == 1);
}

Napi::Value DrainEventsJs(const Napi::CallbackInfo& info) {
  int result = DrainEvents(IntArg(info, 0, "fd"));
  if (result == kEndOfFile) return Napi::Number::New(info.Env(), -1);
  if (result < 0) throw ErrnoError(info.Env(), -result, "read");
  return Napi::Number::New(info.Env(), result);
}

// close(2) for fds this package created (memfd, socketpair): fs.closeSync warns
// when a worker thread closes an fd Node's fs did not open.
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  if (close(IntArg(info, 0, "fd")) < 0 && errno != EINTR) throw ErrnoError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

Napi::Value Fallocate(const Napi::CallbackInfo& info, int mode, const char* what) {
  int fd = IntArg(info, 0, "fd");
  uint64_t offset = SizeArg(info, 1, "offset");
  uint64_t length = SizeArg(info, 2, "length");
  for (;;) {
    if (fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) break;
    if (errno == EINTR) continue;
    throw ErrnoError(info.Env(), errno, what);
  }
  return info.Env().Undefined();
}

Napi::Value PunchHole(const Napi::CallbackInfo& info) {
  return Fallocate(info, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "fallocate");
}

Napi::Value ZeroRange(const Napi::CallbackInfo& info) {
  return Fallocate(info, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, "fallocate");
}

// lockFile(fd, exclusive): an open-file-description lock on the whole file (F_OFD_SETLK):
// it conflicts with every other open of the file, this process's included, and goes
// when the last fd of the description closes, so a crash releases it.
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  int fd = IntArg(info, 0, "fd");
  struct flock lock {};
  lock.l_type = info.Length() > 1 && info[1].ToBoolean().Value() ? F_WRLCK : F_RDLCK;
  lock.l_whence = SEEK_SET;
  if (fcntl(fd, F_OFD_SETLK, &lock) < 0) throw ErrnoError(info.Env(), errno, "fcntl");
  return info.Env().Undefined();
}

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  std::string path = StringArg(info, 0, "path");
  int32_t mode = IntArg(info, 1, "mode");
  int32_t major_number = IntArg(info, 2, "major");
  int32_t minor_number = IntArg(info, 3, "minor");
  if (major_number < 0 || minor_number < 0) throw Napi::RangeError::New(info.Env(), "major/minor must be >= 0");
  dev_t dev = makedev(static_cast<unsigned>(major_number), static_cast<unsigned>(minor_number));
  if (mknod(path.c_str(), static_cast<mode_t>(mode), dev) < 0) throw ErrnoError(info.Env(), errno, "mknod", path);
  return info.Env().Undefined();
}

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("openUio", Napi::Function::New<OpenUio>(env, "openUio"));
  exports.Set("memfdCreate", Napi::Function::New<MemfdCreate>(env, "memfdCreate"));
  exports.Set("socketPair", Napi::Function::New<SocketPair>(env, "socketPair"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("kick", Napi::Function::New<Kick>(env, "kick"));
  exports.Set("drainEvents", Napi::Function::New<DrainEventsJs>(env, "drainEvents"));
  exports.Set("punchHole", Napi::Function::New<PunchHole>(env, "punchHole"));
  exports.Set("zeroRange", Napi::Function::New<ZeroRange>(env, "zeroRange"));
  exports.Set("mknod", Napi::Function::New<Mknod>(env, "mknod"));
  exports.Set("lockFile", Napi::Function::New<LockFile>(env, "lockFile"));
  exports.Set("Mapping", InitMapping(env));
  exports.Set("Poller", InitPoller(env));
  exports.Set("RingEngine", InitRingEngine(env));
  return exports;
}

}  // namespace
}  // namespace tcmu

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return tcmu::InitAddon(env, exports); }
NODE_API_MODULE(tcmu_ring, Init)
