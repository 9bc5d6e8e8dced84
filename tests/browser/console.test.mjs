// Browser tests of the console's agent management (docs/web.md, "Console"): invitations followed from
// the mail outbox, role changes, removal with confirmation, and presence without reloading. One
// platform (`assist up` with a 3-second presence timeout) serves every test of this file; each test
// has its own browser contexts and leaves output/console-<name>.png.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startPlatform, mailedLink, agentToken, api } from './lib/platform.mjs';
import { launch, waitForPath, visible, signIn, bodyText, withPage, eventually } from './lib/browser.mjs';

const PRESENCE_TIMEOUT_SECS = 3;
const PASSWORD = 'console-password-1';

let platform;
let browser;
let base;
let adminToken;

const rowOf = (page, email) => page.locator(`#agents tr[data-email="${email}"]`);

/** Waits until the row of `email` shows `text` in its cell `cell` (.presence, .role, .status). */
async function rowShows(page, email, cell, text, timeout = 10_000) {
  const locator = rowOf(page, email).locator(cell);
  await eventually(`${cell} of ${email} reading "${text}"`, async () => {
    const actual = (await locator.innerText({ timeout: 1_000 }).catch(() => '')).trim();
    return actual === text || `it reads "${actual}"`;
  }, timeout);
}

/** Opens a mailed link in `page`, sets the password twice, and lands on the done page. */
async function setPassword(page, link, password = PASSWORD) {
  const url = new URL(link);
  assert.equal(url.origin, base, `the link ${link} opens the gateway`);
  await page.goto(link);
  await visible(page, page.locator('#new-password'), `the form of ${url.pathname}`);
  await page.locator('#new-password').fill(password);
  await page.locator('#repeat-password').fill(password);
  await page.getByRole('button', { name: 'Save password' }).click();
  await visible(page, page.locator('#password-done'), 'the confirmation #password-done');
}

/** Invites `email` as `role` through the JSON API (as the administrator) and follows the mailed link. */
async function joined(open, email, role) {
  await api(base, 'POST', '/console/api/agents', {
    token: adminToken,
    body: { data: { type: 'console-agents', attributes: { email, role } } },
  });
  const page = await open();
  await setPassword(page, await mailedLink(platform, email));
  await page.context().close();
  return { email, password: PASSWORD };
}

/** Signs in at /console/login and lands on /console/agents. */
async function consoleSignIn(page, who) {
  await signIn(page, `${base}/console/login`, who);
  await waitForPath(page, '/console/agents');
  await visible(page, page.locator('#seat-counter'), 'the seat counter #seat-counter');
}

