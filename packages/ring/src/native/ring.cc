// Native half of @tcmu/ring: the few syscalls Node cannot make itself.
//
// Everything protocol-related (walking entries, completions) lives in
// TypeScript; this file only opens/maps file descriptors, polls them through
// libuv, and performs the two memory-ordered accesses the TCMU ring needs:
// an acquire load of mailbox->cmd_head and a release store of cmd_tail
// (JS Atomics cannot operate on an external, mmap-backed ArrayBuffer).

#include <napi.h>
#include <uv.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

namespace {

// Node's convention for system errors: code "ENOENT", errno -2, syscall, path.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path = "") {
  const char* code = uv_err_name(-err);
  std::string message = std::string(syscall);
  if (!path.empty()) message += " " + path;
  message += ": " + std::string(code) + " (" + std::strerror(err) + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) error.Set("path", Napi::String::New(env, path));
  return error;
}

int32_t IntArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  return info[index].As<Napi::Number>().Int32Value();
}

// Byte counts and offsets may exceed 2^31 (the default TCMU map is 1 GiB + 8 MiB).
uint64_t SizeArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (!(value >= 0) || value > 9007199254740991.0 || value != static_cast<double>(static_cast<uint64_t>(value))) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a non-negative safe integer");
  }
  return static_cast<uint64_t>(value);
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

// ---------------------------------------------------------------- plain fds

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

// UIO: a 4-byte write calls the driver's irqcontrol (tcmu_irqcontrol), which
// reaps completions. Returns false when the peer's queue is full (EAGAIN):
// an earlier kick is still pending, which is as good as this one.
Napi::Value Kick(const Napi::CallbackInfo& info) {
  int fd = IntArg(info, 0, "fd");
  uint32_t value = 1;
  for (;;) {
    ssize_t n = write(fd, &value, sizeof value);
    if (n == static_cast<ssize_t>(sizeof value)) return Napi::Boolean::New(info.Env(), true);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Napi::Boolean::New(info.Env(), false);
    if (n < 0) throw ErrnoError(info.Env(), errno, "write");
    throw Napi::Error::New(info.Env(), "write: short write on kick");
  }
}

// Reads 4-byte events until EAGAIN. Returns the count, or -errno / INT32_MIN (EOF).
constexpr int kEndOfFile = INT32_MIN;
int DrainEventsRaw(int fd) {
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

Napi::Value DrainEvents(const Napi::CallbackInfo& info) {
  int result = DrainEventsRaw(IntArg(info, 0, "fd"));
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

// ------------------------------------------------------------------ Mapping

// Shared by the Mapping object and the ArrayBuffer's finalizer: whichever
// goes first unmaps, exactly once.
struct MapState {
  void* address;
  size_t length;
  std::atomic<bool> unmapped{false};
  void Unmap() {
    if (!unmapped.exchange(true)) munmap(address, length);
  }
};

class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Mapping",
                       {
                           InstanceAccessor<&Mapping::Buffer>("buffer"),
                           InstanceAccessor<&Mapping::Length>("length"),
                           InstanceMethod<&Mapping::LoadAcquire>("loadAcquire"),
                           InstanceMethod<&Mapping::StoreRelease>("storeRelease"),
                           InstanceMethod<&Mapping::Unmap>("unmap"),
                       });
  }

  explicit Mapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapping>(info) {
    Napi::Env env = info.Env();
    int fd = IntArg(info, 0, "fd");
    uint64_t length = SizeArg(info, 1, "length");
    if (length == 0 || length % 4 != 0) throw Napi::RangeError::New(env, "length must be a positive multiple of 4");
    void* address = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (address == MAP_FAILED) throw ErrnoError(env, errno, "mmap");
    state_ = std::make_shared<MapState>();
    state_->address = address;
    state_->length = length;
    auto* hint = new std::shared_ptr<MapState>(state_);
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(
        env, address, length,
        [](Napi::Env, void*, std::shared_ptr<MapState>* state) {
          (*state)->Unmap();
          delete state;
        },
        hint);
    buffer_ = Napi::Persistent(buffer);
  }

 private:
  uint32_t* Word(const Napi::CallbackInfo& info) {
    if (!state_ || state_->unmapped.load()) throw Napi::Error::New(info.Env(), "mapping is closed");
    uint64_t offset = SizeArg(info, 0, "offset");
    if (offset % 4 != 0 || offset + 4 > state_->length) {
      throw Napi::RangeError::New(info.Env(), "offset must be 4-aligned and inside the mapping");
    }
    return reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(state_->address) + offset);
  }

  Napi::Value Buffer(const Napi::CallbackInfo& info) {
    if (buffer_.IsEmpty()) return info.Env().Undefined();
    return buffer_.Value();
  }

  Napi::Value Length(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), state_ ? static_cast<double>(state_->length) : 0);
  }

  // mailbox->cmd_head is published by the kernel with smp_store_release.
  Napi::Value LoadAcquire(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), __atomic_load_n(Word(info), __ATOMIC_ACQUIRE));
  }

  // Every response byte written before this store is visible to the reaper.
  Napi::Value StoreRelease(const Napi::CallbackInfo& info) {
    uint32_t* word = Word(info);
    if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "value must be a number");
    __atomic_store_n(word, info[1].As<Napi::Number>().Uint32Value(), __ATOMIC_RELEASE);
    return info.Env().Undefined();
  }

  // Detach first so every JS view reads as length 0 instead of faulting.
  Napi::Value Unmap(const Napi::CallbackInfo& info) {
    if (!buffer_.IsEmpty()) {
      Napi::ArrayBuffer buffer = buffer_.Value();
      if (!buffer.IsDetached()) buffer.Detach();  // `buffer` stays readable, byteLength 0
    }
    if (state_) state_->Unmap();
    return info.Env().Undefined();
  }

  std::shared_ptr<MapState> state_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

