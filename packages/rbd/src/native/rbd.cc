// Native half of @tcmu/rbd: one RBD image opened through librados/librbd's C API, and its
// asynchronous I/O. librbd completes each rbd_aio_* call on one of its own threads; the
// completion is queued here and the queue handed to JavaScript in batches through one
// thread-safe function: one wakeup of the event loop, one JS call and one Float64Array of
// (id, return value, mismatch offset) triples for every completion that arrived meanwhile.
// Opening, stat and closing wait on the network: they run on the libuv threadpool.

#include <napi.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <sys/uio.h>
#include <uv.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace {

// Node's convention for system errors: code "ETIMEDOUT", errno -110, syscall (here the
// librados/librbd function that failed).
Napi::Error RbdError(Napi::Env env, int ret, const char* call) {
  const char* code = uv_err_name(ret);
  std::string message = std::string(call) + ": " + code + " (" + std::strerror(-ret) + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, ret));
  error.Set("syscall", Napi::String::New(env, call));
  return error;
}

uint64_t Offset(const Napi::Value& value, const char* name) {
  double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1;
  if (!(number >= 0) || number > 9007199254740991.0 || number != static_cast<double>(static_cast<uint64_t>(number))) {
    throw Napi::RangeError::New(value.Env(), std::string(name) + " must be a non-negative safe integer");
  }
  return static_cast<uint64_t>(number);
}

std::string String(const Napi::Object& options, const char* key) {
  Napi::Value value = options.Get(key);
  return value.IsString() ? value.As<Napi::String>().Utf8Value() : std::string();
}

iovec Span(const Napi::Value& value) {
  if (!value.IsTypedArray()) throw Napi::TypeError::New(value.Env(), "buffers must be Uint8Arrays");
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  auto* base = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  return iovec{base, array.ByteLength()};
}

// [key, value] pairs from a JS array of two-element arrays.
std::vector<std::pair<std::string, std::string>> Pairs(const Napi::Value& value) {
  std::vector<std::pair<std::string, std::string>> pairs;
  if (!value.IsArray()) return pairs;
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Array pair = array.Get(i).As<Napi::Array>();
    pairs.emplace_back(pair.Get(uint32_t{0}).ToString().Utf8Value(), pair.Get(uint32_t{1}).ToString().Utf8Value());
  }
  return pairs;
}

// Blocking librados/librbd calls on the threadpool. `body` returns 0 or a negative errno and
// names the call that failed; `done(env, ok)` runs on the JS thread either way and gives the
// callback's value on success.
class Task : public Napi::AsyncWorker {
 public:
  using Body = std::function<int(const char** call)>;
  using Done = std::function<Napi::Value(Napi::Env, bool ok)>;
  Task(const Napi::Object& owner, const Napi::Function& callback, Body body, Done done)
      : AsyncWorker(owner, callback, "tcmu-rbd"), body_(std::move(body)), done_(std::move(done)) {}
  void Execute() override { ret_ = body_(&call_); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Value value = done_(env, ret_ >= 0);
    if (ret_ < 0) {
      Callback().Call({RbdError(env, ret_, call_).Value()});
    } else {
      Callback().Call({env.Null(), value});
    }
  }

 private:
  Body body_;
  Done done_;
  int ret_ = 0;
  const char* call_ = "";
};

// The handles of one open image (owned by the Image, or by an open Task until it succeeds).
struct Handles {
  rados_t cluster = nullptr;
  rados_ioctx_t io = nullptr;
  rbd_image_t image = nullptr;
  uint64_t watch = 0;
  bool watching = false;
  void Close() {
    if (watching) rbd_update_unwatch(image, watch);
    if (image) rbd_close(image);
    if (io) rados_ioctx_destroy(io);
    if (cluster) rados_shutdown(cluster);
    *this = Handles();
  }
};

class Image;

// One rbd_aio_* call in flight: what it completes with, and the JS buffers it must keep alive.
struct Op {
  Image* owner;
  double id;
  rbd_completion_t completion = nullptr;
  int64_t ret = 0;
  uint64_t mismatch = 0;
  Napi::Reference<Napi::Value> keep;
  std::vector<iovec> iov;
};

void CallJs(Napi::Env env, Napi::Function callback, Image* image, void*);
using Wakeup = Napi::TypedThreadSafeFunction<Image, void, CallJs>;

