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
  type ServeCommand,
  type ServeConfigCommand,
  type StopCommand,
  usage,
} from './args.js';
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
export { createHumanLogger, createJsonLogger, type Logger, type LogLevel, type LogMethod } from './log.js';
export { main, type ProcessIo } from './main.js';
export { openImageDevice, prefixView } from './open-device.js';
export {
  type DeviceRequest,
  drainTimeoutMs,
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
  LiveLine,
  type Rates,
  ratesBetween,
} from './status.js';
