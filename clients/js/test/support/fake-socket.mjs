// A scripted WebSocket for client unit tests without a server: each instance records the frames
// the client sends (decoded JSON), and the test plays the server with hello(), push() and
// closeFromServer().
export class FakeSocketFactory {
  constructor() {
    this.sockets = [];
    const factory = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url, protocols) {
        this.url = url;
        this.protocols = protocols;
        this.sent = [];
        this.closed = null;
        factory.sockets.push(this);
      }
      send(frame) {
        this.sent.push(JSON.parse(frame));
      }
      close(code) {
        this.closed = code ?? 1000;
      }
    };
  }

  get last() {
    return this.sockets.at(-1);
  }
}

/** Server side of one fake socket. */
export function hello(sock, fields = {}) {
  push(sock, { ev: 'HELLO', conn: '1', node: 'n', user: 'u1', heartbeat_ms: 25_000, server_time: Date.now(), ...fields });
}

export function push(sock, evOrArray) {
  sock.onmessage({ data: JSON.stringify(evOrArray) });
}

export function closeFromServer(sock, code, reason = '') {
  sock.onclose({ code, reason });
}

/** The ops the client sent with this `op` name. */
export function sentOps(sock, op) {
  return sock.sent.filter((f) => f.op === op);
}
