export { FaultInjectionBackend, type FaultInjectionOptions, type LbaSelector } from './fault-injection.js';
export { MemoryBackend, MemoryBackendConfigError, type MemoryBackendOptions } from './memory.js';
export { ReadOnlyBackend } from './read-only.js';
export { BACKEND_MEMBERS, type BackendCapability, BackendWrapper } from './wrapper.js';
