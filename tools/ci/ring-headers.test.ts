// The header lookup of @tcmu/ring's source build (packages/ring/scripts/headers.mjs), on a fake
// file system: which directory a build gets, in which order, and the one-line error.
import { describe, expect, it } from 'vitest';
import { findNodeHeaders, headerVersion } from '../../packages/ring/scripts/headers.mjs';
import { codeBlock, commands } from './readme.mjs';

const versionH = (major: number, minor: number, patch: number) =>
  `#define NODE_MAJOR_VERSION ${major}\n#define NODE_MINOR_VERSION ${minor}\n#define NODE_PATCH_VERSION ${patch}\n`;

/** Node headers (node_version.h + node_api.h) at each prefix, with the version given. */
function fakeFs(headers: Record<string, string>, links: Record<string, string> = {}) {
  const files = new Map<string, string>();
  for (const [prefix, version] of Object.entries(headers)) {
    const [major, minor, patch] = version.replace('v', '').split('.').map(Number) as [number, number, number];
    files.set(`${prefix}/include/node/node_version.h`, versionH(major, minor, patch));
    files.set(`${prefix}/include/node/node_api.h`, '');
  }
  return {
    existsSync: (path: string) => files.has(path),
    readFileSync: (path: string) => {
      const text = files.get(path);
      if (text === undefined) throw new Error(`ENOENT ${path}`);
      return text;
    },
    realpathSync: (path: string) => links[path] ?? path,
  };
}

const base = { env: {}, home: '/home/u', version: 'v20.20.2', execPath: '/opt/node/bin/node' };

describe('findNodeHeaders', () => {
  it('takes npm_config_nodedir first, when it holds headers', () => {
    const fs = fakeFs({ '/custom': 'v20.1.0', '/opt/node': 'v20.20.2' });
    expect(findNodeHeaders({ ...base, fs, env: { npm_config_nodedir: '/custom' } })).toEqual({
      nodedir: '/custom',
      source: 'npm_config_nodedir',
      version: 'v20.1.0',
    });
  });

  it('names the fix in one line when npm_config_nodedir holds no headers', () => {
    const found = findNodeHeaders({ ...base, fs: fakeFs({}), env: { npm_config_nodedir: '/nowhere' } });
    expect(found).toHaveProperty('error');
    const { error } = found as { error: string };
    expect(error).not.toContain('\n');
    expect(error).toMatch(/^@tcmu\/ring: npm_config_nodedir=\/nowhere holds no Node headers/);
  });

  it('takes the headers beside the running node when their version is exactly the running one', () => {
    const fs = fakeFs({ '/opt/node': 'v20.20.2', '/usr': 'v20.20.2' });
    expect(findNodeHeaders({ ...base, fs })).toMatchObject({ nodedir: '/opt/node', source: 'beside node' });
  });

  it('follows a symlinked node to its install prefix', () => {
    const fs = fakeFs(
      { '/home/u/.nvm/versions/node/v20.20.2': 'v20.20.2' },
      {
        '/usr/local/bin/node': '/home/u/.nvm/versions/node/v20.20.2/bin/node',
      },
    );
    expect(findNodeHeaders({ ...base, fs, execPath: '/usr/local/bin/node' })).toMatchObject({
      nodedir: '/home/u/.nvm/versions/node/v20.20.2',
      source: 'beside node',
    });
  });

  it('skips headers beside node of another version, then takes libnode-dev of the same major', () => {
    const fs = fakeFs({ '/opt/node': 'v20.19.0', '/usr': 'v20.11.1' });
    expect(findNodeHeaders({ ...base, fs })).toEqual({
      nodedir: '/usr',
      source: 'libnode-dev',
      version: 'v20.11.1',
    });
  });

  it('does not take libnode-dev of another major', () => {
    const fs = fakeFs({ '/usr': 'v18.19.0' });
    expect(findNodeHeaders({ ...base, fs })).toHaveProperty('error');
  });

  it("takes node-gyp's header cache of this exact version last", () => {
    const fs = fakeFs({ '/usr': 'v18.19.0', '/home/u/.cache/node-gyp/20.20.2': 'v20.20.2' });
    expect(findNodeHeaders({ ...base, fs })).toMatchObject({
      nodedir: '/home/u/.cache/node-gyp/20.20.2',
      source: 'node-gyp cache',
    });
  });

  it('ends with one line naming libnode-dev and npm_config_nodedir when nothing fits', () => {
    const found = findNodeHeaders({ ...base, fs: fakeFs({ '/usr': 'v18.19.0' }), version: 'v24.1.0' });
    const { error } = found as { error: string };
    expect(error).not.toContain('\n');
    expect(error).toMatch(/^@tcmu\/ring: no Node v24\.1\.0 headers/);
    expect(error).toContain('/usr/include/node (v18.19.0)');
    expect(error).toContain('install libnode-dev for Node 24');
    expect(error).toContain('npm_config_nodedir=');
  });

  it('reads a version only where node_api.h is there too', () => {
    const fs = fakeFs({ '/opt/node': 'v22.3.0' });
    expect(headerVersion('/opt/node', fs)).toBe('v22.3.0');
    expect(headerVersion('/elsewhere', fs)).toBeUndefined();
  });
});

describe('README blocks CI runs', () => {
  it('has the set-up and test commands, with nothing to export', () => {
    const setUp = commands('Set up');
    expect(setUp[0]).toMatch(/^bash tools\/bootstrap\.sh/);
    expect(setUp.join('\n')).toMatch(/pnpm install && pnpm build/);
    expect(setUp.join('\n')).not.toMatch(/export|npm_config_/);
    expect(commands('Test')[0]).toMatch(/^pnpm test:all/);
  });

  it('has the @tcmu/scsi example', () => {
    expect(codeBlock('Use the SCSI layer without a kernel', { language: ['ts'] })).toContain(
      "from '@tcmu/scsi'",
    );
  });
});
