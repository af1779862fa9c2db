// The admin view at /admin, in headless Chromium against a real `evd serve` (EVD_BIN): an owner
// sees the node, the org's connections and rooms with their members, and the busiest rooms,
// updating live as SDK clients (Node, `ws`) join and chat; an organizer is refused, on the page
// and by the endpoint. EVD_UPDATE_SCREENSHOTS=1 refreshes docs/screenshot-admin.png.
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { closeClients, makeClient } from '../support/clients.mjs';
import { ROOT, devToken, expectCount, expectText, launchBrowser, screenshot, startEvd, waitUntil } from './harness.mjs';

const VIEWPORT = { width: 1280, height: 860 };
/** The nodes publish (and the page polls) this often in these tests, ms. */
const SNAPSHOT_EVERY_MS = 250;

describe('the admin view at /admin', { timeout: 180_000 }, () => {
  let server, browser, owner, organizer;
  const pageErrors = [];
  const clients = [];

  before(async () => {
    server = await startEvd({ EVD_ADMIN_SNAPSHOT_EVERY_MS: String(SNAPSHOT_EVERY_MS), EVD_ADMIN_SNAPSHOT_TTL_MS: '3000' });
    browser = await launchBrowser();
    const open = async (who) => {
      const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
      page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
      // The refused stats request is logged by the browser as a failed resource; that is no error.
      page.on('console', (m) => m.type() === 'error' && !/Failed to load resource/.test(m.text()) && pageErrors.push(`${who} console: ${m.text()}`));
      return page;
    };
    owner = await open('owner');
    organizer = await open('organizer');
  });

  after(async () => {
    closeClients();
    await browser?.close();
    await server?.stop();
  });

  /** An SDK client of org demo in `rooms`, connected and joined. */
  const member = async (user, rooms) => {
    const c = makeClient({ url: server.url.replace('http', 'ws') + '/ws', token: await devToken(server, user, 'organizer') });
    const joined = rooms.map((r) => {
      const room = c.room(r);
      return new Promise((resolve) => room.on('joined', resolve));
    });
    c.connect();
    await Promise.all(joined);
    clients.push(c);
    return c;
  };

  const signIn = async (page, user, role) => {
    await page.getByTestId('signin-user').fill(user);
    await page.getByTestId('signin-role').selectOption(role);
    await page.getByTestId('signin-submit').click();
    await expectText(page.getByTestId('whoami'), user);
  };

  /** The members cell of `room` in the rooms table (undefined while it is not listed). */
  const members = (page, room) =>
    page.locator(`[data-testid=admin-rooms] [data-testid=admin-room][data-room="${room}"] [data-field=members]`);

  it('shows an owner the node, the org’s connections and its rooms, live', async () => {
    await member('ada', ['session:keynote', 'event:rustconf']);
    await member('bo', ['session:keynote']);
    await member('cy', ['session:workshop']);

    await owner.goto(server.url + '/admin');
    await signIn(owner, 'olivia', 'owner');
    await owner.getByTestId('admin').waitFor();
    await expectCount(owner.getByTestId('admin-node'), 1);
    // Three SDK clients and the owner's own page.
    await expectText(owner.getByTestId('admin-total-connections'), /^4$/);
    await expectText(owner.getByTestId('admin-total-rooms'), /^3$/);
    await expectText(members(owner, 'session:keynote'), /^2$/);
    await expectText(members(owner, 'session:workshop'), /^1$/);
    await expectText(members(owner, 'event:rustconf'), /^1$/);

    // Live: a fourth member joins the keynote, and the page shows it without a reload.
    const polls = Number(await owner.getByTestId('admin-body').getAttribute('data-polls'));
    await member('di', ['session:keynote']);
    await expectText(members(owner, 'session:keynote'), /^3$/);
    await expectText(owner.getByTestId('admin-total-connections'), /^5$/);
    assert.ok(Number(await owner.getByTestId('admin-body').getAttribute('data-polls')) > polls, 'updated by polling');

    // Chat in the workshop makes it the busiest room while it lasts.
    const cy = clients[2];
    const chatter = setInterval(() => cy.room('session:workshop').send('hello').catch(() => {}), 50);
    try {
      await waitUntil(
        async () => (await owner.locator('[data-testid=admin-traffic] [data-testid=admin-room]').first().getAttribute('data-room', { timeout: 1000 })) === 'session:workshop',
        { what: 'the workshop first among the busiest rooms' },
      );
      const rate = Number(await owner.locator('[data-testid=admin-traffic] [data-room="session:workshop"] [data-field=rate]').textContent());
      assert.ok(rate > 0, `a rate above zero: ${rate}`);
      const shot = await screenshot(owner, 'admin', { fullPage: true });
      if (process.env.EVD_UPDATE_SCREENSHOTS === '1') copyFileSync(shot, join(ROOT, 'docs', 'screenshot-admin.png'));
    } finally {
      clearInterval(chatter);
    }
    // An owner is offered the view from the page's header.
    await owner.goto(server.url + '/');
    await owner.getByTestId('admin-link').waitFor();
    assert.equal(await owner.getByTestId('admin-link').getAttribute('href'), '/admin');
  });

  it('refuses an organizer, on the page and at the endpoint', async () => {
    await organizer.goto(server.url + '/admin');
    await signIn(organizer, 'oscar', 'organizer');
    await expectText(organizer.getByTestId('admin-refused'), 'for the owners of an org');
    await expectText(organizer.getByTestId('admin-refused'), '403');
    assert.equal(await organizer.getByTestId('admin-node').count(), 0);
    assert.equal(await organizer.getByTestId('admin-link').isVisible(), false, 'no link for a non-owner');

    const res = await fetch(server.url + '/admin/stats', { headers: { authorization: 'Bearer ' + (await devToken(server, 'oscar', 'organizer')) } });
    assert.equal(res.status, 403);
    assert.equal((await res.json()).error, 'forbidden');
  });

  it('raised no page errors', () => {
    assert.deepEqual(pageErrors, []);
  });
});
