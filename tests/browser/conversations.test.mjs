// Browser tests of conversations (docs/web.md, "Conversations"): a signed-in customer starts a chat on
// the storefront's /chat; routing gives it to the one agent online in the console; the agent sees it
// and replies; the reply reaches the customer's page without a reload; a supervisor finds it under
// "All conversations" and transfers it to another agent, and the agent's page follows. One platform
// (`assist up`) serves the file; screenshots go to output/conversations-<page>.png.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startPlatform, someCustomers, mailedLink, agentToken, api, SEED_PASSWORD } from './lib/platform.mjs';
import { launch, waitForPath, visible, signIn, screenshot, withPage, eventually } from './lib/browser.mjs';

const PASSWORD = 'conversations-password-1';

let platform;
let browser;
let base;
let adminToken;
let customer;

/** Someone the administrator invites to the console as `role` (through the JSON API), who sets a
 *  password on the mailed link in a browser of their own; active from their first sign-in. */
async function invited(open, email, fullName, role) {
  await api(base, 'POST', '/console/api/agents', {
    token: adminToken,
    body: { data: { type: 'console-agents', attributes: { email, role, fullName } } },
  });
  const page = await open();
  await page.goto(await mailedLink(platform, email));
  await visible(page, page.locator('#new-password'), `the set-password form for ${email}`);
  await page.locator('#new-password').fill(PASSWORD);
  await page.locator('#repeat-password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Save password' }).click();
  await visible(page, page.locator('#password-done'), `the password of ${email} saved`);
  await page.context().close();
  return { email, fullName, password: PASSWORD };
}

/** Signs in at /console/login (landing on /console/agents) and opens the conversations list. */
async function consoleConversations(page, who) {
  await signIn(page, `${base}/console/login`, who);
  await waitForPath(page, '/console/agents');
  await page.locator('#nav-conversations').click();
  await waitForPath(page, '/console/conversations');
  await visible(page, page.locator('#tab-mine'), 'the tab "My conversations"');
}

const rowWith = (page, subject) => page.locator('#conversations tr[data-conversation]').filter({ hasText: subject });

