// A plain shared mapping with the two memory-ordered word accesses a TCMU
// ring needs (JS Atomics cannot operate on an mmap-backed external
// ArrayBuffer), and a uv_poll on an fd. The kernel simulator is built on them.

#include "common.h"

namespace tcmu {
namespace {

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
    Napi::ArrayBuffer buffer;
    state_ = MapShared(info.Env(), IntArg(info, 0, "fd"), SizeArg(info, 1, "length"), &buffer);
    buffer_ = Napi::Persistent(buffer);
  }

 private:
  uint32_t* Word(const Napi::CallbackInfo& info) {
    if (state_->unmapped.load()) throw Napi::Error::New(info.Env(), "mapping is closed");
    uint64_t offset = SizeArg(info, 0, "offset");
    if (offset % 4 != 0 || offset + 4 > state_->length) {
      throw Napi::RangeError::New(info.Env(), "offset must be 4-aligned and inside the mapping");
    }
    return reinterpret_cast<uint32_t*>(state_->address + offset);
  }

  Napi::Value Buffer(const Napi::CallbackInfo& info) { return buffer_.Value(); }

  Napi::Value Length(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(state_->length));
  }

  Napi::Value LoadAcquire(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), __atomic_load_n(Word(info), __ATOMIC_ACQUIRE));
  }

  Napi::Value StoreRelease(const Napi::CallbackInfo& info) {
    uint32_t* word = Word(info);
    if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "value must be a number");
    __atomic_store_n(word, info[1].As<Napi::Number>().Uint32Value(), __ATOMIC_RELEASE);
    return info.Env().Undefined();
  }

  Napi::Value Unmap(const Napi::CallbackInfo& info) {
    DetachAndUnmap(buffer_, state_);
    return info.Env().Undefined();
  }

  std::shared_ptr<MapState> state_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
};

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
      int result = DrainEvents(self->fd_);
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
    if (!error.IsNull() && self->handle_) uv_poll_stop(self->handle_);
    if (self->callback_.IsEmpty()) return;
    try {
      self->callback_.MakeCallback(self->Value(), {error, Napi::Number::New(env, count)});
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
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
    // The callback's closure refers back to the poller's owner: a strong reference kept
    // here would hold both for the life of the process.
    callback_.Reset();
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

}  // namespace

Napi::Function InitMapping(Napi::Env env) { return Mapping::Init(env); }
Napi::Function InitPoller(Napi::Env env) { return Poller::Init(env); }

}  // namespace tcmu
