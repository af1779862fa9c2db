// A free TCP port on 127.0.0.1: bind port 0, read the port, close. evd cannot listen on port 0
// and report it, so this is how each test gets its own port.
import { createServer } from 'node:net';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
