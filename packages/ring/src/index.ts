export { ABI, commandEntryBaseSize, commandEntrySize, scsiCommandSize, tmrEntrySize } from './abi.js';
export { RingCommand } from './command.js';
export type { CommandSource } from './command.js';
export { NativeLane } from './lane.js';
export type { LaneBlockIo, LaneConfig, LaneCounters } from './lane.js';
export {
  AddonLoadError,
  CommandAbortedError,
  CorruptRingError,
  MailboxError,
  NativeError,
  RingClosedError,
  RingError,
  RingResetError,
  RingUsageError,
} from './errors.js';
export {
  closeFd,
  LANE_OPCODES,
  LANE_STATS,
  loadAddon,
  lockFile,
  mapFd,
  memfdCreate,
  mknod,
  punchHole,
  socketPair,
  zeroRange,
} from './native.js';
export type { NativeMapping } from './native.js';
export { readUioMapSize, TcmuRing } from './ring.js';
export type {
  CloseOptions,
  CloseResult,
  FdRingOptions,
  RingFlags,
  TcmuRingEvents,
  TcmuRingOptions,
  TmrNotice,
  UioRingOptions,
} from './ring.js';