// ------------------------------------------------------------------- Poller

// uv_poll on an fd; on readable, drains the 4-byte events and calls back
// callback(error | null, eventCount) on the loop thread. No threads.
class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {
                           InstanceMethod<&Poller::Close>("close"),
                           InstanceMethod<&Poller::RefHandle>("ref"),
                           InstanceMethod<&Poller::UnrefHandle>("unref"),
                       });
  }

  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    fd_ = IntArg(info, 0, "fd");
    if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "callback must be a function");
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no uv loop");
    handle_ = new uv_poll_t;
    int rc = uv_poll_init(loop, handle_, fd_);
    if (rc < 0) {
      delete handle_;
      handle_ = nullptr;
      throw ErrnoError(env, -rc, "uv_poll_init");
    }
    handle_->data = this;
    rc = uv_poll_start(handle_, UV_READABLE, &Poller::OnPoll);
    if (rc < 0) {
      CloseHandle();
      throw ErrnoError(env, -rc, "uv_poll_start");
    }
    Ref();  // keep the JS object alive while the handle can call back
  }

  ~Poller() override { CloseHandle(); }

 private:
  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    auto* self = static_cast<Poller*>(handle->data);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Value error = env.Null();
    int count = 0;
    if (status < 0) {
      error = ErrnoError(env, -status, "poll").Value();
    } else {
      int result = DrainEventsRaw(self->fd_);
      if (result == kEndOfFile) {
        Napi::Error eof = Napi::Error::New(env, "read: peer closed the event channel");
        eof.Set("code", Napi::String::New(env, "EOF"));
        eof.Set("syscall", Napi::String::New(env, "read"));
        error = eof.Value();
      } else if (result < 0) {
        error = ErrnoError(env, -result, "read").Value();
      } else {
        count = result;
      }
    }
    // A broken fd would report readable forever: stop before calling out.
    if (!error.IsNull()) self->Stop();
    try {
      self->callback_.MakeCallback(self->Value(), {error, Napi::Number::New(env, count)});
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  void Stop() {
    if (handle_) uv_poll_stop(handle_);
  }

  void CloseHandle() {
    if (!handle_) return;
    uv_poll_stop(handle_);
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (handle_) {
      CloseHandle();
      Unref();
    }
    return info.Env().Undefined();
  }

  Napi::Value RefHandle(const Napi::CallbackInfo& info) {
    if (handle_) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  Napi::Value UnrefHandle(const Napi::CallbackInfo& info) {
    if (handle_) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  int fd_ = -1;
  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openUio", Napi::Function::New<OpenUio>(env, "openUio"));
  exports.Set("memfdCreate", Napi::Function::New<MemfdCreate>(env, "memfdCreate"));
  exports.Set("socketPair", Napi::Function::New<SocketPair>(env, "socketPair"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("kick", Napi::Function::New<Kick>(env, "kick"));
  exports.Set("drainEvents", Napi::Function::New<DrainEvents>(env, "drainEvents"));
  exports.Set("punchHole", Napi::Function::New<PunchHole>(env, "punchHole"));
  exports.Set("zeroRange", Napi::Function::New<ZeroRange>(env, "zeroRange"));
  exports.Set("mknod", Napi::Function::New<Mknod>(env, "mknod"));
  exports.Set("Mapping", Mapping::Init(env));
  exports.Set("Poller", Poller::Init(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(tcmu_ring, Init)
