export {
  type Attributes,
  type BackstoreInfo,
  type BackstorePlugin,
  CONTROL_KEYS,
  type ControlKeySpec,
  type ControlValues,
  parseBackstoreInfo,
  parseControl,
  renderControl,
  WRITABLE_ATTRIBUTES,
} from './control.js';
export {
  AlreadyExistsError,
  ConfigfsError,
  InUseError,
  InvalidNameError,
  InvalidOptionError,
  KernelError,
  NotFoundError,
  RollbackError,
  TimeoutError,
} from './errors.js';
export {
  DEFAULT_ROOTS,
  type DirEntry,
  type EntryKind,
  type HostFs,
  NodeHostFs,
  type Roots,
  resolveRoots,
} from './host-fs.js';
export { OWN_SUBTYPE, relativeBackstore } from './backstores.js';
export { randomNaa } from './fabrics.js';
export { randomIqn } from './iscsi.js';
export { TargetManager, type TargetManagerOptions } from './manager.js';
export type * from './model.js';
export { type ConfigfsLock, SocketLock, type SocketLockOptions } from './lock.js';
export { type OwnerRecord, OwnerRegistry } from './owner.js';
export {
  MAX_ISCSI_TPGT,
  MAX_LOOPBACK_TPGT,
  MAX_LUN,
  portalDirName,
  validateChapCredentials,
  validateIqn,
  validateNaaWwn,
  validateObjectName,
  validatePortal,
} from './validate.js';
export {
  checkEnvironment,
  type EnvironmentCheck,
  type EnvironmentOptions,
  type EnvironmentReport,
} from './environment.js';
export {
  exportConfig,
  importConfig,
  type SaveConfig,
  type SavedStorageObject,
  type SavedTarget,
  type SavedTpg,
} from './saveconfig.js';
