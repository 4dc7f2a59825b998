// Shared helpers of the @tcmu/ring addon: argument checks, Node-style system
// errors, and the shared mapping state behind every external ArrayBuffer.
#pragma once

#include <napi.h>
#include <uv.h>

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

namespace tcmu {

// Node's convention for system errors: code "ENOENT", errno -2, syscall, path.
inline Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const std::string& path = "") {
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

inline int32_t IntArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  return info[index].As<Napi::Number>().Int32Value();
}

// Byte counts and offsets may exceed 2^31 (the default TCMU map is 1 GiB + 8 MiB).
inline uint64_t SizeArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (!(value >= 0) || value > 9007199254740991.0 || value != static_cast<double>(static_cast<uint64_t>(value))) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a non-negative safe integer");
  }
  return static_cast<uint64_t>(value);
}

inline std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

// One MAP_SHARED mapping, shared by its owner and the ArrayBuffer's finalizer:
// whichever goes first unmaps, exactly once.
struct MapState {
  uint8_t* address = nullptr;
  size_t length = 0;
  std::atomic<bool> unmapped{false};
  void Unmap() {
    if (!unmapped.exchange(true)) munmap(address, length);
  }
};

// mmap(fd) read/write shared, wrapped in an external ArrayBuffer. Throws ErrnoError.
inline std::shared_ptr<MapState> MapShared(Napi::Env env, int fd, uint64_t length, Napi::ArrayBuffer* buffer) {
  if (length == 0 || length % 4 != 0) throw Napi::RangeError::New(env, "length must be a positive multiple of 4");
  void* address = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) throw ErrnoError(env, errno, "mmap");
  auto state = std::make_shared<MapState>();
  state->address = static_cast<uint8_t*>(address);
  state->length = length;
  auto* hint = new std::shared_ptr<MapState>(state);
  *buffer = Napi::ArrayBuffer::New(
      env, address, length,
      [](Napi::Env, void*, std::shared_ptr<MapState>* held) {
        (*held)->Unmap();
        delete held;
      },
      hint);
  return state;
}

// Detaches the buffer first, so every JS view reads as length 0 instead of faulting.
inline void DetachAndUnmap(Napi::Reference<Napi::ArrayBuffer>& buffer, const std::shared_ptr<MapState>& state) {
  if (!buffer.IsEmpty() && !buffer.Value().IsDetached()) buffer.Value().Detach();
  if (state) state->Unmap();
}

// Reads 4-byte events until EAGAIN. Returns the count, or -errno / kEndOfFile.
constexpr int kEndOfFile = INT32_MIN;
int DrainEvents(int fd);
// One 4-byte write: true when written, false on EAGAIN (a kick is already pending). -errno on failure.
int KickFd(int fd);

Napi::Function InitMapping(Napi::Env env);
Napi::Function InitPoller(Napi::Env env);
Napi::Function InitRingEngine(Napi::Env env);

}  // namespace tcmu
