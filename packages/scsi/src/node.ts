export {
  FileBackend,
  FileBackendError,
  type FileBackendErrorCode,
  type FileBackendOptions,
  type PunchHole,
} from './node/file-backend.js';
