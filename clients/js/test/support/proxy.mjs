// A TCP proxy from node:net between a client and evd, for faults the server cannot make:
// killAll() destroys every connection (the client sees the socket die), refuse makes new
// connections fail at once (the client stays disconnected while the test acts), and
// blackhole(dir) silently discards bytes in one direction ('up' = client to server, 'down',
// 'both') on the connections open now, as a dead network would.
import { connect, createServer } from 'node:net';

export class TcpProxy {
  static start(targetPort) {
    const p = new TcpProxy(targetPort);
    return new Promise((resolve, reject) => {
      p.server.on('error', reject);
      p.server.listen(0, '127.0.0.1', () => {
        p.port = p.server.address().port;
        resolve(p);
      });
    });
  }

  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.accepted = 0;
    this.refuse = false;
    this.server = createServer((client) => this.accept(client));
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  accept(client) {
    this.accepted++;
    if (this.refuse) return void client.destroy();
    const upstream = connect(this.targetPort, '127.0.0.1');
    const pair = { client, upstream, up: true, down: true };
    this.pairs.add(pair);
    client.on('data', (d) => pair.up && upstream.write(d));
    upstream.on('data', (d) => pair.down && client.write(d));
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }

  /** Destroys every open connection, both sides. */
  killAll() {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  /** From now on, on the open connections, drop the bytes going 'up', 'down' or 'both'. */
  blackhole(dir) {
    for (const pair of this.pairs) {
      if (dir === 'up' || dir === 'both') pair.up = false;
      if (dir === 'down' || dir === 'both') pair.down = false;
    }
  }

  get open() {
    return this.pairs.size;
  }

  close() {
    this.killAll();
    return new Promise((r) => this.server.close(() => r()));
  }
}
