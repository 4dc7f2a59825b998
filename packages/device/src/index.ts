export { Device } from './device.js';
export type {
  DeviceCloseOptions,
  DeviceResizeOptions,
  CommandEvent,
  DeviceEvents,
  DeviceState,
  Emulation,
} from './device.js';
export { createDevice, openDevice, openTarget, Target } from './open.js';
export type { OpenTargetOptions, TargetDeviceOptions } from './open.js';
export type { ChapCredentials } from '@tcmu/configfs';
export type { FabricOptions, IscsiInitiator, OpenDeviceOptions, UnitOptions } from './options.js';
export { DEFAULT_ISCSI_PORTAL, DEFAULT_QUEUE_DEPTH } from './options.js';
export {
  collectMetrics,
  composeHandler,
  injectFaults,
  logCommands,
  silentLogger,
} from './handler.js';
export type {
  DeviceCommand,
  DeviceLogger,
  InjectFaultsOptions,
  Handler,
  HandlerResult,
  LogCommandsOptions,
  HandlerMiddleware,
} from './handler.js';
export { classifyCommand, LatencyHistogram, MetricsCollector, STATUS_NAMES } from './metrics.js';
export type {
  CommandClass,
  CommandCount,
  StatusName,
  CommandSample,
  DeviceStats,
  HistogramBucket,
  LatencySummary,
  MetricsOptions,
} from './metrics.js';
export { handleSignals } from './signals.js';
export type { Closable, HandleSignalsOptions } from './signals.js';
export { defaultIqn, loopbackWwn, resolveIdentity, validateName } from './identity.js';
export type { DeviceIdentity, IdentityOptions } from './identity.js';
export { scsiHandler } from './scsi.js';
export { systemPlatform } from './system.js';
export type { SystemPlatformOptions } from './system.js';
export type * from './platform.js';
export {
  DeviceClosedError,
  DeviceError,
  DeviceResizeError,
  DeviceSetupError,
  HandlerError,
  InvalidDeviceOptionError,
  ReattachMismatchError,
  TeardownError,
} from './errors.js';
export type { SetupStep } from './errors.js';
export {
  BackendWrapper,
  FaultInjectionBackend,
  openFileBackend,
  FileBackendError,
  MemoryBackend,
  ReadOnlyBackend,
} from './backends.js';
export type {
  DeviceFileBackendOptions,
  FileBackend,
  FaultInjectionOptions,
  FileBackendOptions,
  LbaSelector,
  MemoryBackendOptions,
} from './backends.js';
export type { BlockBackend } from '@tcmu/scsi';
export { registerDeviceMetrics } from './prometheus.js';
export type { DeviceMetricsOptions, PromMetric, PromRegistry, PromSample } from './prometheus.js';