describe('the console in the browser', { concurrency: 1 }, () => {
  before(async () => {
    platform = await startPlatform({
      customers: 5,
      merchantUsers: 5,
      upFlags: [['--presence-timeout-secs', PRESENCE_TIMEOUT_SECS]],
      log: 'assist-console.log',
    });
    base = platform.baseUrl;
    adminToken = await agentToken(base, '', platform.admin);
    browser = await launch();
  }, { timeout: 150_000 });

  after(async () => {
    await browser?.close().catch(() => {});
    await platform?.stop();
  }, { timeout: 30_000 });

  test('an administrator invites an agent, who sets a password and signs in', { timeout: 90_000 }, async () => {
    await withPage(browser, 'console-invite', async (page, open, last) => {
      const email = 'new.agent@example.com';
      await consoleSignIn(page, platform.admin);
      await visible(page, page.locator('#my-role').filter({ hasText: 'administrator' }), '#my-role "administrator"');
      // The administrator licenses more seats.
      await page.locator('#seats-input').fill('30');
      await page.getByRole('button', { name: 'Set seats' }).click();
      await visible(page, page.locator('#console-message').filter({ hasText: 'Seats set to 30.' }), 'the notice of the seats');
      // (Counts may be up to a second old; the page refreshes them with each heartbeat.)
      await eventually('#seats-licensed reading 30', async () => {
        const text = await page.locator('#seats-licensed').innerText();
        return text === '30' || `it reads ${text}`;
      });
      const freeBefore = Number(await page.locator('#seats-free').innerText());
      const roles = await page.locator('#invite-role option').allInnerTexts();
      assert.deepEqual(roles, ['agent', 'supervisor', 'administrator'], 'roles an administrator may grant');

      await page.locator('#invite-email').fill(email);
      await page.locator('#invite-role').selectOption('agent');
      await page.getByRole('button', { name: 'Add agent' }).click();
      await visible(page, rowOf(page, email), `the row of ${email}`);
      await rowShows(page, email, '.status', 'invited');
      await visible(page, page.locator('#console-message').filter({ hasText: `Invited ${email}` }), 'the notice of the invitation');
      assert.equal(Number(await page.locator('#seats-free').innerText()), freeBefore - 1, 'the invitation takes a seat');

      const link = await mailedLink(platform, email);
      assert.match(new URL(link).pathname, /^\/set-password$/);
      const agent = await open();
      last(agent);
      // A mismatch changes nothing and says so.
      await agent.goto(link);
      await agent.locator('#new-password').fill(PASSWORD);
      await agent.locator('#repeat-password').fill(`${PASSWORD}x`);
      await agent.getByRole('button', { name: 'Save password' }).click();
      await visible(agent, agent.locator('#password-error').filter({ hasText: 'do not match' }), 'the mismatch error');
      await setPassword(agent, link);
      await agent.locator('#console-login-link').click();
      await waitForPath(agent, '/console/login');
      await consoleSignIn(agent, { email, password: PASSWORD });
      await visible(agent, agent.locator('#my-role').filter({ hasText: 'agent' }), '#my-role "agent"');
      await rowShows(agent, email, '.status', 'active');
      // An agent sees the list read-only.
      assert.equal(await agent.locator('#add-agent').count(), 0, 'no "Add agent" for an agent');
      assert.equal(await agent.locator('#agents button').count(), 0,
        `no buttons in the table for an agent: ${(await bodyText(agent)).slice(0, 300)}`);
      // The administrator's page follows without a reload.
      await rowShows(page, email, '.status', 'active');
      await rowShows(page, email, '.presence', 'online');
    });
  });

  test('a supervisor changes an agent\'s role with "Update access"', { timeout: 90_000 }, async () => {
    await withPage(browser, 'console-update-access', async (page, open) => {
      const supervisor = await joined(open, 'sam.supervisor@example.com', 'supervisor');
      const agent = await joined(open, 'rita.agent@example.com', 'agent');
      await consoleSignIn(page, supervisor);
      await visible(page, page.locator('#my-role').filter({ hasText: 'supervisor' }), '#my-role "supervisor"');
      const roles = await page.locator('#invite-role option').allInnerTexts();
      assert.deepEqual(roles, ['agent', 'supervisor'], 'roles a supervisor may grant');
      assert.equal(await page.locator('#seats-form').count(), 0, 'the seats form for a supervisor');
      // No controls on an administrator's row, nor on the supervisor's own.
      assert.equal(await rowOf(page, platform.admin.email).locator('button').count(), 0, 'buttons on the administrator row');
      assert.equal(await rowOf(page, supervisor.email).locator('button').count(), 0, 'buttons on the own row');

      const row = rowOf(page, agent.email);
      await visible(page, row, `the row of ${agent.email}`);
      await row.locator('select.role-select').selectOption('supervisor');
      await row.getByRole('button', { name: 'Update access' }).click();
      await visible(page, page.locator('#console-message').filter({ hasText: 'updated' }), 'the notice of the update');
      await rowShows(page, agent.email, '.role', 'supervisor');
      const roleNow = await rowOf(page, agent.email).getAttribute('data-role');
      assert.equal(roleNow, 'supervisor');
    });
  });

  test('removing an agent asks for the email first', { timeout: 90_000 }, async () => {
    await withPage(browser, 'console-remove', async (page, open) => {
      const agent = await joined(open, 'leo.leaving@example.com', 'agent');
      // The agent signs in once (and is active), in a browser of their own.
      const own = await open();
      await consoleSignIn(own, agent);
      await own.context().close();

      await consoleSignIn(page, platform.admin);
      const row = await visible(page, rowOf(page, agent.email), `the row of ${agent.email}`);
      await row.getByRole('button', { name: 'Remove user' }).click();
      const dialog = await visible(page, page.locator('dialog#remove-dialog'), 'the dialog #remove-dialog');
      await visible(page, dialog.locator('#remove-text').filter({ hasText: agent.email }), 'the dialog naming the agent');
      const remove = dialog.getByRole('button', { name: 'Remove', exact: true });
      assert.equal(await remove.isDisabled(), true, 'Remove before the email is typed');
      await dialog.locator('#remove-confirm').fill('someone.else@example.com');
      assert.equal(await remove.isDisabled(), true, 'Remove with another email typed');
      await dialog.locator('#remove-confirm').fill(agent.email);
      assert.equal(await remove.isDisabled(), false, 'Remove with the email typed');
      await remove.click();
      await visible(page, page.locator('#console-message').filter({ hasText: 'was removed' }), 'the notice of the removal');
      await eventually(`the row of ${agent.email} gone`, async () => (await rowOf(page, agent.email).count()) === 0);

      // The removed agent cannot sign in any more.
      const again = await open();
      await signIn(again, `${base}/console/login`, agent);
      await visible(again, again.locator('p.error'), 'the sign-in error');
      assert.equal(new URL(again.url()).pathname, '/console/login');
    });
  });

  test('the list shows an agent online after sign-in and offline after the presence timeout', { timeout: 90_000 }, async () => {
    await withPage(browser, 'console-presence', async (page, open) => {
      const agent = await joined(open, 'olga.online@example.com', 'agent');
      await consoleSignIn(page, platform.admin);
      await visible(page, rowOf(page, agent.email), `the row of ${agent.email}`);
      const online = Number(await page.locator('#online-count').innerText());

      const own = await open();
      await consoleSignIn(own, agent);
      await rowShows(page, agent.email, '.presence', 'online');
      await eventually('#online-count one higher', async () => {
        const now = Number(await page.locator('#online-count').innerText());
        return now === online + 1 || `it reads ${now}, was ${online}`;
      });
      const seen = await rowOf(page, agent.email).locator('.last-seen').innerText();
      assert.match(seen, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/, 'last seen');

      // The agent's browser goes away: no more heartbeats.
      await own.context().close();
      await rowShows(page, agent.email, '.presence', 'offline', (PRESENCE_TIMEOUT_SECS + 12) * 1000);
      await eventually('#online-count back', async () => {
        const now = Number(await page.locator('#online-count').innerText());
        return now === online || `it reads ${now}, was ${online}`;
      });
    });
  });
});
