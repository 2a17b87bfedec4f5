/**
 * Sockets bound in another network namespace. A socket stays in the
 * namespace it was created in, so a short-lived child process started in
 * the namespace (`nsenter --net=`) binds them and passes them back over the
 * IPC channel; the agent then serves on them from its own namespace. Without
 * a namespace path the sockets are bound here directly.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { NetToolError } from './net.js';

export interface BoundSockets {
  udp: dgram.Socket;
  tcp: net.Server;
}

const BIND_TIMEOUT_MS = 15_000;

function bindHere(address: string, port: number): Promise<BoundSockets> {
  return new Promise((resolve, reject) => {
    const udp = dgram.createSocket({ type: 'udp4' });
    udp.once('error', (e) => reject(new NetToolError('bind', `UDP ${address}:${port}: ${e.message}`, { cause: e })));
    udp.bind({ address, port, exclusive: true }, () => {
      const tcp = net.createServer();
      tcp.once('error', (e) => {
        udp.close();
        reject(new NetToolError('listen', `TCP ${address}:${port}: ${e.message}`, { cause: e }));
      });
      tcp.listen({ host: address, port, exclusive: true }, () => resolve({ udp, tcp }));
    });
  });
}

/**
 * Binds a UDP socket and a TCP listener on `address:port` in the network
 * namespace at `netnsPath` (this process's own when undefined). Rejects with
 * NetToolError naming the address when either cannot be bound (e.g. the
 * address is not on an interface there, or the port is taken).
 */
export function bindInNetns(address: string, port: number, netnsPath?: string): Promise<BoundSockets> {
  if (!net.isIPv4(address)) return Promise.reject(new NetToolError('bind', `expected an IPv4 address, got "${address}"`));
  if (netnsPath === undefined) return bindHere(address, port);
  const child = fileURLToPath(new URL('./bind-child.js', import.meta.url));
  return new Promise((resolve, reject) => {
    const proc = spawn('nsenter', [`--net=${netnsPath}`, '--', process.execPath, child, address, String(port)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let udp: dgram.Socket | undefined;
    let tcp: net.Server | undefined;
    let error = '';
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 2000) stderr += d.toString('utf8');
    });
    const timer = setTimeout(() => {
      error ||= `timed out after ${BIND_TIMEOUT_MS} ms`;
      proc.kill('SIGKILL');
    }, BIND_TIMEOUT_MS);
    proc.on('message', (msg: { kind?: string; error?: string }, handle: unknown) => {
      if (typeof msg.error === 'string') error = msg.error;
      else if (msg.kind === 'udp' && handle instanceof dgram.Socket) udp = handle;
      else if (msg.kind === 'tcp' && handle instanceof net.Server) tcp = handle;
    });
    proc.on('error', (e) => {
      error ||= e.message;
    });
    proc.on('close', (code) => {
      clearTimeout(timer);
      if (udp && tcp) {
        resolve({ udp, tcp });
        return;
      }
      udp?.close();
      tcp?.close();
      reject(new NetToolError('bind', `${address}:${port} in ${netnsPath}: ${error || stderr.trim() || `helper exited with ${code}`}`));
    });
  });
}
