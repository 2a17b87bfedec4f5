/**
 * A small HTTP proxy in front of the real test registry that can count,
 * rewrite, truncate or cut off responses, and optionally require Bearer tokens
 * that it issues itself at /token (a tiny token server).
 */
import http, { type IncomingHttpHeaders } from 'node:http';
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
}

export interface Proxy {
  url: string;
  host: string;
  requests: SeenRequest[];
  tokensIssued: number;
  stop(): Promise<void>;
}

export async function startProxy(target: string, opts: ProxyOptions = {}): Promise<Proxy> {
  const requests: SeenRequest[] = [];
  const tokens = new Set<string>();
  const state = { tokensIssued: 0 };
  const server = http.createServer((req, res) => {
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
        res.writeHead(reply.status ?? upstream.status, outHeaders);
        if (reply.dropAfter !== undefined) {
          res.write(body.subarray(0, reply.dropAfter), () => res.socket?.destroy());
          return;
        }
        res.end(seen.method === 'HEAD' ? undefined : body);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    get tokensIssued() {
      return state.tokensIssued;
    },
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
