export { copyCommands, type ExtendedCopyFields, type ReceiveCopyResultsFields } from './commands.js';
export { CopyManager, CopyManagerError, resolveCopyTarget } from './manager.js';
export {
  type BlockSegmentDescriptor,
  type BlockSegmentSpec,
  CopyLimits,
  type CopyTargetDescriptor,
  type CopyTargetSpec,
  encodeExtendedCopyParameters,
  type ExtendedCopyParameters,
  type ListIdUsage,
  parseExtendedCopyParameters,
} from './parameters.js';
