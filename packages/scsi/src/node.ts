export {
  FileBackend,
  FileBackendError,
  type FileBackendErrorCode,
  type FileBackendOptions,
  type FileIoMode,
  type PunchHole,
} from './node/file-backend.js';
