// A page from another origin (a node http server on another port) that calls evd's REST API
// with a bearer token and opens its WebSocket: both work when that origin is listed in
// EVD_CORS_ALLOWED_ORIGINS, and both are refused when it is not (CORS fails the fetch, the
// upgrade's Origin check refuses the socket).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { devToken, freePort, launchBrowser, startEvd, waitUntil } from './harness.mjs';

// The other origin's page: it reads the evd address and a token from its query string and
// reports what the REST call and the socket did in window.result.
const PAGE = `<!doctype html><meta charset="utf-8"><title>elsewhere</title><script>
const q = new URLSearchParams(location.search);
const evd = q.get('evd'), token = q.get('token');
window.result = { fetch: 'pending', ws: 'pending' };
fetch(evd + '/api/v1/events', { headers: { authorization: 'Bearer ' + token } })
  .then(async (r) => { window.result.fetch = 'status ' + r.status + ' ' + (await r.text()).slice(0, 60); })
  .catch((e) => { window.result.fetch = 'failed: ' + e.name; });
const ws = new WebSocket(evd.replace('http', 'ws') + '/ws?token=' + encodeURIComponent(token), ['evd.v1.json']);
ws.onmessage = (m) => { if (window.result.ws === 'pending' || window.result.ws === 'open') window.result.ws = JSON.parse(m.data).ev || 'message'; };
ws.onopen = () => { if (window.result.ws === 'pending') window.result.ws = 'open'; };
ws.onclose = (c) => { if (window.result.ws === 'pending') window.result.ws = 'closed ' + c.code; };
</script><p>a page elsewhere</p>`;

describe('a page on another origin', { timeout: 120_000 }, () => {
  let allowedPort, otherPort, sites = [], browser, listed, unlisted;

  before(async () => {
    // Two static sites: one origin evd will allow, one it will not.
    allowedPort = await freePort();
    otherPort = await freePort();
    for (const port of [allowedPort, otherPort]) {
      const site = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(PAGE);
      });
      await new Promise((resolve) => site.listen(port, '127.0.0.1', resolve));
      sites.push(site);
    }
    listed = await startEvd({ EVD_CORS_ALLOWED_ORIGINS: `http://127.0.0.1:${allowedPort}` });
    unlisted = await startEvd(); // default: the page's own origin only
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await listed?.stop();
    await unlisted?.stop();
    for (const site of sites) site.close();
  });

  /** Opens the page of `port` against `server` and waits until both calls have an outcome. */
  const visit = async (port, server) => {
    const token = await devToken(server, 'visitor', 'attendee');
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${port}/?evd=${encodeURIComponent(server.url)}&token=${encodeURIComponent(token)}`);
      return await waitUntil(
        async () => {
          const r = await page.evaluate(() => window.result);
          return r.fetch !== 'pending' && r.ws !== 'pending' && r.ws !== 'open' ? r : null;
        },
        { what: 'both calls to finish' },
      );
    } finally {
      await context.close();
    }
  };

  it('may call the REST API and open the socket when its origin is allowed', async () => {
    const r = await visit(allowedPort, listed);
    assert.match(r.fetch, /^status 200 \{"items"/, `REST: ${r.fetch}`);
    assert.equal(r.ws, 'HELLO', `socket: ${r.ws}`);
  });

  it('is refused both when its origin is not listed', async () => {
    const other = await visit(otherPort, listed);
    assert.match(other.fetch, /^failed: TypeError/, `REST: ${other.fetch}`);
    assert.match(other.ws, /^closed /, `socket: ${other.ws}`);
  });

  it('is refused both by a server with the default setting (its own origin only)', async () => {
    const r = await visit(allowedPort, unlisted);
    assert.match(r.fetch, /^failed: TypeError/, `REST: ${r.fetch}`);
    assert.match(r.ws, /^closed /, `socket: ${r.ws}`);
  });

  it('still serves its own page to its own origin', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(unlisted.url + '/');
      await page.getByTestId('dev-banner').waitFor();
      const res = await page.evaluate(async () => (await fetch('/config.json')).json());
      assert.equal(res.ws, '/ws');
    } finally {
      await page.close();
    }
  });
});