describe('conversations in the browser', { concurrency: 1 }, () => {
  before(async () => {
    platform = await startPlatform({ customers: 5, merchantUsers: 5, log: 'assist-conversations.log' });
    base = platform.baseUrl;
    adminToken = await agentToken(base, '', platform.admin);
    [customer] = await someCustomers(base, platform.admin, 1);
    browser = await launch();
  }, { timeout: 150_000 });

  after(async () => {
    await browser?.close().catch(() => {});
    await platform?.stop();
  }, { timeout: 30_000 });

  test('a customer chats with the online agent, and a supervisor transfers the chat', { timeout: 150_000 }, async () => {
    await withPage(browser, 'conversations-customer', async (page, open) => {
      const alex = await invited(open, 'alex.agent@example.com', 'Alex Agent', 'agent');
      const ben = await invited(open, 'ben.agent@example.com', 'Ben Agent', 'agent');
      const sara = await invited(open, 'sara.supervisor@example.com', 'Sara Supervisor', 'supervisor');
      const subject = `Parcel missing ${Date.now()}`;

      // Ben joins the console and sets himself away, so that Alex is the one agent online when the
      // chat arrives (Sara signs in only later).
      const benPage = await open();
      await consoleConversations(benPage, ben);
      await benPage.locator('#presence-toggle').selectOption('away');
      await visible(benPage, benPage.locator('#my-presence').filter({ hasText: 'away' }), 'Ben away');
      await benPage.context().close();

      // Alex is online on the conversations page.
      const agent = await open();
      await consoleConversations(agent, alex);
      await visible(agent, agent.locator('#my-presence').filter({ hasText: 'online' }), 'Alex online');
      assert.equal(await agent.locator('#tab-all').count(), 0, 'an agent has no "All conversations"');

      // The customer starts a chat on the storefront.
      await signIn(page, `${base}/login`, { email: customer.email, password: SEED_PASSWORD });
      await page.goto(`${base}/chat`);
      await visible(page, page.locator('form#start-chat'), 'the form #start-chat');
      await page.locator('#chat-subject').fill(subject);
      await page.locator('#chat-body').fill('My parcel never came. Can you help?');
      await page.getByRole('button', { name: 'Start a conversation' }).click();
      await waitForPath(page, /^\/chat\/[0-9a-f-]{36}$/);
      const id = new URL(page.url()).pathname.split('/').pop();
      await visible(page, page.locator('#messages li.customer').filter({ hasText: 'My parcel never came.' }), 'the first message');

      // Routing gives it to Alex, whose list shows it without a reload.
      const row = await visible(agent, rowWith(agent, subject), `the row "${subject}" on Alex's list`, 20_000);
      assert.equal(await row.getAttribute('data-conversation'), id);
      await eventually('the row assigned', async () => (await row.getAttribute('data-status')) === 'assigned'
        || `it is ${await row.getAttribute('data-status')}`);
      await screenshot(agent, 'conversations-agent-list');
      await row.locator('td.subject a').click();
      await waitForPath(agent, `/console/conversations/${id}`);
      await visible(agent, agent.locator('#conversation-assignee').filter({ hasText: 'Alex Agent' }), 'Alex as the assignee');

      // The customer's page must not reload: a marker on its window survives only without one.
      await page.evaluate(() => { window.notReloaded = true; });
      await agent.locator('#reply-body').fill('Sorry to hear that! Checking with the carrier now.');
      await agent.getByRole('button', { name: 'Send' }).click();
      await visible(agent, agent.locator('#messages li.agent').filter({ hasText: 'Checking with the carrier' }), 'the reply on the agent page');
      await visible(page, page.locator('#messages li.agent').filter({ hasText: 'Checking with the carrier' }), 'the reply on the customer page', 15_000);
      assert.equal(await page.evaluate(() => window.notReloaded === true), true, 'the customer page was not reloaded');

      // An internal note stays in the console.
      await agent.locator('#reply-body').fill('Carrier ticket 4711.');
      await agent.locator('#reply-internal').check();
      await agent.getByRole('button', { name: 'Send' }).click();
      await visible(agent, agent.locator('#messages li.internal').filter({ hasText: 'Carrier ticket 4711.' }), 'the internal note');
      await visible(agent, agent.locator('#messages li.internal .internal-marker'), 'the "Internal note" marker');
      await screenshot(agent, 'conversations-agent');

      // Sara, a supervisor, signs in, finds it under "All conversations" and transfers it to Ben.
      const supervisor = await open();
      await consoleConversations(supervisor, sara);
      await visible(supervisor, supervisor.locator('#my-role').filter({ hasText: 'supervisor' }), '#my-role "supervisor"');
      await supervisor.locator('#tab-all').click();
      await waitForPath(supervisor, '/console/conversations');
      const all = await visible(supervisor, rowWith(supervisor, subject), `the row "${subject}" under All conversations`);
      await all.locator('td.subject a').click();
      await waitForPath(supervisor, `/console/conversations/${id}`);
      const select = await visible(supervisor, supervisor.locator('#assign-agent'), 'the select #assign-agent');
      const options = await select.locator('option').allInnerTexts();
      assert.ok(options.some((o) => o.startsWith('Me')), `"Me" offered to a supervisor: ${options}`);
      assert.ok(!options.some((o) => o.includes('administrator')), `no administrator offered: ${options}`);
      const benOption = options.find((o) => o.startsWith('Ben Agent'));
      assert.ok(benOption, `Ben offered: ${options}`);
      await select.selectOption({ label: benOption });
      await supervisor.getByRole('button', { name: 'Transfer' }).click();
      await visible(supervisor, supervisor.locator('#console-message').filter({ hasText: 'Assigned to Ben Agent' }), 'the notice of the transfer');
      await visible(supervisor, supervisor.locator('#conversation-assignee').filter({ hasText: 'Ben Agent' }), 'Ben as the assignee');
      await visible(supervisor, supervisor.locator('#history li[data-kind="transferred"]').filter({ hasText: 'Sara Supervisor' }), 'the transfer in the history');
      await screenshot(supervisor, 'conversations-supervisor');

      // Alex's page says at once that the conversation is no longer his, and his list drops it.
      await visible(agent, agent.locator('#live-notice').filter({ hasText: 'no longer yours' }), 'the notice on Alex\'s page', 15_000);
      await agent.locator('#nav-conversations').click();
      await waitForPath(agent, '/console/conversations');
      assert.equal(await rowWith(agent, subject).count(), 0, 'the transferred chat on Alex\'s list');

      // The customer resolves the chat.
      await page.getByRole('button', { name: 'Resolve' }).click();
      await visible(page, page.locator('#conversation-status').filter({ hasText: 'resolved' }), 'the status "resolved"');
      assert.equal(await page.locator('#messages').getByText('Carrier ticket 4711.').count(), 0, 'no internal note for the customer');
    });
  });
});
