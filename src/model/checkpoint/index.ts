/** Checkpoint loading: where files come from, how HF lays them out, and the typed model loaders. */
export * from './source';
export * from './weights';
export * from './load';
export * from './t5';
export * from './bert';
export { readTorchBin, torchBinToSafetensors, TorchBinError, TORCH_ALLOWED_GLOBALS, type TorchBinTensor } from './torch-bin';
