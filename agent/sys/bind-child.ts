/**
 * Child program of bindInNetns (agent/sys/bind.ts): started inside a network
 * namespace (`nsenter --net=PATH node bind-child.js ADDRESS PORT`), it binds
 * a UDP socket and a TCP listener on ADDRESS:PORT there and hands both to the
 * parent over the IPC channel (a socket keeps the namespace it was made in),
 * then exits. Messages: {kind:"udp"} + socket, {kind:"tcp"} + server, or
 * {error}.
 */
import dgram from 'node:dgram';
import net from 'node:net';

function fail(msg: string): void {
  if (process.send) process.send({ error: msg }, undefined, {}, () => process.exit(1));
  else process.exit(1);
}

const [address, portText] = process.argv.slice(2);
const port = Number(portText);
if (address === undefined || !net.isIPv4(address) || !Number.isInteger(port) || port < 1 || port > 65535 || !process.send) {
  fail(`usage: bind-child IPV4 PORT (got ${JSON.stringify(process.argv.slice(2))})`);
} else {
  const send = process.send.bind(process);
  const udp = dgram.createSocket({ type: 'udp4' });
  udp.once('error', (e) => fail(`failed to bind UDP ${address}:${port}: ${e.message}`));
  udp.bind({ address, port, exclusive: true }, () => {
    const tcp = net.createServer();
    tcp.once('error', (e) => fail(`failed to listen on TCP ${address}:${port}: ${e.message}`));
    tcp.listen({ host: address, port, exclusive: true }, () => {
      send({ kind: 'udp' }, udp, {}, () => {
        send({ kind: 'tcp' }, tcp, {}, () => {
          udp.close();
          tcp.close();
          process.disconnect();
        });
      });
    });
  });
}
