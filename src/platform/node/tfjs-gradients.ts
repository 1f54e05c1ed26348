/**
 * Registers TF.js's gradient functions in Node.
 *
 * tfjs-core ships its gradients only as ESM files with extensionless relative imports
 * (`./gradients/Abs_grad`), which bundlers resolve but Node's ESM loader refuses. The kernel and
 * gradient registries live on the global object, so loading those ESM files registers the
 * gradients for the CommonJS build that `import '@tensorflow/tfjs-core'` gives Node. A resolve
 * hook, scoped to @tensorflow packages, adds the `.js` / `/index.js` Node wants.
 */
import { register } from 'node:module';

const hook = `
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    const fromTfjs = context.parentURL && context.parentURL.includes('/@tensorflow/');
    const relative = specifier.startsWith('./') || specifier.startsWith('../');
    if (!fromTfjs || !relative) throw error;
    for (const suffix of ['.js', '/index.js']) {
      try { return await next(specifier + suffix, context); } catch {}
    }
    throw error;
  }
}`;

let done: Promise<void> | undefined;

export function registerTfjsGradients(): Promise<void> {
  done ??= (async () => {
    register(`data:text/javascript,${encodeURIComponent(hook)}`, import.meta.url);
    await import('@tensorflow/tfjs-core/dist/register_all_gradients.js' as string);
  })();
  return done;
}
