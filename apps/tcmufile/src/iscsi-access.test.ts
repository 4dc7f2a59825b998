import { describe, expect, it } from 'vitest';
import { ExitCode } from './errors.js';
import { ChapError, isLoopbackHost, resolveInitiators, type SecretSource } from './iscsi-access.js';

const client = 'iqn.1994-05.com.redhat:client';

function secrets(
  env: Record<string, string> = {},
  files: Record<string, [string, number]> = {},
): SecretSource {
  return {
    env,
    readFile: async (path) => {
      const file = files[path];
      if (!file) throw Object.assign(new Error(`ENOENT: no such file, open '${path}'`), { code: 'ENOENT' });
      return { text: file[0], mode: file[1] };
    },
  };
}

const request = (initiators: string[], chapFile?: string) => ({
  initiators,
  chapFile,
  insecureDemoMode: false,
});

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.255.0.9', true],
    ['::1', true],
    ['0:0:0:0:0:0:0:1', true],
    ['128.0.0.1', false],
    ['0.0.0.0', false],
    ['::', false],
    ['192.0.2.1', false],
    ['localhost', false],
  ])('%s → %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});

describe('resolveInitiators', () => {
  it('demo mode without initiators or CHAP; ACLs without CHAP', async () => {
    expect(await resolveInitiators(request([]), secrets())).toBeUndefined();
    expect(await resolveInitiators(request([client]), secrets())).toEqual([{ iqn: client }]);
  });

  it('reads CHAP and mutual CHAP from an owner-only JSON file, for every initiator', async () => {
    const chap = { userid: 'u', password: 'p1', mutualUserid: 't', mutualPassword: 'p2' };
    const other = 'iqn.1994-05.com.redhat:other';
    const result = await resolveInitiators(
      request([client, other], '/etc/chap.json'),
      secrets({}, { '/etc/chap.json': [JSON.stringify(chap), 0o100600] }),
    );
    expect(result).toEqual([
      { iqn: client, chap },
      { iqn: other, chap },
    ]);
  });

  it('reads CHAP from TCMUFILE_CHAP_* variables', async () => {
    const env = {
      TCMUFILE_CHAP_USER: 'u',
      TCMUFILE_CHAP_PASSWORD: 'p1',
      TCMUFILE_CHAP_MUTUAL_USER: 't',
      TCMUFILE_CHAP_MUTUAL_PASSWORD: 'p2',
    };
    expect(await resolveInitiators(request([client]), secrets(env))).toEqual([
      { iqn: client, chap: { userid: 'u', password: 'p1', mutualUserid: 't', mutualPassword: 'p2' } },
    ]);
  });

  it.each<[string, SecretSource, string | undefined, RegExp, string | RegExp]>([
    ['a missing file', secrets(), '/nope.json', /cannot read the CHAP file \/nope.json/, /readable file/],
    [
      'a file others can read',
      secrets({}, { '/c.json': ['{"userid":"u","password":"p"}', 0o100644] }),
      '/c.json',
      /can be read by others \(mode 644\)/,
      'chmod 600 /c.json',
    ],
    ['not JSON', secrets({}, { '/c.json': ['u:p', 0o100600] }), '/c.json', /not a JSON object/, /userid/],
    [
      'an unknown key',
      secrets({}, { '/c.json': ['{"user":"u","password":"p"}', 0o100600] }),
      '/c.json',
      /unknown key "user"/,
      /userid, password/,
    ],
    [
      'no password',
      secrets({}, { '/c.json': ['{"userid":"u"}', 0o100600] }),
      '/c.json',
      /CHAP password is missing in \/c.json/,
      /password/,
    ],
    [
      'a password with a space',
      secrets({}, { '/c.json': ['{"userid":"u","password":"a b"}', 0o100600] }),
      '/c.json',
      /CHAP password in \/c.json: must be 1-255 printable ASCII/,
      /docs\/iscsi.md/,
    ],
    [
      'half a mutual pair in the environment',
      secrets({ TCMUFILE_CHAP_USER: 'u', TCMUFILE_CHAP_PASSWORD: 'p', TCMUFILE_CHAP_MUTUAL_USER: 't' }),
      undefined,
      /CHAP TCMUFILE_CHAP_MUTUAL_PASSWORD in the environment: mutual CHAP needs both/,
      /docs/,
    ],
    [
      'a user without a password in the environment',
      secrets({ TCMUFILE_CHAP_USER: 'u' }),
      undefined,
      /CHAP TCMUFILE_CHAP_PASSWORD is missing in the environment/,
      /TCMUFILE_CHAP_PASSWORD/,
    ],
    [
      'both a file and the environment',
      secrets(
        { TCMUFILE_CHAP_USER: 'u', TCMUFILE_CHAP_PASSWORD: 'p' },
        { '/c.json': ['{"userid":"u","password":"p"}', 0o100600] },
      ),
      '/c.json',
      /both in --chap-file \/c.json and in TCMUFILE_CHAP_USER/,
      /unset/,
    ],
  ])('refuses %s, saying what to do', async (_what, source, chapFile, message, fix) => {
    const error = await resolveInitiators(request([client], chapFile), source).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ChapError);
    expect((error as ChapError).message).toMatch(message);
    expect((error as ChapError).fix).toMatch(fix);
    expect((error as ChapError).exitCode).toBe(chapFile === '/nope.json' ? ExitCode.noImage : ExitCode.usage);
  });

  it('refuses CHAP in the environment without initiators (LIO checks it per ACL)', async () => {
    await expect(
      resolveInitiators(request([]), secrets({ TCMUFILE_CHAP_USER: 'u', TCMUFILE_CHAP_PASSWORD: 'p' })),
    ).rejects.toThrow(/no --iscsi-initiator/);
  });
});
