// The consumer side of one TCMU command ring, on the loop thread.
//
// A wakeup (uv_poll on the UIO fd, one read) walks the entries the kernel
// published since the last walk, checking every field first: the kernel
// treats userspace as hostile (the "UAM" comments in target_core_user.c) and
// we treat the ring the same way. Each command is either served here by the
// native lane (plain READ/WRITE on a file, preadv/pwritev straight on the
// ring's iovecs) or handed to JS as a record; TMR entries are handed over as
// records too. Completions are written straight into the ring: into the
// oldest unreaped slot when the kernel offers CAP_OOOC (tcmu_handle_completions
// looks commands up by the cmd_id it finds at the tail), else into the
// command's own slot, in order. publish() makes them visible with one
// release-store of cmd_tail and one kick.
//
// JS reads each record's CDB and iovecs from the ring itself, so no completion
// may overwrite a slot JS has not read yet: the lane's completions wait in
// laneDone_ until publish(), which JS calls after reading every record. JS's
// own completions cost no call each: JS queues them in shared memory
// (completions_) and the engine writes them at its next walk or publish.
// The lane's transfers run at the end of their walk: on two threads (this one and one
// joined before the walk returns) when they add up to kSplitBytes, the second core at
// qd16; no transfer outlives its walk.

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <thread>
#include <cmath>
#include <cstddef>
#include <ctime>
#include <string>
#include <vector>

#include "common.h"

namespace tcmu {
namespace {

constexpr uint32_t kRecordCommand = 1;  // id, entry offset, entry length, cdb offset, cdb length, iov_cnt, iov_bidi_cnt
constexpr uint32_t kRecordTmr = 2;      // tmr type, id count, offset of the ids
constexpr uint32_t kRecordWords = 8;
// completions_: word 0 = queued count, then per completion: id, status | uflags << 8 |
// sense length << 16, read_len, unused. Its sense bytes are at index * kSenseSize in completionSense_.
constexpr uint32_t kCompletionWords = 4;
constexpr int32_t kGateReads = 1;  // laneState[0] bits set by JS: the lane must leave these to JS
constexpr int32_t kGateWrites = 2;
constexpr int kLaneOpcodes = 8;
constexpr int kMaskStride = 16;
constexpr uint32_t kIds = 65536;
constexpr uint64_t kSplitBytes = 256 * 1024;
constexpr int kRewalks = 4;  // extra walks in one wakeup while the lane serves everything
constexpr uint8_t kCheckCondition = 0x02;
// Lane stats (LANE_STATS in native.ts): counters, then LatencyHistogram's layout (4 buckets/octave from 1 us).
enum { kReads, kWrites, kBytesRead, kBytesWritten, kLatencyCount, kLatencySumUs, kLatencyMinUs, kLatencyMaxUs, kBuckets };
constexpr int kBucketCount = 36 * 4 + 1;
constexpr int kScattered = kBuckets + kBucketCount;  // commands whose data came in several iovecs
constexpr int kRingFull = kScattered + 1;            // walks that left entries: maxInFlight with JS
constexpr int kStatsLength = kRingFull + 1;

enum InFlight : uint8_t { kIdle = 0, kWithJs = 1, kWithLane = 2 };

// include/uapi/linux/target_core_user.h, LP64 (the header itself is C, not C++): the same
// numbers as abi.ts, which abi.test.ts pins against offsetof() from the real header.
constexpr uint32_t kCmdTailOffset = 64, kCmdHeadOffset = 12;
constexpr uint32_t kOpMask = 0x7, kOpPad = 0, kOpCmd = 1, kOpTmr = 2, kOpAlign = 8;
constexpr uint32_t kCmdIdOffset = 4, kUflagsOffset = 7;
constexpr uint32_t kIovCntOffset = 8, kIovBidiCntOffset = 12, kCdbOffOffset = 24, kIovOffset = 48, kIovSize = 16;
constexpr uint32_t kStatusOffset = 8, kReadLenOffset = 12, kSenseOffset = 16, kSenseSize = 96;
constexpr uint32_t kCmdEntrySize = 112;
constexpr uint32_t kTmrTypeOffset = 8, kTmrCountOffset = 12, kTmrIdsOffset = 32, kTmrEntrySize = 32;
constexpr uint8_t kUflagUnknownOp = 0x1, kUflagReadLen = 0x2;
constexpr uint32_t kFlagOooc = 1 << 0, kFlagReadLen = 1 << 1;

template <typename T>
T Load(const uint8_t* at) {  // the entries are packed: no unaligned pointers
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}
template <typename T>
void Store(uint8_t* at, T value) {
  std::memcpy(at, &value, sizeof value);
}
uint32_t Be32(const uint8_t* p) { return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]; }
uint64_t Be64(const uint8_t* p) { return (uint64_t{Be32(p)} << 32) | Be32(p + 4); }

// scsi_command_size(): the group code's length, or 8 + ADDITIONAL CDB LENGTH for 0x7f.
uint32_t CdbLength(const uint8_t* cdb) {
  static const uint8_t kGroup[8] = {6, 10, 10, 12, 16, 12, 10, 10};
  return cdb[0] == 0x7f ? 8u + cdb[7] : kGroup[(cdb[0] >> 5) & 7];
}

// READ/WRITE 6, 10, 12, 16: the lane's opcodes, in the order of the masks JS passes.
int LaneIndex(uint8_t opcode) {
  switch (opcode) {
    case 0x08: return 0;
    case 0x0a: return 1;
    case 0x28: return 2;
    case 0x2a: return 3;
    case 0xa8: return 4;
    case 0xaa: return 5;
    case 0x88: return 6;
    case 0x8a: return 7;
    default: return -1;
  }
}

uint64_t NowNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return uint64_t(now.tv_sec) * 1000000000u + uint64_t(now.tv_nsec);
}

