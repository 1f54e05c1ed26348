#!/usr/bin/env bash
# Packs project scripts to run on the lent device machine's CPU cores (16 there, 2 here), which has
# no Node.js and no package registry: .gpu/ gets one esbuild bundle of bench/device/node-entry.ts
# (every import bundled; one tfjs-core copy thanks to --main-fields=module,main), this machine's node
# binary (xz), tfjs-backend-wasm's .wasm files, and run.sh. Data and models are copied in by the
# caller (the whole carried tree is limited to 64 MiB). Usage, from the project root:
#   bash bench/device/pack-node.sh && cp -r <inputs> .gpu/
#   device run, carry [".gpu"]:  bash .gpu/run.sh <script> [args]
set -euo pipefail
root=$(git rev-parse --show-toplevel)
out=$root/.gpu
rm -rf "$out"; mkdir -p "$out/wasm"
npx --yes esbuild@0.25 "$root/bench/device/node-entry.ts" --bundle --platform=node --format=esm \
  --main-fields=module,main --outfile="$out/main.mjs" --log-level=warning \
  --external:webgpu --external:better-sqlite3 \
  --banner:js="import { createRequire } from 'module'; import { fileURLToPath as __toPath } from 'url'; import { dirname as __dirnameOf } from 'path'; const require = createRequire(import.meta.url); const __filename = __toPath(import.meta.url); const __dirname = __dirnameOf(__filename);"
cp "$root"/node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "$out/wasm/"
# better-sqlite3 (the coordinator the CRAB runner starts) is a native addon: its JS, the compiled
# .node (Node ABI of the node binary carried below) and its one runtime dependency.
for pkg in better-sqlite3 bindings file-uri-to-path; do mkdir -p "$out/node_modules/$pkg"; done
cp -r "$root"/node_modules/better-sqlite3/{package.json,lib} "$out/node_modules/better-sqlite3/"
mkdir -p "$out/node_modules/better-sqlite3/build/Release"
cp "$root"/node_modules/better-sqlite3/build/Release/better_sqlite3.node "$out/node_modules/better-sqlite3/build/Release/"
for pkg in bindings file-uri-to-path; do cp -r "$root/node_modules/$pkg/." "$out/node_modules/$pkg/"; done
xz -T2 -6 -c "$(command -v node)" > "$out/node.xz"
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# On the device machine: unpack node once, run the bundle from the project root.
set -e
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$here/node" ] || { xz -dc "$here/node.xz" > "$here/node"; chmod +x "$here/node"; }
exec "$here/node" "$here/main.mjs" "$@"
RUN
chmod +x "$out/run.sh"
du -sh "$out"
