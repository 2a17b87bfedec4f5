/**
 * A client for registries that speak the OCI distribution API, on Node's own
 * http/https (no Docker or containerd libraries).
 *
 * Vocabulary: a registry is `host[:port]`; a repository is the name inside it;
 * a manifest reference is a tag or a digest.
 *
 * Transport: HTTPS with the system CAs (plus `caFile` when given); plain HTTP
 * only for loopback registries and those listed in `insecure`.
 * Auth: anonymous first; on 401 the `WWW-Authenticate` challenge is followed:
 * Basic sends the configured credentials, Bearer fetches a token from the
 * realm (with the credentials, if any) and caches it until it expires.
 * Robustness: 5xx, 429 and dropped connections are retried with exponential
 * backoff; redirects are followed (credentials are not sent to another host);
 * blob downloads that break resume with a Range request; every call honours
 * its AbortSignal. Manifests larger than `maxManifestSize` are refused before
 * they are read in full.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import { CancelledError, ErrorCode, sleep } from '../../lib/index.js';
import { RegistryError } from './errors.js';
import { MANIFEST_ACCEPT } from './mediatypes.js';

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface RegistryClientOptions {
  /** Registries (`host[:port]`) reached over plain HTTP. Loopback hosts are too, unless listed in `tls`. */
  insecure?: string[];
  /** Registries always reached over HTTPS, even on loopback. */
  tls?: string[];
  /** PEM CA bundle (path) trusted in addition to the system CAs. */
  caFile?: string;
  /** Credentials per registry. */
  credentials?: (registry: string) => RegistryCredentials | undefined;
  /** Largest manifest or index accepted; default 4 MiB. */
  maxManifestSize?: number;
  /** Attempts per request for retryable failures; default 5. */
  attempts?: number;
  /** First backoff delay; doubles each time. Default 200 ms. */
  backoffMs?: number;
  userAgent?: string;
}

export interface FetchedManifest {
  /** sha256 of the exact bytes. */
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

const RETRYABLE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET']);

function isLoopback(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(0, registry.indexOf(']') + 1) : (registry.split(':')[0] ?? '');
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Parses a WWW-Authenticate header: `Bearer realm="...",service="...",scope="..."`. */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*(Basic|Bearer)\b\s*(.*)$/i.exec(header);
  if (m === null) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2] ?? '')) !== null) {
    params[(p[1] ?? '').toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme: (m[1] ?? '').toLowerCase() === 'basic' ? 'basic' : 'bearer', params };
}

async function readAll(res: IncomingMessage, limit: number, what: () => Error): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) {
      res.destroy();
      throw what();
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

function retryable(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code !== undefined && RETRYABLE_CODES.has(code)) return true;
  const msg = (err as Error)?.message ?? '';
  return /socket hang up|aborted|premature close|other side closed/i.test(msg);
}

function statusCode(status: number): ErrorCode {
  if (status === 401) return ErrorCode.Unauthenticated;
  if (status === 403) return ErrorCode.PermissionDenied;
  if (status === 404) return ErrorCode.NotFound;
  if (status === 429) return ErrorCode.ResourceExhausted;
  if (status >= 500) return ErrorCode.Unavailable;
  return ErrorCode.InvalidArgument;
}

/** Pulls the first error message out of an OCI error body. */
function errorText(body: Buffer): string {
  try {
    const j = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] };
    const e = j.errors?.[0];
    if (e) return [e.code, e.message].filter(Boolean).join(': ');
  } catch {
    // not JSON
  }
  return body.toString('utf8', 0, Math.min(body.length, 200)).trim();
}

export interface RequestOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** Scope for Bearer tokens, e.g. `repository:busybox:pull`. */
  scope: string;
  signal?: AbortSignal;
}

export class RegistryClient {
  private readonly insecure: Set<string>;
  private readonly tls: Set<string>;
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  private readonly httpsAgent: https.Agent;
  private readonly challenges = new Map<string, Challenge | null>();
  private readonly tokens = new Map<string, CachedToken>();
  readonly maxManifestSize: number;
  private readonly attempts: number;
  private readonly backoffMs: number;

