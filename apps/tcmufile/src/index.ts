/**
 * tcmufile as a library: the CLI's building blocks, for tests and for embedding `tcmufile serve`.
 * The command itself is `tcmufile` (src/cli.ts).
 */
export {
  configfsChecks,
  doctor,
  environmentError,
  formatCleanup,
  formatDoctor,
  formatDryRun,
  formatInventory,
  missingModules,
  staleObjects,
} from './admin.js';
export {
  type Command,
  type CommandName,
  commandNames,
  defaultNodeDir,
  type IoMode,
  type IscsiPortal,
  nameFromImage,
  parseCommandLine,
  parsePortal,
  type ResizeCommand,
  type ServeCommand,
  type ServeConfigCommand,
  type StatusCommand,
  type StopCommand,
  usage,
} from './args.js';
export {
  ControlError,
  type ControlHandlers,
  type ControlRequest,
  type ControlResponse,
  type ControlServer,
  controlSocketPath,
  defaultControlDir,
  requestControl,
  startControlServer,
} from './control.js';
export { resizeServe, statusOfServes } from './control-commands.js';
export {
  CliError,
  describeError,
  EnvironmentError,
  ExitCode,
  exitCodeFor,
  ImageError,
  UsageError,
} from './errors.js';
export { ConfigError, configSchema, type DiskSpec, loadConfig } from './config.js';
export {
  ChapError,
  chapEnvironment,
  type IscsiAccessRequest,
  isLoopbackHost,
  processSecrets,
  resolveInitiators,
  type SecretSource,
} from './iscsi-access.js';
export { type ServeConfigDependencies, serveConfig } from './multi-serve.js';
export { type ImageRequest, type PreparedImage, prepareImage } from './image.js';
export {
  checkRbdClient,
  parseRbdImage,
  prepareRbdImage,
  type RbdClientCheck,
  type RbdImageRequest,
  type RbdImageSpec,
  type RbdOpenRequest,
} from './rbd-image.js';
export { createHumanLogger, createJsonLogger, type Logger, type LogLevel, type LogMethod } from './log.js';
export { main, type ProcessIo } from './main.js';
export { type MetricsServer, startMetricsServer } from './metrics.js';
export { type Notifier, type NotifierOptions, systemdNotifier } from './notify.js';
export { openImageDevice, prefixView } from './open-device.js';
export { writePidFile } from './pid-file.js';
export { runShell } from './run.js';
export {
  type DeviceRequest,
  drainTimeoutMs,
  type RunningCommand,
  type ServeDependencies,
  type ServedDevice,
  serve,
} from './serve.js';
export {
  type BlockSize,
  blockSizes,
  checkDeviceSize,
  formatBytes,
  parseBlockSize,
  parseSize,
} from './size.js';
export {
  type CounterSnapshot,
  formatCount,
  formatMegabytesPerSecond,
  formatStatusLine,
  formatStatusReport,
  formatUptime,
  LiveLine,
  type Rates,
  ratesBetween,
  type StatusReport,
} from './status.js';
