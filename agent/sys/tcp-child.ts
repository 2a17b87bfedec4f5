/**
 * Child program of NetnsTcp (agent/sys/tcp.ts): started inside a network
 * namespace (`nsenter --net=PATH node tcp-child.js`), it stays up and, on
 * request from the parent over the IPC channel, opens TCP listeners and
 * outgoing TCP connections there and hands each to the parent (a socket
 * keeps the namespace it was made in).
 *
 * Requests:  {id, op: "listen", address, port}
 *            {id, op: "connect", address, port, timeoutMs, localAddress ("" = any)}
 * Replies:   {id, kind: "server"} + net.Server
 *            {id, kind: "socket"} + net.Socket (connected, not yet read from)
 *            {id, error, code?}
 * The child exits when the IPC channel closes (the parent stopped or died).
 */
import net from 'node:net';

interface Request {
  id?: unknown;
  op?: unknown;
  address?: unknown;
  port?: unknown;
  timeoutMs?: unknown;
  localAddress?: unknown;
}

const send = process.send?.bind(process);
if (!send) process.exit(1);

function reply(id: number, msg: Record<string, unknown>, handle?: net.Server | net.Socket): void {
  send?.({ id, ...msg }, handle, {}, () => {
    // The parent holds its own copy of a sent handle; close ours.
    if (handle instanceof net.Server) handle.close();
    else handle?.destroy();
  });
}

function validTarget(r: Request, allowPortZero: boolean): string | undefined {
  if (typeof r.address !== 'string' || !net.isIPv4(r.address)) return `expected an IPv4 address, got ${JSON.stringify(r.address)}`;
  const min = allowPortZero ? 0 : 1;
  if (typeof r.port !== 'number' || !Number.isInteger(r.port) || r.port < min || r.port > 65535) return `expected a port from ${min} to 65535, got ${JSON.stringify(r.port)}`;
  return undefined;
}

process.on('message', (r: Request) => {
  if (typeof r !== 'object' || r === null || typeof r.id !== 'number') return;
  const id = r.id;
  if (r.op === 'listen') {
    const bad = validTarget(r, true);
    if (bad) return reply(id, { error: bad });
    const server = net.createServer();
    server.once('error', (e: NodeJS.ErrnoException) => reply(id, { error: `listen on TCP ${String(r.address)}:${String(r.port)}: ${e.message}`, code: e.code ?? '' }));
    server.listen({ host: r.address as string, port: r.port as number, exclusive: true }, () => reply(id, { kind: 'server' }, server));
    return;
  }
  if (r.op === 'connect') {
    const bad = validTarget(r, false);
    if (bad) return reply(id, { error: bad });
    const timeoutMs = typeof r.timeoutMs === 'number' && r.timeoutMs > 0 ? r.timeoutMs : 5000;
    const local = typeof r.localAddress === 'string' && net.isIPv4(r.localAddress) ? { localAddress: r.localAddress } : {};
    const socket = net.connect({ host: r.address as string, port: r.port as number, ...local });
    // Paused before it connects: nothing is read here (bytes stay in the kernel for the parent).
    socket.pause();
    const timer = setTimeout(() => {
      socket.destroy();
      reply(id, { error: `connect to ${String(r.address)}:${String(r.port)}: timed out after ${timeoutMs} ms`, code: 'ETIMEDOUT' });
    }, timeoutMs);
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reply(id, { error: `connect to ${String(r.address)}:${String(r.port)}: ${e.message}`, code: e.code ?? '' });
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      reply(id, { kind: 'socket' }, socket);
    });
    return;
  }
  reply(id, { error: `unknown op ${JSON.stringify(r.op)}` });
});
process.on('disconnect', () => process.exit(0));