class Image : public Napi::ObjectWrap<Image> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Image",
                       {InstanceMethod<&Image::Open>("open"), InstanceMethod<&Image::Stat>("stat"),
                        InstanceMethod<&Image::Close>("close"), InstanceMethod<&Image::Read>("read"),
                        InstanceMethod<&Image::Readv>("readv"), InstanceMethod<&Image::Write>("write"),
                        InstanceMethod<&Image::Writev>("writev"), InstanceMethod<&Image::Discard>("discard"),
                        InstanceMethod<&Image::WriteZeroes>("writeZeroes"),
                        InstanceMethod<&Image::WriteSame>("writeSame"),
                        InstanceMethod<&Image::CompareAndWrite>("compareAndWrite"),
                        InstanceMethod<&Image::Flush>("flush"),
                        InstanceMethod<&Image::Allocation>("allocation")});
  }

  // new Image(onComplete(results: Float64Array, updated: boolean))
  explicit Image(const Napi::CallbackInfo& info) : ObjectWrap(info) {
    if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "onComplete must be a function");
    wakeup_ = Wakeup::New(info.Env(), info[0].As<Napi::Function>(), "tcmu-rbd-completions", 0, 1, this);
    wakeup_.Unref(info.Env());  // an idle image does not keep the process alive
    env_ = info.Env();
    napi_add_env_cleanup_hook(env_, &Image::TearDown, this);
  }

  // Closing waits for every call in flight (librbd completes them first), so no librbd thread
  // touches the wakeup after it: before Node tears it down (hooks run last-added first), or here.
  ~Image() override {
    if (torn_down_) return;
    napi_remove_env_cleanup_hook(env_, &Image::TearDown, this);
    handles_.Close();
    wakeup_.Release();
  }

  static void TearDown(void* arg) {
    auto* self = static_cast<Image*>(arg);
    self->torn_down_ = true;
    self->handles_.Close();
  }

  // Runs on a librbd thread (completions) or a watcher thread (header updates).
  void Deliver(Op* op) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (op) done_.push_back(op);
      else updated_ = true;
      wake = !wake_pending_;
      wake_pending_ = true;
    }
    if (wake) wakeup_.NonBlockingCall();
  }

  // On the JS thread: release the batch, then one call with its results.
  void Drain(Napi::Env env, Napi::Function callback) {
    std::vector<Op*> batch;
    bool updated;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      batch.swap(done_);
      updated = updated_;
      updated_ = wake_pending_ = false;
    }
    Napi::Float64Array results = Napi::Float64Array::New(env, batch.size() * 3);
    for (size_t i = 0; i < batch.size(); i++) {
      Op* op = batch[i];
      results[i * 3] = op->id;
      results[i * 3 + 1] = static_cast<double>(op->ret);
      results[i * 3 + 2] = static_cast<double>(op->mismatch);
      rbd_aio_release(op->completion);
      delete op;
    }
    in_flight_ -= batch.size();
    if (in_flight_ == 0 && !batch.empty()) {
      wakeup_.Unref(env);
      Unref();
    }
    callback.Call({results, Napi::Boolean::New(env, updated)});
  }

 private:
  static void Completed(rbd_completion_t completion, void* arg) {
    Op* op = static_cast<Op*>(arg);
    op->ret = rbd_aio_get_return_value(completion);
    op->owner->Deliver(op);
  }

  static void Updated(void* arg) { static_cast<Image*>(arg)->Deliver(nullptr); }

  rbd_image_t Opened(Napi::Env env) {
    if (!handles_.image || closing_) throw RbdError(env, -ESHUTDOWN, "rbd_image (closed)");
    return handles_.image;
  }

  // Starts one aio call: `submit` gets the image and the completion; `keep` stays referenced
  // until librbd completes it. A refused submission throws its errno at once.
  Napi::Value Submit(const Napi::CallbackInfo& info, const Napi::Value& keep, Op* op, const char* call,
                     const std::function<int(rbd_image_t, Op*)>& submit) {
    std::unique_ptr<Op> owned(op);
    rbd_image_t image = Opened(info.Env());
    op->owner = this;
    op->id = info[0].As<Napi::Number>().DoubleValue();
    int ret = rbd_aio_create_completion(op, &Image::Completed, &op->completion);
    if (ret < 0) throw RbdError(info.Env(), ret, "rbd_aio_create_completion");
    if (!keep.IsEmpty() && !keep.IsUndefined()) op->keep = Napi::Persistent(keep);
    ret = submit(image, op);
    if (ret < 0) {
      rbd_aio_release(op->completion);
      throw RbdError(info.Env(), ret, call);
    }
    owned.release();
    if (in_flight_++ == 0) {
      wakeup_.Ref(info.Env());
      Ref();  // the JS object (and so this) outlives the calls in flight
    }
    return info.Env().Undefined();
  }

  // open({ conf, clientId, keyring, pool, namespace, image, snapshot, readOnly, exclusive,
  //        settings: [k, v][], fallbacks: [k, v][] }, callback(error, { size, objectSize }))
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Object o = info[0].As<Napi::Object>();
    if (handles_.image || opening_) throw Napi::Error::New(info.Env(), "the image is already open");
    struct Params {
      std::string conf, id, keyring, pool, ns, image, snapshot;
      bool readOnly, exclusive;
      std::vector<std::pair<std::string, std::string>> settings, fallbacks;
      Handles handles;
      rbd_image_info_t stat{};
    };
    auto p = std::make_shared<Params>();
    p->conf = String(o, "conf");
    p->id = String(o, "clientId");
    p->keyring = String(o, "keyring");
    p->pool = String(o, "pool");
    p->ns = String(o, "namespace");
    p->image = String(o, "image");
    p->snapshot = String(o, "snapshot");
    p->readOnly = o.Get("readOnly").ToBoolean() || !p->snapshot.empty();
    p->exclusive = o.Get("exclusive").ToBoolean();
    p->settings = Pairs(o.Get("settings"));
    p->fallbacks = Pairs(o.Get("fallbacks"));
    opening_ = true;
    auto body = [p, this](const char** call) {
      Handles& h = p->handles;
      auto fail = [&](int ret, const char* name) {
        *call = name;
        h.Close();
        return ret;
      };
      int ret = rados_create(&h.cluster, p->id.empty() ? nullptr : p->id.c_str());
      if (ret < 0) return fail(ret, "rados_create");
      ret = rados_conf_read_file(h.cluster, p->conf.empty() ? nullptr : p->conf.c_str());
      if (ret < 0 && !p->conf.empty()) return fail(ret, "rados_conf_read_file");
      if (!p->keyring.empty() && (ret = rados_conf_set(h.cluster, "keyring", p->keyring.c_str())) < 0)
        return fail(ret, "rados_conf_set");
      for (auto& [key, value] : p->fallbacks) {  // only where the configuration left the default 0
        char current[64] = "";
        if (rados_conf_get(h.cluster, key.c_str(), current, sizeof current) == 0 && std::strtod(current, nullptr) != 0)
          continue;
        if ((ret = rados_conf_set(h.cluster, key.c_str(), value.c_str())) < 0) return fail(ret, "rados_conf_set");
      }
      for (auto& [key, value] : p->settings) {
        if ((ret = rados_conf_set(h.cluster, key.c_str(), value.c_str())) < 0) return fail(ret, "rados_conf_set");
      }
      if ((ret = rados_connect(h.cluster)) < 0) return fail(ret, "rados_connect");
      if ((ret = rados_ioctx_create(h.cluster, p->pool.c_str(), &h.io)) < 0) return fail(ret, "rados_ioctx_create");
      rados_ioctx_set_namespace(h.io, p->ns.empty() ? nullptr : p->ns.c_str());
      const char* snap = p->snapshot.empty() ? nullptr : p->snapshot.c_str();
      ret = p->readOnly ? rbd_open_read_only(h.io, p->image.c_str(), &h.image, snap)
                        : rbd_open(h.io, p->image.c_str(), &h.image, nullptr);
      if (ret < 0) return fail(ret, p->readOnly ? "rbd_open_read_only" : "rbd_open");
      if (p->exclusive && (ret = rbd_lock_acquire(h.image, RBD_LOCK_MODE_EXCLUSIVE)) < 0)
        return fail(ret, "rbd_lock_acquire");
      if ((ret = rbd_stat(h.image, &p->stat, sizeof p->stat)) < 0) return fail(ret, "rbd_stat");
      if ((ret = rbd_update_watch(h.image, &h.watch, &Image::Updated, this)) < 0) return fail(ret, "rbd_update_watch");
      h.watching = true;
      return 0;
    };
    auto done = [p, this](Napi::Env env, bool ok) -> Napi::Value {
      opening_ = false;
      if (!ok) return env.Undefined();
      handles_ = p->handles;
      p->handles = Handles();
      return StatObject(env, p->stat);
    };
    (new Task(info.This().As<Napi::Object>(), info[1].As<Napi::Function>(), body, done))->Queue();
    return info.Env().Undefined();
  }

  static Napi::Object StatObject(Napi::Env env, const rbd_image_info_t& stat) {
    Napi::Object out = Napi::Object::New(env);
    out.Set("size", Napi::Number::New(env, static_cast<double>(stat.size)));
    out.Set("objectSize", Napi::Number::New(env, static_cast<double>(stat.obj_size)));
    return out;
  }

  // stat(callback(error, { size, objectSize })): rbd_stat may refresh the header first.
  Napi::Value Stat(const Napi::CallbackInfo& info) {
    rbd_image_t image = Opened(info.Env());
    auto stat = std::make_shared<rbd_image_info_t>();
    auto body = [image, stat](const char** call) {
      *call = "rbd_stat";
      return rbd_stat(image, stat.get(), sizeof *stat);
    };
    auto done = [stat](Napi::Env env, bool) -> Napi::Value { return StatObject(env, *stat); };
    (new Task(info.This().As<Napi::Object>(), info[0].As<Napi::Function>(), body, done))->Queue();
    return info.Env().Undefined();
  }

  // allocation(offset, length, callback(error, Float64Array of (offset, length, exists) triples)):
  // rbd_diff_iterate2 from the image's creation with whole_object = 1, so with fast-diff it reads
  // the object map only (no object is listed or read); an object that exists counts as allocated.
  Napi::Value Allocation(const Napi::CallbackInfo& info) {
    rbd_image_t image = Opened(info.Env());
    uint64_t offset = Offset(info[0], "offset");
    uint64_t length = Offset(info[1], "length");
    auto extents = std::make_shared<std::vector<double>>();
    auto body = [image, offset, length, extents](const char** call) {
      *call = "rbd_diff_iterate2";
      return rbd_diff_iterate2(image, nullptr, offset, length, 1, 1, &Image::Extent, extents.get());
    };
    auto done = [extents](Napi::Env env, bool) -> Napi::Value {
      Napi::Float64Array out = Napi::Float64Array::New(env, extents->size());
      std::copy(extents->begin(), extents->end(), out.Data());
      return out;
    };
    (new Task(info.This().As<Napi::Object>(), info[2].As<Napi::Function>(), body, done))->Queue();
    return info.Env().Undefined();
  }

  static int Extent(uint64_t offset, size_t length, int exists, void* arg) {
    auto* out = static_cast<std::vector<double>*>(arg);
    out->insert(out->end(), {static_cast<double>(offset), static_cast<double>(length), exists ? 1.0 : 0.0});
    return 0;
  }

  // close(callback(error)): unwatch, rbd_close (which waits for the calls in flight), shutdown.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    auto handles = std::make_shared<Handles>(handles_);
    handles_ = Handles();  // the task owns them now: no second close at teardown
    closing_ = true;
    auto body = [handles](const char** call) {
      *call = "rbd_close";
      handles->Close();
      return 0;
    };
    auto done = [this](Napi::Env env, bool) -> Napi::Value {
      closing_ = false;
      return env.Undefined();
    };
    (new Task(info.This().As<Napi::Object>(), info[0].As<Napi::Function>(), body, done))->Queue();
    return info.Env().Undefined();
  }

  // read(id, offset, into)
  Napi::Value Read(const Napi::CallbackInfo& info) {
    uint64_t offset = Offset(info[1], "offset");
    iovec span = Span(info[2]);
    return Submit(info, info[2], new Op{}, "rbd_aio_read", [&](rbd_image_t image, Op* op) {
      return rbd_aio_read(image, offset, span.iov_len, static_cast<char*>(span.iov_base), op->completion);
    });
  }

  // readv(id, offset, segments) / writev(id, offset, segments)
  Napi::Value Vector(const Napi::CallbackInfo& info, bool write) {
    uint64_t offset = Offset(info[1], "offset");
    if (!info[2].IsArray()) throw Napi::TypeError::New(info.Env(), "segments must be an array");
    Napi::Array segments = info[2].As<Napi::Array>();
    auto* op = new Op{};
    for (uint32_t i = 0; i < segments.Length(); i++) op->iov.push_back(Span(segments.Get(i)));
    return Submit(info, info[2], op, write ? "rbd_aio_writev" : "rbd_aio_readv", [&](rbd_image_t image, Op* op) {
      int count = static_cast<int>(op->iov.size());
      return write ? rbd_aio_writev(image, op->iov.data(), count, offset, op->completion)
                   : rbd_aio_readv(image, op->iov.data(), count, offset, op->completion);
    });
  }
  Napi::Value Readv(const Napi::CallbackInfo& info) { return Vector(info, false); }
  Napi::Value Writev(const Napi::CallbackInfo& info) { return Vector(info, true); }

  // write(id, offset, data, fua): FUA is LIBRADOS_OP_FLAG_FADVISE_FUA, which librbd's
  // write-around cache honours by writing through.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    uint64_t offset = Offset(info[1], "offset");
    iovec span = Span(info[2]);
    int flags = info[3].ToBoolean() ? LIBRADOS_OP_FLAG_FADVISE_FUA : 0;
    return Submit(info, info[2], new Op{}, "rbd_aio_write2", [&](rbd_image_t image, Op* op) {
      return rbd_aio_write2(image, offset, span.iov_len, static_cast<const char*>(span.iov_base), op->completion,
                            flags);
    });
  }

  // discard(id, offset, length) / writeZeroes(id, offset, length)
  Napi::Value Discard(const Napi::CallbackInfo& info) {
    uint64_t offset = Offset(info[1], "offset"), length = Offset(info[2], "length");
    return Submit(info, Napi::Value(), new Op{}, "rbd_aio_discard", [&](rbd_image_t image, Op* op) {
      return rbd_aio_discard(image, offset, length, op->completion);
    });
  }
  Napi::Value WriteZeroes(const Napi::CallbackInfo& info) {
    uint64_t offset = Offset(info[1], "offset"), length = Offset(info[2], "length");
    return Submit(info, Napi::Value(), new Op{}, "rbd_aio_write_zeroes", [&](rbd_image_t image, Op* op) {
      return rbd_aio_write_zeroes(image, offset, length, op->completion, 0, 0);
    });
  }

  // writeSame(id, offset, length, pattern): length a multiple of the pattern's.
  Napi::Value WriteSame(const Napi::CallbackInfo& info) {
    uint64_t offset = Offset(info[1], "offset"), length = Offset(info[2], "length");
    iovec pattern = Span(info[3]);
    return Submit(info, info[3], new Op{}, "rbd_aio_writesame", [&](rbd_image_t image, Op* op) {
      return rbd_aio_writesame(image, offset, length, static_cast<const char*>(pattern.iov_base), pattern.iov_len,
                               op->completion, 0);
    });
  }

  // compareAndWrite(id, offset, compare, data, fua): -EILSEQ with the image offset of the
  // first differing byte in the result's third field when the compare fails.
  Napi::Value CompareAndWrite(const Napi::CallbackInfo& info) {
    uint64_t offset = Offset(info[1], "offset");
    iovec compare = Span(info[2]), data = Span(info[3]);
    int flags = info[4].ToBoolean() ? LIBRADOS_OP_FLAG_FADVISE_FUA : 0;
    if (compare.iov_len != data.iov_len) throw Napi::RangeError::New(info.Env(), "compare and data differ in length");
    Napi::Array keep = Napi::Array::New(info.Env(), 2);
    keep.Set(uint32_t{0}, info[2]);
    keep.Set(uint32_t{1}, info[3]);
    return Submit(info, keep, new Op{}, "rbd_aio_compare_and_write", [&](rbd_image_t image, Op* op) {
      return static_cast<int>(rbd_aio_compare_and_write(image, offset, data.iov_len,
                                                        static_cast<const char*>(compare.iov_base),
                                                        static_cast<const char*>(data.iov_base), op->completion,
                                                        &op->mismatch, flags));
    });
  }

  // flush(id)
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    return Submit(info, Napi::Value(), new Op{}, "rbd_aio_flush",
                  [&](rbd_image_t image, Op* op) { return rbd_aio_flush(image, op->completion); });
  }

  Handles handles_;
  napi_env env_ = nullptr;
  bool torn_down_ = false;
  bool opening_ = false;
  bool closing_ = false;
  Wakeup wakeup_;
  std::mutex mutex_;
  std::vector<Op*> done_;
  bool updated_ = false;
  bool wake_pending_ = false;
  size_t in_flight_ = 0;
};

void CallJs(Napi::Env env, Napi::Function callback, Image* image, void*) {
  if (env != nullptr && image != nullptr) image->Drain(env, callback);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Image", Image::Init(env));
  int major = 0, minor = 0, extra = 0;
  rbd_version(&major, &minor, &extra);
  exports.Set("librbdVersion", Napi::String::New(env, std::to_string(major) + "." + std::to_string(minor) + "." +
                                                          std::to_string(extra)));
  return exports;
}

}  // namespace

NODE_API_MODULE(tcmu_rbd, Init)
