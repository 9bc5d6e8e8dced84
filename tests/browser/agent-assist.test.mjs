// Browser tests of agent assist: the gateway's pages (docs/web.md) and the demo shop behind them, in
// Debian's headless Chromium. One platform (`assist up` on a seeded temp data directory) serves every
// test of this file; each test has its own browser contexts and leaves output/<test-name>.png.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startPlatform, someCustomers, someMerchantUser, SEED_PASSWORD, CLERK } from './lib/platform.mjs';
import {
  launch, newPage, waitForPath, clickAndLand, visible, signIn, bodyText, withPage, sleep, eventually,
} from './lib/browser.mjs';

let platform;
let browser;
let base;
let customers;
let merchantUser;

/** Types `query` into the customer search of /agent/customers (freshly loaded) and returns the
 *  suggestion reading `expected` ("First Last: email"). */
async function suggestion(page, query, expected) {
  await page.goto(`${base}/agent/customers`);
  const search = await visible(page, page.locator('#customer-search'), 'customer search field #customer-search');
  await search.click();
  await search.pressSequentially(query, { delay: 20 });
  const item = page.locator('#suggestions li').filter({ hasText: expected });
  return visible(page, item, `suggestion "${expected}" for "${query}"`);
}

/** From /agent/customers: picks `customer` by email and confirms; lands on the shop's `/`. */
async function startAssisting(page, customer) {
  const fullName = `${customer.firstName} ${customer.lastName}`;
  const item = await suggestion(page, customer.email, `${fullName}: ${customer.email}`);
  await item.click();
  const confirm = await visible(page, page.getByRole('button', { name: 'Confirm' }), 'Confirm button');
  await clickAndLand(page, confirm, '/');
  await visible(page, page.locator('#assist-bar').filter({ hasText: `Customer: ${fullName}` }),
    `assist bar "Customer: ${fullName}"`);
}

/** Clicks a submit button and waits for the POST to `pathPrefix` to be answered (below 400). */
async function submit(page, button, pathPrefix) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.startsWith(pathPrefix)),
    button.click(),
  ]);
  assert.ok(response.status() < 400, `POST ${new URL(response.url()).pathname} answered ${response.status()}`);
  await page.waitForLoadState('load');
  return response;
}

/** A price different from `old`, in the same notation (decimals kept). */
function nextPrice(old) {
  const text = String(old).trim();
  const number = Number(text.replace(/[^\d.]/g, ''));
  if (!text || Number.isNaN(number)) return '42.50';
  const decimals = /\.(\d+)/.exec(text)?.[1].length ?? 0;
  return (number + (decimals ? 1.25 : 125)).toFixed(decimals);
}

