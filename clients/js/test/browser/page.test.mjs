// The page evd serves at `/`, driven in headless Chromium by two people in two browser contexts
// (two tabs' worth of sessionStorage: two users): an organizer and an attendee, on a real
// `evd serve` (EVD_BIN). Each step waits for what the other person must see, within bounds.
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT, expectAttr, expectCount, expectText, launchBrowser, screenshot, startEvd, waitUntil } from './harness.mjs';

const VIEWPORT = { width: 1360, height: 900 };

describe('the page at /', { timeout: 240_000 }, () => {
  let server, browser, org, att;
  const pageErrors = [];

  before(async () => {
    server = await startEvd();
    browser = await launchBrowser();
    const open = async (who) => {
      const context = await browser.newContext({ viewport: VIEWPORT });
      const page = await context.newPage();
      page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
      // (A REST answer like 404 for "not on the waitlist" is logged by the browser; it is no error.)
      page.on('console', (m) => m.type() === 'error' && !/Failed to load resource/.test(m.text()) && pageErrors.push(`${who} console: ${m.text()}`));
      // The page must load nothing from anywhere but evd.
      page.on('request', (r) => {
        const u = new URL(r.url());
        if (!['data:', 'blob:'].includes(u.protocol) && u.origin !== server.url && u.origin !== server.url.replace('http', 'ws'))
          pageErrors.push(`${who} requested ${r.url()}`);
      });
      return page;
    };
    org = await open('organizer');
    att = await open('attendee');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const signIn = async (page, user, role) => {
    await page.getByTestId('dev-banner').waitFor();
    assert.equal(await page.getByTestId('dev-banner').textContent(), 'Development mode: demo sign-in, do not use in production');
    await page.getByTestId('signin-user').fill(user);
    await page.getByTestId('signin-role').selectOption(role);
    await page.getByTestId('signin-submit').click();
    await expectText(page.getByTestId('whoami'), user);
    await expectAttr(page.getByTestId('conn-state'), 'data-state', 'connected');
  };

  it('signs in an organizer, keeps bad input, and creates a demo event with a session', async () => {
    await org.goto(server.url + '/');
    await org.getByTestId('signin-user').fill('bad name');
    await org.getByTestId('signin-submit').click();
    await expectText(org.getByTestId('signin-error'), 'without spaces');
    assert.equal(await org.getByTestId('signin-user').inputValue(), 'bad name', 'the text stays for correction');

    await signIn(org, 'olivia', 'organizer');
    await org.getByTestId('demo-event-name').fill('RustConf Live');
    await org.getByTestId('demo-session-title').fill('Keynote');
    await org.getByTestId('demo-capacity').fill('50');
    await org.getByTestId('demo-create').click();
    await expectText(org.getByTestId('session-title'), 'Keynote');
    assert.match(new URL(org.url()).hash, /^#session=/, 'the session is in the URL hash');
    await org.getByTestId('manage').waitFor();
  });

  it('lets an attendee open the shared link, take a seat, and both appear in each other’s presence', async () => {
    await att.goto(org.url());
    await signIn(att, 'alice', 'attendee');
    await expectText(att.getByTestId('session-title'), 'Keynote');
    await att.getByTestId('get-ticket').click();
    await att.getByTestId('my-ticket').waitFor();

    for (const [page, other] of [
      [org, 'alice'],
      [att, 'olivia'],
    ]) {
      await page.locator(`[data-testid=presence-member][data-user="${other}"]`).waitFor({ timeout: 20_000 });
      await expectText(page.getByTestId('presence-count'), '2');
    }
    await expectText(org.getByTestId('presence-counts'), '2 people in this session');
    // The seat alice took shows on both screens.
    await expectText(org.getByTestId('manage-seats'), '1 of 50 seats taken');
    await expectText(att.getByTestId('session-seats'), '49 of 50 seats free');
    // The organizer's ticket list has the seat the attendee took on their own.
    await org.locator('[data-testid=ticket-row][data-user=alice]').waitFor();
  });

  it('carries chat both ways, in order, and keeps a message the server refused', async () => {
    await att.getByTestId('chat-input').fill('Hello from alice');
    await att.getByTestId('chat-send').click();
    await expectText(org.getByTestId('chat-log'), 'Hello from alice');
    await waitUntil(async () => (await att.getByTestId('chat-input').inputValue()) === '', { what: 'the sent text to leave the box' });

    await org.getByTestId('chat-input').fill('Welcome, alice!');
    await org.getByTestId('chat-input').press('Enter');
    await expectText(att.getByTestId('chat-log'), 'Welcome, alice!');
    const texts = await att.locator('[data-testid=chat-message] .text').allTextContents();
    assert.deepEqual(texts.slice(-2), ['Hello from alice', 'Welcome, alice!']);

    // Over the server's limit (4096 bytes): refused, and the text stays in the box.
    const long = 'é'.repeat(3000);
    await att.getByTestId('chat-input').fill(long);
    await att.getByTestId('chat-send').click();
    await expectText(att.getByTestId('chat-error'), 'Not sent');
    assert.equal(await att.getByTestId('chat-input').inputValue(), long);
    await att.getByTestId('chat-input').fill('');
  });

  it('shows a poll the organizer opens to the attendee, and both see the tally move', async () => {
    await org.getByTestId('poll-question').fill('Which language next?');
    await org.getByTestId('poll-options').fill('Rust\nGo\nZig');
    await org.getByTestId('poll-create').click();

    const attPoll = att.getByTestId('poll').filter({ hasText: 'Which language next?' });
    const orgPoll = org.getByTestId('poll').filter({ hasText: 'Which language next?' });
    await attPoll.waitFor();
    await expectText(attPoll.getByTestId('poll-total'), '0 votes');

    await att.getByRole('button', { name: 'Vote for Rust' }).click();
    for (const poll of [attPoll, orgPoll]) {
      await expectText(poll.getByTestId('poll-total'), '1 vote');
      await expectText(poll.locator('[data-option="Rust"] [data-testid=poll-count]'), '1 vote · 100%');
    }
    await org.getByRole('button', { name: 'Vote for Go' }).click();
    for (const poll of [attPoll, orgPoll]) {
      await expectText(poll.getByTestId('poll-total'), '2 votes');
      await expectText(poll.locator('[data-option="Rust"] [data-testid=poll-count]'), '1 vote · 50%');
      await expectText(poll.locator('[data-option="Go"] [data-testid=poll-count]'), '1 vote · 50%');
    }
    await waitUntil(async () => (await attPoll.locator('[data-option="Rust"] .fill').getAttribute('style'))?.includes('50%'), {
      what: 'the bar at 50%',
    });
  });

  it('lets the organizer hide a question, which disappears for the attendee', async () => {
    for (const text of ['Will the slides be online?', 'Buy cheap watches here']) {
      await att.getByTestId('question-input').fill(text);
      await att.getByTestId('question-ask').click();
      await att.getByTestId('question').filter({ hasText: text }).waitFor();
      await org.getByTestId('question').filter({ hasText: text }).waitFor();
    }
    await org.getByRole('button', { name: 'Upvote: Will the slides be online?' }).click();
    await expectText(att.getByTestId('question').filter({ hasText: 'slides' }).getByTestId('question-votes'), '1 vote');

    await org.getByRole('button', { name: 'Hide: Buy cheap watches here' }).click();
    await expectCount(att.getByTestId('question').filter({ hasText: 'cheap watches' }), 0);
    await expectText(org.getByTestId('question').filter({ hasText: 'cheap watches' }), 'hidden from attendees');
    await expectCount(att.getByTestId('question').filter({ hasText: 'slides' }), 1);

    await att.getByTestId('chat-input').fill('Great keynote so far!');
    await att.getByTestId('chat-send').click();
    await expectText(org.getByTestId('chat-log'), 'Great keynote so far');
    const shot = await screenshot(att, 'attendee-session');
    // The README's picture: refreshed on request only, so test runs leave the tree clean.
    if (process.env.EVD_UPDATE_SCREENSHOTS === '1') copyFileSync(shot, join(ROOT, 'docs', 'screenshot-attendee.png'));
    await screenshot(org, 'organizer-session', { fullPage: true });
  });

  it('puts the attendee on the waitlist of a full session and gives them the seat the organizer frees', async () => {
    // The organizer adds a one-seat session and gives its seat away.
    await org.getByRole('link', { name: '← All events' }).click();
    const event = org.getByTestId('event').filter({ hasText: 'RustConf Live' });
    await event.locator('summary').click();
    await event.getByTestId('add-session-title').fill('Workshop');
    await event.getByTestId('add-session-capacity').fill('1');
    await event.getByTestId('add-session-submit').click();
    await org.getByTestId('session-link').filter({ hasText: 'Workshop' }).click();
    await expectText(org.getByTestId('session-title'), 'Workshop');
    await org.getByTestId('ticket-user').fill('guest');
    await org.getByTestId('ticket-issue').click();
    await org.locator('[data-testid=ticket-row][data-user=guest]').waitFor();
    await expectText(org.getByTestId('manage-seats'), '1 of 1 seats taken');

    // The attendee finds it full and waits in line.
    await att.getByRole('link', { name: '← All events' }).click();
    await att.getByTestId('session-link').filter({ hasText: 'Workshop' }).click();
    await expectText(att.getByTestId('session-title'), 'Workshop');
    await att.getByTestId('session-full').waitFor();
    await att.getByTestId('join-waitlist').click();
    await expectText(att.getByTestId('waitlist-status'), 'number 1 in line');
    await screenshot(att, 'attendee-waitlist');

    // A cancelled ticket's seat is offered to the first in line, pushed to their page.
    await org.getByRole('button', { name: 'Cancel the ticket of guest' }).click();
    const offer = att.getByTestId('offer');
    await offer.waitFor();
    await expectText(offer, 'Workshop');
    await screenshot(att, 'attendee-offer');
    await offer.getByTestId('offer-accept').click();

    const ticket = att.getByTestId('my-ticket');
    await ticket.waitFor();
    const id = await ticket.getAttribute('data-ticket-id');
    assert.ok(id, 'the ticket id is shown');
    await expectText(ticket, id);
    await expectText(att.getByTestId('offer-accepted'), id);
    // With the seat, the live room opens: the attendee is present in the Workshop.
    await org.locator('[data-testid=presence-member][data-user=alice]').waitFor();
    await expectText(org.getByTestId('manage-seats'), '1 of 1 seats taken');
    // The organizer's list has the new ticket, and guest's cancelled one is gone from it.
    await org.locator(`[data-testid=ticket-row][data-ticket-id="${id}"][data-user=alice]`).waitFor();
    assert.equal(await org.locator('[data-testid=ticket-row][data-user=guest]').count(), 0);
    await screenshot(att, 'attendee-ticket');
    await screenshot(org, 'organizer-workshop', { fullPage: true });
  });

  it('raised no page errors and loaded nothing from elsewhere', () => {
    assert.deepEqual(pageErrors, []);
  });
});
