/**
 * A small HTTP proxy in front of the real test registry that can count,
 * rewrite, truncate or cut off responses, and optionally require Bearer tokens
 * that it issues itself at /token (a tiny token server).
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface Upstream {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Send the headers (with the full Content-Length) and this many body bytes, then close the socket. */
  dropAfter?: number;
}

export interface SeenRequest {
  method: string;
  path: string;
  range: string | undefined;
  authorization: string | undefined;
}

export interface ProxyOptions {
  transform?: (req: SeenRequest, up: Upstream) => Reply | undefined;
  /** Require `Authorization: Bearer <token>` issued by /token (for these Basic credentials). */
  bearer?: { username: string; password: string; expiresIn?: number };
  /** Serve HTTPS with this key and certificate (PEM). */
  tls?: { key: string; cert: string };
  /** Delay before answering blob GETs, in ms (to observe concurrency). */
  blobDelayMs?: number;
}

export interface Proxy {
  url: string;
  host: string;
  requests: SeenRequest[];
  tokensIssued: number;
  /** Most blob GETs in flight at once. */
  maxConcurrentBlobs: number;
  /** Forgets every issued token (as if they were revoked). */
  revokeTokens(): void;
  stop(): Promise<void>;
}

export async function startProxy(target: string, opts: ProxyOptions = {}): Promise<Proxy> {
  const requests: SeenRequest[] = [];
  const tokens = new Set<string>();
  const state = { tokensIssued: 0, blobsInFlight: 0, maxConcurrentBlobs: 0 };
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const seen: SeenRequest = { method: req.method ?? 'GET', path: req.url ?? '/', range: req.headers.range, authorization: req.headers.authorization };
    requests.push(seen);
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (opts.bearer) {
      if (seen.path.startsWith('/token')) {
        const want = `Basic ${Buffer.from(`${opts.bearer.username}:${opts.bearer.password}`).toString('base64')}`;
        if (seen.authorization !== want) {
          res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"details":"bad credentials"}');
          return;
        }
        const token = `tok-${Math.random().toString(36).slice(2)}`;
        tokens.add(token);
        state.tokensIssued++;
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token, expires_in: opts.bearer.expiresIn ?? 300 }));
        return;
      }
      const auth = seen.authorization ?? '';
      if (!auth.startsWith('Bearer ') || !tokens.has(auth.slice(7))) {
        const m = /^\/v2\/(.+)\/(manifests|blobs|tags)\//.exec(seen.path);
        const scope = m ? `repository:${m[1]}:pull` : 'registry:catalog:*';
        res.writeHead(401, {
          'Content-Type': 'application/json',
          'WWW-Authenticate': `Bearer realm="http://${host}/token",service="berth-test",scope="${scope}"`,
        }).end('{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}');
        return;
      }
    }
    const isBlob = seen.method === 'GET' && /\/blobs\/sha256:/.test(seen.path);
    if (isBlob) {
      state.blobsInFlight++;
      state.maxConcurrentBlobs = Math.max(state.maxConcurrentBlobs, state.blobsInFlight);
      res.on('close', () => state.blobsInFlight--);
    }
    const headers = { ...req.headers, host: new URL(target).host };
    delete headers.authorization;
    const up = http.request(new URL(seen.path, target), { method: seen.method, headers }, (ures) => {
      const parts: Buffer[] = [];
      ures.on('data', (c: Buffer) => parts.push(c));
      ures.on('end', () => {
        const upstream: Upstream = { status: ures.statusCode ?? 502, headers: ures.headers, body: Buffer.concat(parts) };
        const reply = opts.transform?.(seen, upstream) ?? {};
        const body = reply.body ?? upstream.body;
        const outHeaders: Record<string, string> = {};
        for (const [k, v] of Object.entries(upstream.headers)) {
          if (v === undefined || k === 'transfer-encoding' || k === 'connection' || k === 'content-length') continue;
          outHeaders[k] = Array.isArray(v) ? v.join(', ') : v;
        }
        if (typeof outHeaders.location === 'string') outHeaders.location = outHeaders.location.replace(new URL(target).host, host);
        Object.assign(outHeaders, reply.headers ?? {});
        if (seen.method !== 'HEAD') outHeaders['content-length'] = String(reply.dropAfter !== undefined ? upstream.body.length : body.length);
        const delay = isBlob ? (opts.blobDelayMs ?? 0) : 0;
        setTimeout(() => send(reply, body, outHeaders, upstream), delay);
      });
    });
    const send = (reply: Reply, body: Buffer, outHeaders: Record<string, string>, upstream: Upstream): void => {
        res.writeHead(reply.status ?? upstream.status, outHeaders);
        if (reply.dropAfter !== undefined) {
          res.write(body.subarray(0, reply.dropAfter), () => res.socket?.destroy());
          return;
        }
        res.end(seen.method === 'HEAD' ? undefined : body);
    };
    up.on('error', () => res.destroy());
    req.pipe(up);
  };
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    get tokensIssued() {
      return state.tokensIssued;
    },
    get maxConcurrentBlobs() {
      return state.maxConcurrentBlobs;
    },
    revokeTokens: () => tokens.clear(),
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