describe('agent assist in the browser', { concurrency: 1 }, () => {
  before(async () => {
    platform = await startPlatform();
    base = platform.baseUrl;
    customers = await someCustomers(base, platform.admin, 5);
    merchantUser = await someMerchantUser(base, platform.admin);
    browser = await launch();
  }, { timeout: 150_000 });

  after(async () => {
    await browser?.close().catch(() => {});
    await platform?.stop();
  }, { timeout: 30_000 });

  test('storefront journey', { timeout: 90_000 }, async () => {
    await withPage(browser, 'storefront-journey', async (page, open, last) => {
      const customer = customers[0];
      const fullName = `${customer.firstName} ${customer.lastName}`;
      const expected = `${fullName}: ${customer.email}`;

      await signIn(page, `${base}/agent/login`, platform.admin);
      await waitForPath(page, '/agent/customers');

      // Two characters suggest nothing.
      const search = await visible(page, page.locator('#customer-search'), 'customer search field #customer-search');
      await search.pressSequentially(customer.email.slice(0, 2), { delay: 20 });
      await sleep(700);
      assert.equal(await page.locator('#suggestions li:visible').count(), 0, 'suggestions after 2 characters');

      await suggestion(page, fullName, expected);
      await suggestion(page, customer.email, expected);
      const item = await suggestion(page, customer.customerReference, expected);
      await item.click();
      const confirm = await visible(page, page.getByRole('button', { name: 'Confirm' }), 'Confirm button');
      await clickAndLand(page, confirm, '/');
      await visible(page, page.locator('#assist-bar').filter({ hasText: `Customer: ${fullName}` }),
        `assist bar "Customer: ${fullName}"`);
      await visible(page, page.locator('#whoami').filter({ hasText: customer.firstName }),
        `#whoami naming ${customer.firstName}`);

      const product = await visible(page, page.locator('.product[data-sku]'), 'a product (.product[data-sku])');
      const sku = await product.getAttribute('data-sku');
      await submit(page, product.getByRole('button', { name: 'Add to cart' }), '/cart/items');
      await page.goto(`${base}/cart`);
      await visible(page, page.locator(`#cart tr[data-sku="${sku}"]`), `cart row of ${sku} while assisting`);

      const end = page.locator('#assist-bar').getByRole('button', { name: 'End Customer Assistance' });
      await clickAndLand(page, await visible(page, end, 'End Customer Assistance button'), '/agent/customers');
      await visible(page, page.locator('#customer-search'), 'customer search (the agent is still signed in)');
      assert.equal(await page.locator('#assist-bar').count(), 0, 'assist bar after the end');

      // The customer, in a browser of their own, finds what the agent put into the cart.
      const own = await open();
      last(own);
      await signIn(own, `${base}/login`, { email: customer.email, password: SEED_PASSWORD });
      await waitForPath(own, '/');
      await visible(own, own.locator('#whoami').filter({ hasText: customer.firstName }), `#whoami naming ${customer.firstName}`);
      await own.goto(`${base}/cart`);
      await visible(own, own.locator(`#cart tr[data-sku="${sku}"]`), `cart row of ${sku} for the customer`);
    });
  });

  test('merchant-portal journey', { timeout: 90_000 }, async () => {
    await withPage(browser, 'merchant-portal-journey', async (page) => {
      const user = merchantUser;
      const fullName = `${user.firstName} ${user.lastName}`;

      await signIn(page, `${base}/merchant-portal/agent/login`, platform.admin);
      await waitForPath(page, '/merchant-portal/agent/users');
      await visible(page, page.locator('#merchant-users'), 'table #merchant-users');

      const search = await visible(page, page.locator('#user-search'), 'search field #user-search');
      await search.fill(user.merchantName);
      await search.press('Enter');
      await page.waitForLoadState('load');
      const rows = page.locator('#merchant-users tr:has(td)');
      // Filtered: every row shown matches a word of the query somewhere.
      const words = user.merchantName.toLowerCase().split(/\s+/).filter(Boolean);
      await eventually(`users table filtered by "${user.merchantName}"`, async () => {
        const texts = await rows.evaluateAll((trs) => trs.map((tr) => tr.innerText.toLowerCase()));
        const stray = texts.filter((t) => !words.some((w) => t.includes(w)));
        return (texts.length > 0 && stray.length === 0) || `${texts.length} rows, not matching: ${stray.slice(0, 3).join(' | ')}`;
      });
      const row = await visible(page, rows.filter({ hasText: user.email }), `row of ${user.email}`);

      await row.getByRole('button', { name: 'Assist User' }).click();
      const dialog = await visible(page, page.locator('dialog#assist-dialog'), 'dialog #assist-dialog');
      await clickAndLand(page, dialog.getByRole('button', { name: 'Confirm' }), /^\/merchant-portal\/?$/);
      await visible(page, page.locator('#assist-bar').filter({ hasText: `User: ${fullName}` }), `assist bar "User: ${fullName}"`);

      await page.goto(`${base}/merchant-portal/offers`);
      const offer = await visible(page, page.locator('#offers tr[data-offer]'), 'an offer (#offers tr[data-offer])');
      const id = await offer.getAttribute('data-offer');
      const price = offer.locator('input[name="price"]');
      const newPrice = nextPrice(await price.inputValue());
      await price.fill(newPrice);
      await submit(page, offer.getByRole('button', { name: 'Save' }), `/merchant-portal/offers/`);
      if (new URL(page.url()).pathname !== '/merchant-portal/offers') await page.goto(`${base}/merchant-portal/offers`);
      const saved = page.locator(`#offers tr[data-offer="${id}"]`);
      await eventually(`offer ${id} showing the price ${newPrice}`, async () => {
        const text = await saved.innerText().catch(() => '');
        const value = await saved.locator('input[name="price"]').inputValue().catch(() => '');
        return text.includes(newPrice) || value === newPrice || `row: "${text.replace(/\s+/g, ' ')}", price field: "${value}"`;
      });

      const end = page.locator('#assist-bar').getByRole('button', { name: 'End User Assistance' });
      await clickAndLand(page, await visible(page, end, 'End User Assistance button'), '/merchant-portal/agent/users');
      await visible(page, page.locator('#merchant-users'), 'users table (the agent is still signed in)');
    });
  });

  test('refusal: a back-office user who is not an agent', { timeout: 60_000 }, async () => {
    await withPage(browser, 'refusal-non-agent', async (page) => {
      await signIn(page, `${base}/agent/login`, CLERK);
      await visible(page, page.locator('p.error').filter({ hasText: 'Failed to authenticate an agent.' }),
        'error "Failed to authenticate an agent."');
      assert.notEqual(new URL(page.url()).pathname, '/agent/customers');
    });
  });

  test('refusal: a signed-in customer gets no agent login form', { timeout: 60_000 }, async () => {
    await withPage(browser, 'refusal-signed-in-customer', async (page) => {
      const customer = customers[1];
      await signIn(page, `${base}/login`, { email: customer.email, password: SEED_PASSWORD });
      await waitForPath(page, '/');
      const response = await page.goto(`${base}/agent/login`);
      assert.ok(response, 'an answer for /agent/login');
      await page.waitForLoadState('load');
      assert.equal(await page.locator('input[name="password"]').count(), 0,
        `a password field on /agent/login: ${(await bodyText(page)).slice(0, 300)}`);
      assert.equal(await page.locator('form[action$="/agent/login"]').count(), 0, 'a form posting to /agent/login');
    });
  });

  test('refusal: sensitive pages while assisting', { timeout: 60_000 }, async () => {
    await withPage(browser, 'refusal-sensitive-while-assisting', async (page) => {
      await signIn(page, `${base}/agent/login`, platform.admin);
      await waitForPath(page, '/agent/customers');
      await startAssisting(page, customers[2]);
      const response = await page.goto(`${base}/account/password`);
      assert.ok(response, 'an answer for /account/password');
      assert.equal(response.status(), 403, `/account/password while assisting: HTTP ${response.status()}`);
      await visible(page, page.getByText('Not available while assisting'), '"Not available while assisting"');
      // The screenshot shows this refusal; the session ends in another tab of the same browser.
      const other = await page.context().newPage();
      await other.goto(`${base}/`);
      const end = other.locator('#assist-bar').getByRole('button', { name: 'End Customer Assistance' });
      await clickAndLand(other, await visible(other, end, 'End Customer Assistance button'), '/agent/customers');
    });
  });
});
