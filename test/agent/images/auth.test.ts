import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type RegistryService } from '../../harness/index.js';
import { makeTar, pushImage } from './fixtures.js';
import { startProxy, type Proxy } from './proxy.js';
import { makeStack, type Stack } from './stack.js';

describe('RegistryClient authentication', () => {
  let stack: Stack | undefined;
  let proxy: Proxy | undefined;
  let registry: RegistryService | undefined;
  let dir: string | undefined;

  afterEach(async () => {
    await stack?.destroy();
    stack = undefined;
    await proxy?.stop();
    proxy = undefined;
    await registry?.stop();
    registry = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('pulls from a registry with Basic auth (htpasswd) and refuses clearly without or with wrong credentials', async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-htpasswd-'));
    const file = join(dir, 'htpasswd');
    writeFileSync(file, execFileSync('htpasswd', ['-Bbn', 'alice', 's3cret'], { encoding: 'utf8' }));
    registry = await startRegistry({ htpasswd: file });
    const basic = { Authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}` };
    const pushed = await pushImage(registry.url, 'private/app', 'v1', [makeTar([{ name: 'secret.txt', data: 'top\n' }])], { headers: basic });

    stack = makeStack({ client: { credentials: (r) => (r === registry!.host ? { username: 'alice', password: 's3cret' } : undefined) } });
    await stack.client.ping(registry.host);
    const rec = await stack.puller.pull(`${registry.host}/private/app:v1`);
    assert.equal(rec.digest, pushed.digest);
    assert.deepEqual(await stack.client.tags(registry.host, 'private/app'), ['v1']);
    await stack.destroy();

    stack = makeStack();
    await assert.rejects(stack.client.ping(registry.host), /it requires Basic credentials and none are configured/);
    await assert.rejects(stack.puller.pull(`${registry.host}/private/app:v1`), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'unauthenticated');
      assert.match(e.message, /failed to authenticate to registry ".*": it requires Basic credentials and none are configured/);
      return true;
    });
    await stack.destroy();

    stack = makeStack({ client: { credentials: () => ({ username: 'alice', password: 'wrong' }) } });
    await assert.rejects(stack.puller.pull(`${registry.host}/private/app:v1`), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'unauthenticated');
      assert.match(e.message, /401/);
      return true;
    });
  });

  it('fetches a Bearer token from the challenge realm, caches it, and refuses bad credentials', async () => {
    registry = await startRegistry();
    await pushImage(registry.url, 'tokened', 'v1', [makeTar([{ name: 'a', data: 'a' }]), makeTar([{ name: 'b', data: 'b' }])]);
    proxy = await startProxy(registry.url, { bearer: { username: 'bob', password: 'hunter2' } });
    stack = makeStack({ client: { credentials: () => ({ username: 'bob', password: 'hunter2' }) } });
    const rec = await stack.puller.pull(`${proxy.host}/tokened:v1`);
    assert.equal(rec.layers.length, 2);
    // manifest, config and both layers were fetched with one token for repository:tokened:pull.
    assert.equal(proxy.tokensIssued, 1);
    const tokenReq = proxy.requests.find((r) => r.path.startsWith('/token'))!;
    assert.match(tokenReq.path, /scope=repository%3Atokened%3Apull/);
    assert.match(tokenReq.path, /service=berth-test/);
    await stack.puller.pull(`${proxy.host}/tokened:v1`);
    assert.equal(proxy.tokensIssued, 1, 'token reused until it expires');
    proxy.revokeTokens();
    await stack.puller.pull(`${proxy.host}/tokened:v1`);
    assert.equal(proxy.tokensIssued, 2, 'a refused token is replaced');
    await stack.destroy();

    stack = makeStack({ client: { credentials: () => ({ username: 'bob', password: 'nope' }) } });
    await assert.rejects(stack.puller.pull(`${proxy.host}/tokened:v1`), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'unauthenticated');
      assert.match(e.message, /failed to authenticate to registry ".*": token server ".*" answered 401/);
      return true;
    });
  });

  it('pulls over HTTPS when given the CA file and refuses an untrusted certificate clearly', async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-tls-'));
    const d = dir;
    const ssl = (args: string[]): void => {
      execFileSync('openssl', args, { cwd: d, stdio: 'ignore' });
    };
    ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=berth-test-ca']);
    ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1']);
    writeFileSync(join(d, 'ext'), 'subjectAltName=IP:127.0.0.1\n');
    ssl(['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem', '-days', '1', '-extfile', 'ext']);
    registry = await startRegistry();
    await pushImage(registry.url, 'secure', 'v1', [makeTar([{ name: 's', data: 's' }])]);
    proxy = await startProxy(registry.url, { tls: { key: readFileSync(join(d, 'srv.key'), 'utf8'), cert: readFileSync(join(d, 'srv.pem'), 'utf8') } });
    stack = makeStack({ client: { tls: [proxy.host], caFile: join(d, 'ca.pem') } });
    assert.equal(stack.client.baseUrl(proxy.host), `https://${proxy.host}`);
    const rec = await stack.puller.pull(`${proxy.host}/secure:v1`);
    assert.equal(rec.layers.length, 1);
    await stack.destroy();
    stack = makeStack({ client: { tls: [proxy.host] } });
    await assert.rejects(stack.puller.pull(`${proxy.host}/secure:v1`), /failed to reach registry ".*": .*certificate.*add its CA with caFile/);
  });

  it('refuses plain HTTP to a non-loopback registry unless it is listed as insecure', () => {
    stack = makeStack({ client: { insecure: ['registry.internal:5000'] } });
    assert.equal(stack.client.baseUrl('registry.example.com'), 'https://registry.example.com');
    assert.equal(stack.client.baseUrl('registry.internal:5000'), 'http://registry.internal:5000');
    assert.equal(stack.client.baseUrl('127.0.0.1:5000'), 'http://127.0.0.1:5000');
    assert.equal(stack.client.baseUrl('localhost:5000'), 'http://localhost:5000');
  });
});
