// Serves this page and the client's bundle on http://127.0.0.1:8080/ (PORT to change it).
// Start a tether server beside it: build/tether serve --echo
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const files = {
  '/': [join(here, 'index.html'), 'text/html; charset=utf-8'],
  '/tether.min.js': [join(here, '..', '..', 'clients', 'js', 'dist', 'tether.min.js'), 'text/javascript'],
};
const port = Number(process.env.PORT ?? 8080);
createServer((req, res) => {
  const f = files[new URL(req.url, 'http://x').pathname];
  if (!f) {
    res.writeHead(404).end('not found\n');
    return;
  }
  try {
    res.writeHead(200, { 'content-type': f[1], 'cache-control': 'no-store' }).end(readFileSync(f[0]));
  } catch {
    res.writeHead(500).end('build the bundle first: cd clients/js && npm ci && npm run build\n');
  }
}).listen(port, '127.0.0.1', () => console.log(`open http://127.0.0.1:${port}/?server=ws://127.0.0.1:9000/ (with build/tether serve --echo running)`));
