/**
 * WebGPU in Node: installs `navigator.gpu` from Dawn (the `webgpu` npm package) so the same
 * TF.js WebGPU backend the browser runs also runs in Node (`initBackend('webgpu')`).
 *
 * Call `installNodeWebGpu()` BEFORE the first `initBackend('webgpu')`: tfjs-backend-webgpu
 * registers its backend at import time only when `navigator.gpu` already exists.
 *
 * Machines without a GPU: Dawn refuses Debian's lavapipe Vulkan driver, but accepts the
 * SwiftShader driver the chromium package ships (slow, correct). We point the Vulkan loader at it
 * when the caller has not chosen a driver. On the lent NVIDIA machine `.gpu/run.sh` sets
 * `VK_DRIVER_FILES` to the NVIDIA driver, which we then leave alone.
 */
import { installWebGpuCastFix } from '../../model/webgpu/cast-fix';

/** The SwiftShader Vulkan driver installed with Debian's chromium package. */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
/** The Vulkan loader chromium ships beside it (used when Debian's libvulkan1 is not installed). */
export const CHROMIUM_VULKAN_LOADER = '/usr/lib/chromium/libvulkan.so.1';
/** Where Debian-like systems keep the Vulkan loader that Dawn dlopen()s as `libvulkan.so.1`. */
const SYSTEM_VULKAN_LOADERS = [
  '/usr/lib/x86_64-linux-gnu/libvulkan.so.1',
  '/usr/lib/aarch64-linux-gnu/libvulkan.so.1',
  '/usr/lib64/libvulkan.so.1',
  '/usr/lib/libvulkan.so.1',
];
/** glibc's RTLD_NODELETE, which `os.constants.dlopen` does not list. */
const RTLD_NODELETE = 0x1000;

export interface NodeWebGpuOptions {
  /** Dawn options passed to `create()`, e.g. `backend=vulkan` or `enable-dawn-features=...`. */
  readonly dawnOptions?: readonly string[];
}

export interface NodeWebGpuInstall {
  /** The Vulkan driver manifest we selected, when we selected one (SwiftShader on CPU machines). */
  readonly vulkanDriver?: string;
  /** The Vulkan loader library we preloaded, when the system has none. */
  readonly vulkanLoader?: string;
}

let installed: Promise<NodeWebGpuInstall> | undefined;

/**
 * Puts Dawn's `navigator.gpu` and the WebGPU globals (`GPUBufferUsage`, `GPUMapMode`, ...) on
 * `globalThis`. Idempotent; a second call returns the first result (Dawn options are fixed then).
 */
export function installNodeWebGpu(options: NodeWebGpuOptions = {}): Promise<NodeWebGpuInstall> {
  installed ??= install(options);
  return installed;
}

async function install(options: NodeWebGpuOptions): Promise<NodeWebGpuInstall> {
  // The Vulkan loader reads these variables when Dawn creates its instance, so they must be set
  // before `webgpu` is loaded.
  const vulkanDriver = await chooseVulkanDriver();
  const vulkanLoader = await preloadVulkanLoader();
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create([...(options.dawnOptions ?? [])]);
  const g = globalThis as { navigator?: object };
  if (g.navigator) {
    // Node >= 21 has a read-only `navigator` getter on globalThis, but its object is extensible.
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  } else {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
  // Now that navigator.gpu exists, loading the backend registers it and its kernels, so the Cast
  // kernel can be corrected before anything runs (see webgpu-cast-fix).
  await import('@tensorflow/tfjs-backend-webgpu');
  installWebGpuCastFix();
  return { ...(vulkanDriver && { vulkanDriver }), ...(vulkanLoader && { vulkanLoader }) };
}

async function chooseVulkanDriver(): Promise<string | undefined> {
  const env = process.env;
  if (env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES) return undefined;
  const { existsSync } = await import('node:fs');
  if (!existsSync(SWIFTSHADER_ICD)) return undefined;
  env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  return SWIFTSHADER_ICD;
}

/**
 * Dawn loads Vulkan with `dlopen("libvulkan.so.1")`. Machines with chromium but without Debian's
 * libvulkan1 (CI, this one) have the loader only inside /usr/lib/chromium, which the dynamic
 * linker does not search. Loading that file once by path makes the later by-name dlopen find it,
 * since glibc matches already loaded libraries by soname. `process.dlopen` is Node's only dlopen:
 * it throws because the file is no Node addon, and RTLD_NODELETE keeps the library loaded anyway.
 */
async function preloadVulkanLoader(): Promise<string | undefined> {
  const { existsSync } = await import('node:fs');
  if (process.platform !== 'linux' || SYSTEM_VULKAN_LOADERS.some((p) => existsSync(p))) return undefined;
  if (!existsSync(CHROMIUM_VULKAN_LOADER)) return undefined;
  const { constants } = await import('node:os');
  try {
    process.dlopen({ exports: {} }, CHROMIUM_VULKAN_LOADER, constants.dlopen.RTLD_NOW | constants.dlopen.RTLD_GLOBAL | RTLD_NODELETE);
  } catch (e) {
    // The expected outcome; anything else (missing file, wrong architecture) is a real failure.
    if (!/did not self-register/.test((e as Error).message)) throw e;
  }
  return CHROMIUM_VULKAN_LOADER;
}
