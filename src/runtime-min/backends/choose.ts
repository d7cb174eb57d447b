/** Which backend loadModel uses when none is named: native where the addon loads, else WebAssembly SIMD, else the reference. */
import { loadNativeAddon } from './native.js';
import { loadWasmModule } from './wasm.js';

export function defaultBackendName(): 'native' | 'wasm' | 'reference' {
  if (loadNativeAddon()) return 'native';
  if (loadWasmModule()) return 'wasm';
  return 'reference';
}
