export { KERNEL_FLAGS, KernelSimulator, RingBrokenError } from './simulator.js';
export type { SimulatedRequest, SimulatedResult, SimulatorOptions } from './simulator.js';
export { createRamDisk } from './ram-disk.js';
export type { RamDisk, RamDiskOptions } from './ram-disk.js';
export { ringConformanceCases } from './conformance.js';
export type { ConformanceCase, ConformanceDriver, ConformanceResult } from './conformance.js';