  constructor(private readonly opts: RegistryClientOptions = {}) {
    this.insecure = new Set(opts.insecure ?? []);
    this.tls = new Set(opts.tls ?? []);
    const ca = opts.caFile !== undefined ? [...rootCertificates, readFileSync(opts.caFile, 'utf8')] : undefined;
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 32, ...(ca ? { ca } : {}) });
    this.maxManifestSize = opts.maxManifestSize ?? 4 * 1024 * 1024;
    this.attempts = Math.max(1, opts.attempts ?? 5);
    this.backoffMs = opts.backoffMs ?? 200;
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  baseUrl(registry: string): string {
    const scheme = !this.tls.has(registry) && (this.insecure.has(registry) || isLoopback(registry)) ? 'http' : 'https';
    return `${scheme}://${registry}`;
  }

  /** One HTTP exchange, following redirects; `auth` is sent only to the original host. */
  private exchange(url: URL, method: string, headers: OutgoingHttpHeaders, auth: string | undefined, signal?: AbortSignal, hops = 0): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new CancelledError('registry request cancelled'));
      const lib = url.protocol === 'https:' ? https : http;
      const req = lib.request(url, {
        method,
        headers: { 'User-Agent': this.opts.userAgent ?? 'berth-agent', ...headers, ...(auth ? { Authorization: auth } : {}) },
        agent: url.protocol === 'https:' ? this.httpsAgent : this.httpAgent,
        signal,
      });
      req.on('error', (err) => reject(signal?.aborted ? new CancelledError('registry request cancelled', { cause: err }) : err));
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        const loc = res.headers.location;
        if ([301, 302, 303, 307, 308].includes(status) && loc) {
          res.resume();
          if (hops >= 5) return reject(new Error(`too many redirects from ${url.origin}`));
          const next = new URL(loc, url);
          if (next.protocol !== 'http:' && next.protocol !== 'https:') return reject(new Error(`redirect to unsupported URL scheme "${next.protocol}"`));
          const sameOrigin = next.origin === url.origin;
          this.exchange(next, method, headers, sameOrigin ? auth : undefined, signal, hops + 1).then(resolve, reject);
          return;
        }
        resolve(res);
      });
      req.end();
    });
  }

  private basicAuth(registry: string): string | undefined {
    const c = this.opts.credentials?.(registry);
    return c ? `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}` : undefined;
  }

  private async bearerToken(registry: string, ch: Challenge, scope: string, signal?: AbortSignal): Promise<string> {
    const realm = ch.params.realm;
    if (!realm) throw new RegistryError(registry, ErrorCode.Unauthenticated, `failed to authenticate to registry "${registry}": Bearer challenge has no realm`);
    const c = this.opts.credentials?.(registry);
    const key = `${realm}|${ch.params.service ?? ''}|${scope}|${c?.username ?? ''}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached.token;
    const url = new URL(realm);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && (isLoopback(url.host) || this.insecure.has(url.host)))) {
      throw new RegistryError(registry, ErrorCode.Unauthenticated, `failed to authenticate to registry "${registry}": token realm "${realm}" is not HTTPS`);
    }
    if (ch.params.service) url.searchParams.set('service', ch.params.service);
    url.searchParams.set('scope', scope);
    const started = Date.now();
    const res = await this.exchange(url, 'GET', { Accept: 'application/json' }, this.basicAuth(registry), signal);
    const body = await readAll(res, 1024 * 1024, () => new Error('token response is larger than 1 MiB'));
    if (res.statusCode !== 200) {
      throw new RegistryError(registry, statusCode(res.statusCode === 401 ? 401 : res.statusCode ?? 0),
        `failed to authenticate to registry "${registry}": token server "${url.origin}" answered ${res.statusCode}: ${errorText(body)}`, { status: res.statusCode });
    }
    let j: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      j = JSON.parse(body.toString('utf8')) as typeof j;
    } catch {
      throw new RegistryError(registry, ErrorCode.Unauthenticated, `failed to authenticate to registry "${registry}": token response is not JSON`);
    }
    const token = typeof j.token === 'string' ? j.token : typeof j.access_token === 'string' ? j.access_token : undefined;
    if (!token) throw new RegistryError(registry, ErrorCode.Unauthenticated, `failed to authenticate to registry "${registry}": token response has no "token"`);
    const ttl = typeof j.expires_in === 'number' && j.expires_in > 0 ? j.expires_in : 60;
    this.tokens.set(key, { token, expiresAt: started + Math.max(0, ttl - 5) * 1000 });
    return token;
  }

  private async authHeader(registry: string, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.challenges.get(registry);
    if (!ch) return undefined;
    if (ch.scheme === 'basic') return this.basicAuth(registry);
    return `Bearer ${await this.bearerToken(registry, ch, scope, signal)}`;
  }

  /**
   * Sends a request with auth, retries and redirects. Returns the response for
   * any status below 400 except the ones listed in `accept`; throws
   * RegistryError for the rest (naming the status and the registry's message).
   */
  async request(registry: string, path: string, opts: RequestOptions, accept: number[] = []): Promise<IncomingMessage> {
    const url = new URL(path, this.baseUrl(registry));
    let lastErr: unknown;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) await sleep(this.backoffMs * 2 ** (attempt - 1), opts.signal, 'registry request cancelled');
      try {
        let auth = await this.authHeader(registry, opts.scope, opts.signal);
        let res = await this.exchange(url, opts.method ?? 'GET', opts.headers ?? {}, auth, opts.signal);
        if (res.statusCode === 401) {
          const header = res.headers['www-authenticate'];
          const ch = parseChallenge(Array.isArray(header) ? (header[0] ?? '') : (header ?? ''));
          const body = await readAll(res, 64 * 1024, () => new Error('error body too large')).catch(() => Buffer.alloc(0));
          const known = this.challenges.get(registry);
          if (ch?.scheme === 'basic' && !this.opts.credentials?.(registry)) {
            this.challenges.set(registry, ch);
            throw new RegistryError(registry, ErrorCode.Unauthenticated, `failed to authenticate to registry "${registry}": it requires Basic credentials and none are configured`, { status: 401 });
          }
          if (ch && (known === undefined || known === null || known.scheme !== ch.scheme || ch.scheme === 'bearer')) {
            this.challenges.set(registry, ch);
            // A token the registry refused (revoked, expired early) is not asked for again.
            for (const key of this.tokens.keys()) if (key.includes(`|${opts.scope}|`)) this.tokens.delete(key);
            auth = await this.authHeader(registry, opts.scope, opts.signal);
            res = await this.exchange(url, opts.method ?? 'GET', opts.headers ?? {}, auth, opts.signal);
          } else {
            throw new RegistryError(registry, ErrorCode.Unauthenticated, `failed to authenticate to registry "${registry}" for ${url.pathname}: ${errorText(body) || 'unauthorized'}`, { status: 401 });
          }
        }
        const status = res.statusCode ?? 0;
        if (accept.includes(status) || (status >= 200 && status < 300)) return res;
        const body = await readAll(res, 64 * 1024, () => new Error('error body too large')).catch(() => Buffer.alloc(0));
        const err = new RegistryError(registry, statusCode(status),
          `registry "${registry}" answered ${status} for ${opts.method ?? 'GET'} ${url.pathname}${body.length ? `: ${errorText(body)}` : ''}`, { status });
        if (status >= 500 || status === 429) {
          lastErr = err;
          continue;
        }
        throw err;
      } catch (err) {
        if (err instanceof RegistryError || err instanceof CancelledError) throw err;
        if (opts.signal?.aborted) throw new CancelledError('registry request cancelled', { cause: err });
        if (!retryable(err)) {
          const code = (err as NodeJS.ErrnoException).code ?? '';
          const tlsHint = /CERT|SELF_SIGNED|VERIFY|ISSUER|TLS|SSL/i.test(code) ? ' (the registry\'s TLS certificate is not trusted: add its CA with caFile, or list it as insecure for plain HTTP)' : '';
          throw new RegistryError(registry, ErrorCode.Unavailable, `failed to reach registry "${registry}": ${(err as Error).message}${tlsHint}`, { cause: err });
        }
        lastErr = err;
      }
    }
    if (lastErr instanceof RegistryError) throw lastErr;
    throw new RegistryError(registry, ErrorCode.Unavailable, `failed to reach registry "${registry}" after ${this.attempts} attempts: ${(lastErr as Error)?.message ?? 'unknown error'}`, { cause: lastErr });
  }

  /** GET /v2/: checks that the registry speaks the distribution API (and that we can authenticate). */
  async ping(registry: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const res = await this.request(registry, '/v2/', { scope: 'registry:catalog:*', signal: opts.signal });
    res.resume();
  }

  /** Fetches a manifest or index by tag or digest, capped at maxManifestSize. */
  async getManifest(registry: string, repository: string, reference: string, opts: { signal?: AbortSignal } = {}): Promise<FetchedManifest> {
    const tooLarge = (): RegistryError =>
      new RegistryError(registry, ErrorCode.InvalidArgument,
        `manifest "${registry}/${repository}:${reference}" is larger than the limit of ${this.maxManifestSize} bytes`);
    let res: IncomingMessage;
    let bytes: Buffer;
    // request() retries failed exchanges; a body cut off after the headers is retried here.
    for (let attempt = 1; ; attempt++) {
      res = await this.request(registry, `/v2/${repository}/manifests/${encodeURIComponent(reference)}`, {
        headers: { Accept: MANIFEST_ACCEPT },
        scope: `repository:${repository}:pull`,
        signal: opts.signal,
      });
      const declared = Number(res.headers['content-length'] ?? NaN);
      if (Number.isFinite(declared) && declared > this.maxManifestSize) {
        res.destroy();
        throw tooLarge();
      }
      try {
        bytes = await readAll(res, this.maxManifestSize, tooLarge);
        break;
      } catch (err) {
        if (err instanceof RegistryError) throw err;
        if (opts.signal?.aborted) throw new CancelledError('registry request cancelled', { cause: err });
        if (!retryable(err) || attempt >= this.attempts) {
          throw new RegistryError(registry, ErrorCode.Unavailable, `failed to read manifest "${registry}/${repository}:${reference}": ${(err as Error).message}`, { cause: err });
        }
        await sleep(this.backoffMs * 2 ** (attempt - 1), opts.signal, 'registry request cancelled');
      }
    }
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    let mediaType = (res.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    try {
      const j = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
      if (typeof j.mediaType === 'string' && j.mediaType !== '') mediaType = j.mediaType;
    } catch {
      // reported by the caller, which parses it again
    }
    return { digest, mediaType, bytes };
  }

  /**
   * Streams a blob. When the connection breaks after some bytes arrived, the
   * download resumes with `Range: bytes=<offset>-` (or skips what it already
   * has if the server ignores the range). Yields each chunk once, in order.
   */
  async *blob(registry: string, repository: string, digest: string, opts: { signal?: AbortSignal; offset?: number } = {}): AsyncGenerator<Buffer> {
    let offset = opts.offset ?? 0;
    let failures = 0;
    for (;;) {
      const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
      const res = await this.request(registry, `/v2/${repository}/blobs/${digest}`, { headers, scope: `repository:${repository}:pull`, signal: opts.signal });
      let skip = 0;
      if (offset > 0 && res.statusCode !== 206) skip = offset; // server ignored the range: drop what we have
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          let c = chunk;
          if (skip > 0) {
            if (c.length <= skip) {
              skip -= c.length;
              continue;
            }
            c = c.subarray(skip);
            skip = 0;
          }
          offset += c.length;
          failures = 0;
          yield c;
        }
        // A body that ended early (Content-Length not met) surfaces as an "aborted" error above.
        if (!res.complete) throw Object.assign(new Error('blob response ended early'), { code: 'ECONNRESET' });
        return;
      } catch (err) {
        if (opts.signal?.aborted) throw new CancelledError('blob download cancelled', { cause: err });
        if (!retryable(err) || ++failures >= this.attempts) {
          throw new RegistryError(registry, ErrorCode.Unavailable, `failed to download blob "${digest}" from "${registry}/${repository}" at byte ${offset}: ${(err as Error).message}`, { cause: err });
        }
        res.destroy();
        await sleep(this.backoffMs * 2 ** (failures - 1), opts.signal, 'registry request cancelled');
      }
    }
  }

  /** Reads a small blob (a config) fully, refusing more than `limit` bytes. */
  async blobBytes(registry: string, repository: string, digest: string, limit: number, opts: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of this.blob(registry, repository, digest, opts)) {
      n += c.length;
      if (n > limit) throw new RegistryError(registry, ErrorCode.InvalidArgument, `blob "${digest}" is larger than the limit of ${limit} bytes`);
      parts.push(c);
    }
    return Buffer.concat(parts);
  }

  /**
   * The registry's catalog (GET /v2/_catalog), following `Link: <...>; rel="next"`
   * pages (on the same registry only) up to `maxEntries` names.
   */
  async catalog(registry: string, opts: { signal?: AbortSignal; pageSize?: number; maxEntries?: number } = {}): Promise<string[]> {
    const max = opts.maxEntries ?? 10000;
    const out: string[] = [];
    let path: string | undefined = `/v2/_catalog?n=${opts.pageSize ?? 1000}`;
    while (path !== undefined && out.length < max) {
      const res = await this.request(registry, path, { scope: 'registry:catalog:*', signal: opts.signal });
      const body = await readAll(res, 8 * 1024 * 1024, () => new Error('catalog response is larger than 8 MiB'));
      const j = JSON.parse(body.toString('utf8')) as { repositories?: unknown };
      const page = Array.isArray(j.repositories) ? j.repositories.filter((r): r is string => typeof r === 'string') : [];
      out.push(...page);
      const link = res.headers.link;
      const next = typeof link === 'string' ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link)?.[1] : undefined;
      path = next !== undefined && next.startsWith('/v2/_catalog?') && page.length > 0 ? next : undefined;
    }
    return out.slice(0, max);
  }

  /** Tags of a repository (GET /v2/<name>/tags/list). */
  async tags(registry: string, repository: string, opts: { signal?: AbortSignal } = {}): Promise<string[]> {
    const res = await this.request(registry, `/v2/${repository}/tags/list`, { scope: `repository:${repository}:pull`, signal: opts.signal });
    const body = await readAll(res, 8 * 1024 * 1024, () => new Error('tags response is larger than 8 MiB'));
    const j = JSON.parse(body.toString('utf8')) as { tags?: unknown };
    return Array.isArray(j.tags) ? j.tags.filter((t): t is string => typeof t === 'string') : [];
  }
}