// LatencyHistogram.record's bucket, computed the same way.
int BucketOf(double us) {
  if (!(us >= 1)) return 0;
  int index = static_cast<int>(std::ceil(std::log2(us) * 4 + 1e-9));
  if (index < kBucketCount - 1 && std::pow(2.0, index / 4.0) <= us) index++;
  return std::min(index, kBucketCount - 1);
}

// A lane transfer, run at the end of its walk.
struct Job {
  uint16_t id;
  bool write, ok;
  off_t offset;
  size_t iov;  // its first iovec in jobIov_
  uint32_t count;
  uint64_t bytes;
  uint32_t record[kRecordWords];  // JS's record, should the transfer fail
};

class RingEngine : public Napi::ObjectWrap<RingEngine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "RingEngine",
                       {
                           InstanceAccessor<&RingEngine::Buffer>("buffer"),
                           InstanceAccessor<&RingEngine::Records>("records"),
                           InstanceAccessor<&RingEngine::LaneState>("laneState"),
                           InstanceAccessor<&RingEngine::LaneStats>("laneStats"),
                           InstanceAccessor<&RingEngine::Completions>("completions"),
                           InstanceAccessor<&RingEngine::CompletionSense>("completionSense"),
                           InstanceAccessor<&RingEngine::InFlightJs>("inFlight"),
                           InstanceAccessor<&RingEngine::Overtaken>("overtaken"),
                           InstanceMethod<&RingEngine::Start>("start"),
                           InstanceMethod<&RingEngine::Fetch>("fetch"),
                           InstanceMethod<&RingEngine::Publish>("publish"),
                           InstanceMethod<&RingEngine::ConfigureLane>("configureLane"),
                           InstanceMethod<&RingEngine::Stop>("stop"),
                           InstanceMethod<&RingEngine::Restart>("restart"),
                           InstanceMethod<&RingEngine::Unmap>("unmap"),
                       });
  }

  // new RingEngine(memoryFd, eventFd, mapSize, recordCapacity, callback(error, records))
  explicit RingEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingEngine>(info) {
    Napi::Env env = info.Env();
    int memoryFd = IntArg(info, 0, "memoryFd");
    eventFd_ = IntArg(info, 1, "eventFd");
    uint64_t mapSize = SizeArg(info, 2, "mapSize");
    recordCapacity_ = static_cast<uint32_t>(std::max<int32_t>(1, IntArg(info, 3, "recordCapacity")));
    if (info.Length() < 5 || !info[4].IsFunction()) throw Napi::TypeError::New(env, "callback must be a function");
    callback_ = Napi::Persistent(info[4].As<Napi::Function>());
    Napi::ArrayBuffer map;
    state_ = MapShared(env, memoryFd, mapSize, &map);
    buffer_ = Napi::Persistent(map);
    Napi::ArrayBuffer records = Napi::ArrayBuffer::New(env, size_t{recordCapacity_} * kRecordWords * 4);
    records_ = static_cast<uint32_t*>(records.Data());
    recordsRef_ = Napi::Persistent(records);
    Napi::ArrayBuffer gate = Napi::ArrayBuffer::New(env, 16);
    gate_ = static_cast<int32_t*>(gate.Data());
    gate_[0] = kGateReads | kGateWrites;
    gateRef_ = Napi::Persistent(gate);
    Napi::ArrayBuffer stats = Napi::ArrayBuffer::New(env, kStatsLength * sizeof(double));
    stats_ = static_cast<double*>(stats.Data());
    std::fill(stats_, stats_ + kStatsLength, 0.0);
    stats_[kLatencyMinUs] = INFINITY;
    statsRef_ = Napi::Persistent(stats);
    // One queued completion per command with JS at most: recordCapacity_ exceeds maxInFlight.
    Napi::ArrayBuffer completions =
        Napi::ArrayBuffer::New(env, (size_t{recordCapacity_} + 1) * kCompletionWords * 4);
    completions_ = static_cast<uint32_t*>(completions.Data());
    completions_[0] = 0;
    completionsRef_ = Napi::Persistent(completions);
    Napi::ArrayBuffer completionSense = Napi::ArrayBuffer::New(env, size_t{recordCapacity_} * kSenseSize);
    completionSense_ = static_cast<uint8_t*>(completionSense.Data());
    completionSenseRef_ = Napi::Persistent(completionSense);
    inFlight_.assign(kIds, kIdle);
  }

  ~RingEngine() override { ClosePoll(); }

 private:
  // ------------------------------------------------------------------ JS API

  Napi::Value Buffer(const Napi::CallbackInfo&) { return buffer_.Value(); }
  Napi::Value Records(const Napi::CallbackInfo&) { return recordsRef_.Value(); }
  Napi::Value LaneState(const Napi::CallbackInfo&) { return gateRef_.Value(); }
  Napi::Value LaneStats(const Napi::CallbackInfo&) { return statsRef_.Value(); }
  Napi::Value Completions(const Napi::CallbackInfo&) { return completionsRef_.Value(); }
  Napi::Value CompletionSense(const Napi::CallbackInfo&) { return completionSenseRef_.Value(); }
  Napi::Value InFlightJs(const Napi::CallbackInfo& info) {
    FlushCompletions();
    return Napi::Number::New(info.Env(), jsInFlight_);
  }
  Napi::Value Overtaken(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), overtaken_); }

  // start(cmdrOffset, cmdrSize, tail, mailboxFlags, maxInFlight): JS checked the mailbox.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (handle_ || closed_) throw Napi::Error::New(env, "the engine was already started");
    cmdrOff_ = static_cast<uint32_t>(SizeArg(info, 0, "cmdrOffset"));
    cmdrSize_ = static_cast<uint32_t>(SizeArg(info, 1, "cmdrSize"));
    cursor_ = tail_ = published_ = static_cast<uint32_t>(SizeArg(info, 2, "tail"));
    uint32_t flags = static_cast<uint32_t>(SizeArg(info, 3, "flags"));
    maxInFlight_ = static_cast<uint32_t>(SizeArg(info, 4, "maxInFlight"));
    ooo_ = (flags & kFlagOooc) != 0;
    readLenCap_ = (flags & kFlagReadLen) != 0;
    dataOff_ = uint64_t{cmdrOff_} + cmdrSize_;
    if (!ooo_) {
      slotOf_.assign(kIds, 0);
      done_.assign(kIds, 0);
    }
    StartPoll(env);
    return env.Undefined();
  }

  // restart(tail): after the kernel's reset_ring (cmd_head = cmd_tail = 0, every command
  // gone): forget commands and failure, walk again from `tail`, polling again if stopped.
  Napi::Value Restart(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_ || cmdrSize_ == 0) throw Napi::Error::New(env, "the engine is not running");
    cursor_ = tail_ = published_ = static_cast<uint32_t>(SizeArg(info, 0, "tail"));
    failed_ = reported_ = overtaken_ = false;
    completions_[0] = 0;  // the reset completed those commands already
    jsInFlight_ = 0;
    inFlight_.assign(kIds, kIdle);
    laneDone_.clear();
    DropJobs();
    if (!ooo_) {
      slotOf_.assign(kIds, 0);
      done_.assign(kIds, 0);
    }
    if (!handle_) StartPoll(env);
    return env.Undefined();
  }

  void StartPoll(Napi::Env env) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no uv loop");
    handle_ = new uv_poll_t;
    int rc = uv_poll_init(loop, handle_, eventFd_);
    if (rc == 0) {
      handle_->data = this;
      rc = uv_poll_start(handle_, UV_READABLE, &RingEngine::OnPoll);
    }
    if (rc < 0) {
      ClosePoll();
      throw ErrnoError(env, -rc, "uv_poll_start");
    }
    Ref();  // keep this object alive while the handle can call back
  }

  // Walks now (e.g. after completions made room below maxInFlight); returns the records written.
  // The lane's completions stay pending until publish(), after JS has read the records.
  Napi::Value Fetch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t records = Walk();
    if (failed_ && !reported_) return ReportCorruption(env, records);
    return Napi::Number::New(env, records);
  }

  // Writes the queued completions (JS's and the lane's), then one release-store of cmd_tail
  // and one kick when the tail moved. Returns true if it kicked; throws on a failed kick.
  Napi::Value Publish(const Napi::CallbackInfo& info) {
    int result = PublishNow();
    if (result < 0) throw ErrnoError(info.Env(), -result, "write");
    return Napi::Boolean::New(info.Env(), result > 0);
  }

  // configureLane(fd, blockSize, blockCount, maxTransferBlocks, masks): fd -1 turns it off.
  // masks: 8 x 16 bytes, one row per LaneIndex: byte 0 = 1 when the lane may serve the
  // opcode, bytes 1..n-1 = the CDB bits that send a command to JS instead.
  Napi::Value ConfigureLane(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = IntArg(info, 0, "fd");
    if (fd < 0) {
      laneFd_ = -1;
      return env.Undefined();
    }
    uint64_t blockSize = SizeArg(info, 1, "blockSize");
    if (blockSize == 0) throw Napi::RangeError::New(env, "blockSize must be positive");
    laneBlockSize_ = blockSize;
    laneBlockCount_ = SizeArg(info, 2, "blockCount");
    laneMaxBlocks_ = SizeArg(info, 3, "maxTransferBlocks");
    if (info.Length() < 5 || !info[4].IsTypedArray() ||
        info[4].As<Napi::Uint8Array>().ByteLength() != kLaneOpcodes * kMaskStride) {
      throw Napi::TypeError::New(env, "masks must be a Uint8Array of 128 bytes");
    }
    std::memcpy(masks_, info[4].As<Napi::Uint8Array>().Data(), sizeof masks_);
    laneFd_ = fd;
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_) {
      ClosePoll();
      Unref();
    }
    return info.Env().Undefined();
  }

  // Unmaps (JS views read as length 0); completions queued later are dropped.
  Napi::Value Unmap(const Napi::CallbackInfo& info) {
    closed_ = true;
    completions_[0] = 0;
    laneDone_.clear();
    DropJobs();
    DetachAndUnmap(buffer_, state_);
    if (handle_) {
      ClosePoll();
      Unref();
    }
    // The callback's closure holds the TcmuRing, which holds this engine: dropping the
    // strong reference lets both be collected.
    callback_.Reset();
    return info.Env().Undefined();
  }

  // -------------------------------------------------------------- the walk

  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    auto* self = static_cast<RingEngine*>(handle->data);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Value error = env.Null();
    uint32_t records = 0;
    if (status < 0) {
      error = ErrnoError(env, -status, "poll").Value();
    } else {
      // One read per wakeup: it returns the UIO event count and clears readiness.
      uint32_t events;
      ssize_t n;
      do n = read(self->eventFd_, &events, sizeof events); while (n < 0 && errno == EINTR);
      if (n == 0) {
        Napi::Error eof = Napi::Error::New(env, "read: peer closed the event channel");
        eof.Set("code", Napi::String::New(env, "EOF"));
        eof.Set("syscall", Napi::String::New(env, "read"));
        error = eof.Value();
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        error = ErrnoError(env, errno, "read").Value();
      } else {
        // Commands the kernel queues while we serve these are walked again at once (no
        // epoll_wait and read in between), as long as the lane takes all of them.
        for (int walk = 0;; walk++) {
          records = self->Walk();
          if (self->failed_ && !self->reported_) error = self->CorruptionError(env).Value();
          if (records > 0 || !error.IsNull() || walk == kRewalks || !self->MoreToWalk()) break;
          if (self->PublishNow() < 0) break;
        }
      }
    }
    if (!error.IsNull() && self->handle_) uv_poll_stop(self->handle_);  // a broken fd polls readable forever
    if ((records > 0 || !error.IsNull()) && !self->callback_.IsEmpty()) {
      try {
        self->callback_.MakeCallback(self->Value(), {error, Napi::Number::New(env, records)});
      } catch (const Napi::Error& e) {
        napi_fatal_exception(env, e.Value());
      }
    }
    if (!self->closed_ && self->PublishNow() < 0 && self->handle_) uv_poll_stop(self->handle_);
  }

  /** The kernel published entries past our cursor, and we may take them. */
  bool MoreToWalk() const {
    uint32_t head = __atomic_load_n(reinterpret_cast<uint32_t*>(state_->address + kCmdHeadOffset), __ATOMIC_ACQUIRE);
    return head != cursor_ && jsInFlight_ < maxInFlight_;
  }

  uint8_t* Entry(uint32_t ringOffset) const { return state_->address + cmdrOff_ + ringOffset; }

  bool Fail(std::string message, uint32_t offset) {
    failed_ = true;
    corruption_ = std::move(message);
    corruptionOffset_ = offset;
    if (handle_) uv_poll_stop(handle_);
    return false;
  }

  Napi::Error CorruptionError(Napi::Env env) {
    reported_ = true;
    Napi::Error error = Napi::Error::New(env, corruption_);
    error.Set("code", Napi::String::New(env, "CORRUPT_RING"));
    error.Set("offset", Napi::Number::New(env, corruptionOffset_));
    return error;
  }

  Napi::Value ReportCorruption(Napi::Env env, uint32_t records) {
    Napi::Error error = CorruptionError(env);
    error.Set("records", Napi::Number::New(env, records));
    throw error;
  }

  uint32_t Walk() {
    FlushCompletions();  // they may free room below maxInFlight
    if (!handle_ || closed_ || failed_) return 0;
    uint32_t head = __atomic_load_n(reinterpret_cast<uint32_t*>(state_->address + kCmdHeadOffset), __ATOMIC_ACQUIRE);
    if (head >= cmdrSize_ || head % kOpAlign != 0) {
      Fail("cmd_head " + std::to_string(head) + " is not an aligned offset inside the " +
               std::to_string(cmdrSize_) + "-byte ring",
           head);
      return 0;
    }
    uint32_t records = 0;
    uint32_t laneServed = 0;
    uint64_t laneStart = 0;
    // A lane transfer that fails goes to JS after all: keep room for its record.
    while (cursor_ != head && jsInFlight_ + jobs_.size() < maxInFlight_ && records + jobs_.size() < recordCapacity_) {
      uint32_t at = cursor_;
      uint8_t* entry = Entry(at);
      uint32_t lenOp = Load<uint32_t>(entry);
      uint32_t length = (lenOp & ~kOpMask);
      uint32_t op = (lenOp & kOpMask);
      uint32_t available = (head - at + cmdrSize_) % cmdrSize_;
      if (length == 0) return Fail("entry length is 0", at), records;
      if (length > available) {
        return Fail("entry length " + std::to_string(length) + " runs past cmd_head (" + std::to_string(available) +
                        " bytes published)",
                    at),
               records;
      }
      if (uint64_t{at} + length > cmdrSize_) {
        return Fail("entry length " + std::to_string(length) + " crosses the end of the ring", at), records;
      }
      if (op == kOpCmd) {
        uint32_t* record = records_ + records * kRecordWords;
        int taken = TakeCommand(entry, at, length, record, laneStart);
        if (taken < 0) return records;
        if (taken == 0) records++;
        else laneServed++;
      } else if (op == kOpTmr) {
        if (length < kTmrEntrySize) {
          return Fail("TMR entry length " + std::to_string(length) + " is below " +
                          std::to_string(kTmrEntrySize),
                      at),
                 records;
        }
        uint32_t count = Load<uint32_t>(entry + kTmrCountOffset);
        if (kTmrIdsOffset + 2 * uint64_t{count} > length) {
          return Fail("TMR entry names " + std::to_string(count) + " ids but is only " + std::to_string(length) +
                          " bytes",
                      at),
                 records;
        }
        uint32_t* record = records_ + records++ * kRecordWords;
        record[0] = kRecordTmr;
        record[1] = entry[kTmrTypeOffset];
        record[2] = count;
        record[3] = cmdrOff_ + at + kTmrIdsOffset;
      } else if (op != kOpPad) {
        entry[kUflagsOffset] |= kUflagUnknownOp;  // a newer kernel's op: step over
      }
      cursor_ = (at + length) % cmdrSize_;
    }
    if (cursor_ != head && jsInFlight_ >= maxInFlight_) stats_[kRingFull]++;
    if (!jobs_.empty()) laneServed -= RunJobs(records);
    if (laneServed > 0) RecordLatency(laneStart, laneServed);
    AdvanceTail();
    return records;
  }

  // Checks one CMD entry; serves it in the lane (1) or fills `record` for JS (0); -1 when corrupt.
  int TakeCommand(uint8_t* entry, uint32_t at, uint32_t length, uint32_t* record, uint64_t& laneStart) {
    auto fail = [&](const std::string& message) { return Fail(message, at), -1; };
    if (length < kCmdEntrySize) {
      return fail("CMD entry length " + std::to_string(length) + " is below " + std::to_string(kCmdEntrySize));
    }
    uint16_t id = Load<uint16_t>(entry + kCmdIdOffset);
    if (id == 0) return fail("CMD entry has cmd_id 0");
    if (inFlight_[id] != kIdle) return fail("cmd_id " + std::to_string(id) + " is already in flight");
    uint32_t iovCount = Load<uint32_t>(entry + kIovCntOffset);
    uint32_t bidiCount = Load<uint32_t>(entry + kIovBidiCntOffset);
    uint64_t iovEnd = kIovOffset + kIovSize * (uint64_t{iovCount} + bidiCount);
    if (iovEnd > length) {
      return fail("iov_cnt " + std::to_string(iovCount) + " + iov_bidi_cnt " + std::to_string(bidiCount) +
                  " iovecs do not fit a " + std::to_string(length) + "-byte entry");
    }
    uint64_t entryStart = uint64_t{cmdrOff_} + at;
    uint64_t cdbOff = Load<uint64_t>(entry + kCdbOffOffset);
    if (cdbOff < entryStart + iovEnd || cdbOff >= entryStart + length) {
      return fail("cdb_off " + std::to_string(cdbOff) + " is outside the entry's CDB area");
    }
    uint64_t cdbStart = cdbOff - entryStart;
    const uint8_t* cdb = state_->address + cdbOff;
    if (cdb[0] == 0x7f && cdbStart + 8 > length) return fail("variable-length CDB header runs past the entry");
    uint32_t cdbLength = CdbLength(cdb);
    if (cdbStart + cdbLength > length) return fail(std::to_string(cdbLength) + "-byte CDB runs past the entry");
    uint64_t mainBytes = 0;
    for (uint32_t i = 0; i < iovCount + bidiCount; i++) {
      const uint8_t* iov = entry + kIovOffset + i * kIovSize;
      uint64_t base = Load<uint64_t>(iov + 0);
      uint64_t len = Load<uint64_t>(iov + 8);
      if (base < dataOff_ || base > state_->length || len > state_->length - base) {
        return fail("iovec " + std::to_string(i) + " [" + std::to_string(base) + ", +" + std::to_string(len) +
                    ") is outside the data area [" + std::to_string(dataOff_) + ", " + std::to_string(state_->length) +
                    ")");
      }
      if (i < iovCount) mainBytes += len;
    }
    if (!ooo_) slotOf_[id] = at;
    record[0] = kRecordCommand;
    record[1] = id;
    record[2] = static_cast<uint32_t>(entryStart);
    record[3] = length;
    record[4] = static_cast<uint32_t>(cdbOff);
    record[5] = cdbLength;
    record[6] = iovCount;
    record[7] = bidiCount;
    if (!bidiCount && laneFd_ >= 0 && ServeInLane(cdb, entry + kIovOffset, iovCount, mainBytes, laneStart, record)) {
      inFlight_[id] = kWithLane;
      return 1;
    }
    inFlight_[id] = kWithJs;
    jsInFlight_++;
    return 0;
  }

  // ------------------------------------------------------------ the lane

  // Serves a plain READ/WRITE that the emulation would answer GOOD, exactly as it would;
  // anything else (an unusual CDB bit, a range or size the emulation would refuse, an
  // I/O error) goes to JS, which answers with the precise sense. JS closes the gate while
  // the unit has state a plain command must see (a unit attention, an exclusive lock...).
  bool ServeInLane(const uint8_t* cdb, const uint8_t* iovs, uint32_t iovCount, uint64_t bytes, uint64_t& laneStart,
                   const uint32_t* record) {
    int index = LaneIndex(cdb[0]);
    if (index < 0) return false;
    const uint8_t* mask = masks_ + index * kMaskStride;
    bool write = cdb[0] & 0x02;
    if (!mask[0] || (gate_[0] & (write ? kGateWrites : kGateReads)) != 0) return false;
    uint32_t cdbLength = CdbLength(cdb);
    for (uint32_t i = 1; i < cdbLength; i++) {
      if (cdb[i] & mask[i]) return false;
    }
    uint64_t lba, blocks;
    switch (cdbLength) {
      case 6:  // SBC-4 5.10: 21-bit LBA, TRANSFER LENGTH 0 means 256 blocks
        lba = (uint64_t{cdb[1] & 0x1fu} << 16) | (uint64_t{cdb[2]} << 8) | cdb[3];
        blocks = cdb[4] == 0 ? 256 : cdb[4];
        break;
      case 10:
        lba = Be32(cdb + 2);
        blocks = (uint64_t{cdb[7]} << 8) | cdb[8];
        break;
      case 12:
        lba = Be32(cdb + 2);
        blocks = Be32(cdb + 6);
        break;
      default:
        lba = Be64(cdb + 2);
        blocks = Be32(cdb + 10);
        break;
    }
    if (blocks == 0 || (laneMaxBlocks_ > 0 && blocks > laneMaxBlocks_)) return false;
    if (lba > laneBlockCount_ || blocks > laneBlockCount_ - lba) return false;
    if (bytes != blocks * laneBlockSize_) return false;
    if (laneStart == 0) laneStart = NowNs();
    Job job{static_cast<uint16_t>(record[1]), write, false, static_cast<off_t>(lba * laneBlockSize_),
            jobIov_.size(), iovCount, bytes, {}};
    std::memcpy(job.record, record, sizeof job.record);
    for (uint32_t i = 0; i < iovCount; i++) {
      const uint8_t* iov = iovs + i * kIovSize;
      jobIov_.push_back({state_->address + Load<uint64_t>(iov + 0), Load<uint64_t>(iov + 8)});
    }
    jobs_.push_back(job);
    jobBytes_ += bytes;
    return true;
  }

  // Serves the walk's transfers, the first half on a second thread when they are large; a
  // failed one goes to JS, which retries it and answers with the precise sense. Returns the
  // failures. One thread per walk: at these sizes its start costs little next to the copies.
  uint32_t RunJobs(uint32_t& records) {
    size_t half = jobBytes_ >= kSplitBytes ? jobs_.size() / 2 : 0;
    std::thread helper = half > 0 ? std::thread([this, half] { Transfers(0, half); }) : std::thread();
    Transfers(half, jobs_.size());
    if (helper.joinable()) helper.join();
    uint32_t failed = 0;
    for (const Job& job : jobs_) {
      if (!job.ok) {
        failed++;
        inFlight_[job.id] = kWithJs;
        jsInFlight_++;
        std::memcpy(records_ + records++ * kRecordWords, job.record, sizeof job.record);
        continue;
      }
      stats_[job.write ? kWrites : kReads]++;
      if (job.count > 1) stats_[kScattered]++;
      stats_[job.write ? kBytesWritten : kBytesRead] += static_cast<double>(job.bytes);
      // The emulation's answer: GOOD; a read declares its Data-In with READ_LEN when offered.
      bool readLen = !job.write && readLenCap_;
      laneDone_.push_back({job.id, readLen ? static_cast<uint32_t>(job.bytes) : 0u, readLen});
    }
    DropJobs();
    return failed;
  }

  // A corrupt walk leaves its transfers unrun: the ring's reset fails them back.
  void DropJobs() { jobs_.clear(), jobIov_.clear(), jobBytes_ = 0; }

  void Transfers(size_t from, size_t to) {
    for (Job* job = jobs_.data() + from; job < jobs_.data() + to; job++)
      job->ok = Transfer(job->write, &jobIov_[job->iov], job->count, job->offset);
  }

  bool Transfer(bool write, iovec* iov, uint32_t count, off_t offset) {
    while (count > 0) {
      if (iov->iov_len == 0) {
        iov++;
        count--;
        continue;
      }
      int batch = static_cast<int>(std::min<uint32_t>(count, IOV_MAX));
      ssize_t n = write ? pwritev(laneFd_, iov, batch, offset) : preadv(laneFd_, iov, batch, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // an error or end of file: JS retries and reports it
      offset += n;
      for (size_t left = static_cast<size_t>(n); left > 0;) {
        if (left >= iov->iov_len) {
          left -= iov->iov_len;
          iov++;
          count--;
        } else {
          iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + left;
          iov->iov_len -= left;
          left = 0;
        }
      }
    }
    return true;
  }

  // One latency per walk for the lane's commands: the walk's service time.
  void RecordLatency(uint64_t startNs, uint32_t count) {
    double us = static_cast<double>(NowNs() - startNs) / 1000.0;
    stats_[kLatencyCount] += count;
    stats_[kLatencySumUs] += us * count;
    stats_[kLatencyMinUs] = std::min(stats_[kLatencyMinUs], us);
    stats_[kLatencyMaxUs] = std::max(stats_[kLatencyMaxUs], us);
    stats_[kBuckets + BucketOf(us)] += count;
  }

  // --------------------------------------------------------- completions

  bool WriteCompletion(uint16_t id, uint8_t status, uint32_t readLen, uint8_t uflags, const uint8_t* sense,
                       size_t senseLength) {
    uint8_t* entry;
    if (ooo_) {
      AdvanceTail();
      if (tail_ == cursor_) return false;  // no unreaped slot: cannot happen for a command in flight
      entry = Entry(tail_);
      if (Load<uint16_t>(entry + kCmdIdOffset) != id) overtaken_ = true;
      Store<uint16_t>(entry + kCmdIdOffset, id);
      tail_ = (tail_ + (Load<uint32_t>(entry) & ~kOpMask)) % cmdrSize_;
    } else {
      entry = Entry(slotOf_[id]);
      done_[id] = 1;
    }
    entry[kUflagsOffset] = uflags;
    Store<uint32_t>(entry + kStatusOffset, status);  // status and its three pad bytes
    Store<uint32_t>(entry + kReadLenOffset, readLen);
    if (senseLength > 0) std::memcpy(entry + kSenseOffset, sense, senseLength);
    // Only CHECK CONDITION forwards sense, but never leave stale iovec bytes there.
    if (status == kCheckCondition || senseLength > 0) {
      std::memset(entry + kSenseOffset + senseLength, 0, kSenseSize - senseLength);
    }
    inFlight_[id] = kIdle;
    AdvanceTail();
    return true;
  }

  // Moves the tail over entries that need no completion (PAD, TMR, unknown ops) and, in
  // order, over completed commands.
  void AdvanceTail() {
    while (tail_ != cursor_) {
      uint8_t* entry = Entry(tail_);
      uint32_t lenOp = Load<uint32_t>(entry);
      if ((lenOp & kOpMask) == kOpCmd) {
        if (ooo_) return;
        uint16_t id = Load<uint16_t>(entry + kCmdIdOffset);
        if (!done_[id]) return;
        done_[id] = 0;
      }
      tail_ = (tail_ + (lenOp & ~kOpMask)) % cmdrSize_;
    }
  }

  // JS's queued completions, into the ring. JS checked each command is its own and in flight
  // (TcmuRing.complete); an id the engine did not hand to JS is still never written.
  void FlushCompletions() {
    uint32_t count = std::min(completions_[0], recordCapacity_);
    if (count == 0) return;
    completions_[0] = 0;
    if (closed_ || !state_) return;
    for (uint32_t i = 0; i < count; i++) {
      const uint32_t* c = completions_ + (size_t{i} + 1) * kCompletionWords;
      uint32_t id = c[0];
      if (id == 0 || id >= kIds || inFlight_[id] != kWithJs) continue;
      jsInFlight_--;
      uint32_t senseLength = std::min<uint32_t>(c[1] >> 16, kSenseSize);
      WriteCompletion(static_cast<uint16_t>(id), static_cast<uint8_t>(c[1]), c[2], static_cast<uint8_t>(c[1] >> 8),
                      completionSense_ + size_t{i} * kSenseSize, senseLength);
    }
  }

  // Returns 1 kicked, 0 nothing to publish (or the kick was already pending), -errno.
  int PublishNow() {
    FlushCompletions();
    if (closed_ || !state_) return 0;
    for (const LaneDone& done : laneDone_) {
      WriteCompletion(done.id, 0, done.readLen, done.readLenValid ? kUflagReadLen : 0, nullptr, 0);
    }
    laneDone_.clear();
    if (tail_ == published_) return 0;
    __atomic_store_n(reinterpret_cast<uint32_t*>(state_->address + kCmdTailOffset), tail_, __ATOMIC_RELEASE);
    published_ = tail_;
    return KickFd(eventFd_);
  }

  void ClosePoll() {
    if (!handle_) return;
    uv_poll_stop(handle_);
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  struct LaneDone {
    uint16_t id;
    uint32_t readLen;
    bool readLenValid;
  };

  std::shared_ptr<MapState> state_;
  Napi::Reference<Napi::ArrayBuffer> buffer_, recordsRef_, gateRef_, statsRef_, completionsRef_, completionSenseRef_;
  Napi::FunctionReference callback_;
  uint32_t* records_ = nullptr;
  uint32_t* completions_ = nullptr;
  uint8_t* completionSense_ = nullptr;
  int32_t* gate_ = nullptr;
  double* stats_ = nullptr;
  uint32_t recordCapacity_ = 0;
  int eventFd_ = -1;
  uv_poll_t* handle_ = nullptr;
  bool ooo_ = false, readLenCap_ = false, closed_ = false, failed_ = false, reported_ = false, overtaken_ = false;
  uint32_t cmdrOff_ = 0, cmdrSize_ = 0, cursor_ = 0, tail_ = 0, published_ = 0;
  uint64_t dataOff_ = 0;
  uint32_t maxInFlight_ = 1, jsInFlight_ = 0;
  std::vector<uint8_t> inFlight_, done_;
  std::vector<uint32_t> slotOf_;
  std::vector<LaneDone> laneDone_;
  std::string corruption_;
  uint32_t corruptionOffset_ = 0;
  int laneFd_ = -1;
  uint64_t laneBlockSize_ = 512, laneBlockCount_ = 0, laneMaxBlocks_ = 0;
  uint8_t masks_[kLaneOpcodes * kMaskStride] = {};
  std::vector<Job> jobs_;  // the walk's lane transfers
  std::vector<iovec> jobIov_;
  uint64_t jobBytes_ = 0;
};

}  // namespace

Napi::Function InitRingEngine(Napi::Env env) { return RingEngine::Init(env); }

}  // namespace tcmu
