// Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, and the few waiting helpers
// the tests need (playwright-core has no `expect`).

import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { outputDir } from './platform.mjs';

export const STEP_TIMEOUT_MS = 10_000;

export async function launch() {
  const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
  return chromium.launch({
    executablePath,
    headless: true,
    timeout: 30_000,
    // Root in a container: no user namespaces for the sandbox; /dev/shm is often small.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
}

/** A fresh browser context (its own cookies) and a page in it. */
export async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(15_000);
  const page = await context.newPage();
  return { context, page };
}

/** Saves the page as `output/<name>.png`: called at the end of every test, pass or fail. */
export async function screenshot(page, name) {
  if (!page || page.isClosed()) return;
  try {
    await page.screenshot({ path: join(outputDir, `${name}.png`), fullPage: true, timeout: 10_000 });
  } catch (error) {
    console.warn(`# screenshot ${name} failed: ${error.message}`);
  }
}

/** Waits until the page's path is `path` (a string, or a RegExp on the path). */
export async function waitForPath(page, path, timeout = 15_000) {
  const matches = (url) => {
    const actual = new URL(url).pathname;
    return typeof path === 'string' ? actual === path : path.test(actual);
  };
  try {
    await page.waitForURL(matches, { timeout, waitUntil: 'load' });
  } catch (error) {
    throw new Error(`expected to be on ${path}, still on ${page.url()}: ${(await bodyText(page)).slice(0, 400)}`);
  }
}

/** Clicks and waits for the navigation the click starts to land on `path`. */
export async function clickAndLand(page, locator, path) {
  await locator.click();
  await waitForPath(page, path);
}

export async function bodyText(page) {
  try {
    return (await page.locator('body').innerText({ timeout: 2_000 })).replace(/\s+/g, ' ').trim();
  } catch {
    return '';
  }
}

/** Waits until `locator` (the first match) is visible; the error says what was on the page. */
export async function visible(page, locator, what, timeout = STEP_TIMEOUT_MS) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout });
  } catch {
    throw new Error(`${what}: not found on ${new URL(page.url()).pathname}; the page says: ${(await bodyText(page)).slice(0, 400)}`);
  }
  return locator.first();
}

/** Signs in through a gateway login form (fields `username`, `password`). */
export async function signIn(page, url, { email, password }) {
  const response = await page.goto(url);
  await visible(page, page.locator('input[name="username"]'),
    `login form of ${new URL(url).pathname} (HTTP ${response?.status()})`);
  await page.locator('input[name="username"]').fill(email);
  await page.locator('input[name="password"]').fill(password);
  await page.locator('form:has(input[name="password"]) [type="submit"]').first().click();
  await page.waitForLoadState('load');
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Runs `body(page, open, markLast)` with a fresh page of `browser` (`open` gives more, each in its
 *  own context); the page `body` marks as last (or the first) is screenshotted as `name`, and every
 *  context is closed afterwards. */
export async function withPage(browser, name, body) {
  const contexts = [];
  const open = async () => {
    const { context, page } = await newPage(browser);
    contexts.push(context);
    return page;
  };
  const page = await open();
  let last = page;
  try {
    await body(page, open, (p) => { last = p; });
  } finally {
    await screenshot(last, name);
    await Promise.all(contexts.map((c) => c.close().catch(() => {})));
  }
}

/** Polls `check` every 200 ms until it returns true, for at most `timeout` ms; any other value it
 *  returns last is named in the error. */
export async function eventually(what, check, timeout = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last === true) return;
    await sleep(200);
  }
  throw new Error(`${what}${last && last !== false ? `: ${last}` : ''}`);
}
