// Starts the platform the browser tests drive: seeds a fresh data directory, runs `assist up` on free
// loopback ports, waits until the gateway and the demo shop answer, and stops it all again.

import { spawn, execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..', '..');
export const outputDir = resolve(here, '..', 'output');

/** Every seeded customer and merchant user signs in with this (services/assist/src/seed.rs). */
export const SEED_PASSWORD = 'seeded-password';
export const CLERK = { email: 'clerk@example.com', fullName: 'Clerk', password: 'clerk-password-1234' };

export function assistBinary() {
  if (process.env.ASSIST_BIN) return process.env.ASSIST_BIN;
  const target = process.env.CARGO_TARGET_DIR || '/var/tmp/agent-assist-ci/target';
  return join(target, 'debug', 'assist');
}

/** `count` distinct free ports: all bound to port 0 at once (so they differ), then released. */
export async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      await new Promise((ok, fail) => {
        server.once('error', fail);
        server.listen(0, '127.0.0.1', ok);
      });
      servers.push(server);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  }
}

/** The environment of every `assist` run: the caller's, without ASSIST_* settings that would point the
 *  platform at other databases, keys or ports. */
function cleanEnv(extra = {}) {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('ASSIST_')) env[key] = value;
  }
  return { ...env, RUST_LOG: process.env.RUST_LOG || 'warn', ...extra };
}

async function assist(bin, args, timeoutMs = 120_000) {
  try {
    return await run(bin, args, { env: cleanEnv(), timeout: timeoutMs, maxBuffer: 16 << 20 });
  } catch (error) {
    throw new Error(`assist ${args.join(' ')} failed: ${error.message}\n${error.stdout ?? ''}${error.stderr ?? ''}`);
  }
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Polls `url` until it answers 200, for at most `timeoutMs`. */
async function waitHealthy(url, timeoutMs, alive) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    alive();
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = error.cause?.code ?? error.message;
    }
    await sleep(200);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (last: ${last})`);
}

/**
 * Seeds a temp data directory and starts `assist up`. Returns
 * `{ baseUrl, shopUrl, admin: {email, password}, stop() }`.
 */
export async function startPlatform({
  customers = 200, merchantUsers = 100, startTimeoutMs = 60_000,
  // Further `assist up` flags, each used only when `assist up --help` lists it: [[flag, value], …].
  upFlags = [],
  log = 'assist.log',
} = {}) {
  const bin = assistBinary();
  const dataDir = await mkdtemp(join(tmpdir(), 'assist-browser-'));
  await mkdir(outputDir, { recursive: true });
  let child;
  const stop = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((ok) => child.once('exit', ok));
      child.kill('SIGTERM');
      const killed = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!killed) {
        child.kill('SIGKILL');
        await Promise.race([exited, sleep(5_000)]);
      }
    }
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    await assist(bin, ['seed', '--data-dir', dataDir, 'customers', '--count', String(customers)]);
    await assist(bin, ['seed', '--data-dir', dataDir, 'merchant-users', '--count', String(merchantUsers)]);

    const [identity, directory, impersonation, gateway, metrics, shop, routing] = await freePorts(7);
    const baseUrl = `http://127.0.0.1:${gateway}`;
    const shopUrl = `http://127.0.0.1:${shop}`;
    // `assist up --help` exits non-zero (assist_runtime::config::exit): read its output either way.
    const help = await run(bin, ['up', '--help'], { env: cleanEnv(), timeout: 30_000 })
      .then(({ stdout, stderr }) => stdout + stderr, (error) => `${error.stdout ?? ''}${error.stderr ?? ''}`);
    const hasDemoShop = help.includes('--demo-shop-listen');
    const args = [
      'up', '--data-dir', dataDir,
      '--identity-listen', `127.0.0.1:${identity}`,
      '--agent-directory-listen', `127.0.0.1:${directory}`,
      '--impersonation-listen', `127.0.0.1:${impersonation}`,
      '--routing-listen', `127.0.0.1:${routing}`,
      '--gateway-listen', `127.0.0.1:${gateway}`,
      '--metrics-listen', `127.0.0.1:${metrics}`,
    ];
    if (hasDemoShop) args.push('--demo-shop-listen', `127.0.0.1:${shop}`);
    else console.warn('# assist up has no --demo-shop-listen: the demo shop is not started on a free port');
    for (const [flag, value] of upFlags) {
      if (help.includes(flag)) args.push(flag, String(value));
      else console.warn(`# assist up has no ${flag}`);
    }

    const logFile = createWriteStream(join(outputDir, log));
    child = spawn(bin, args, {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    process.once('exit', () => child.kill('SIGKILL'));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => { stdout += chunk; logFile.write(chunk); });
    child.stderr.on('data', (chunk) => { stderr += chunk.toString().slice(-20_000); logFile.write(chunk); });
    const alive = () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`assist up exited (${child.exitCode ?? child.signalCode}):\n${stdout}\n${stderr.slice(-4_000)}`);
      }
    };

    const deadline = Date.now() + startTimeoutMs;
    const READY = 'The administrator is also a storefront and merchant-portal agent.';
    while (!stdout.includes(READY)) {
      alive();
      if (Date.now() > deadline) {
        throw new Error(`assist up did not say "${READY}" within ${startTimeoutMs} ms:\n${stdout}\n${stderr.slice(-4_000)}`);
      }
      await sleep(100);
    }
    const email = /^\s*email:\s+(\S+)\s*$/m.exec(stdout)?.[1];
    const password = /^\s*password:\s+(\S+)\s*$/m.exec(stdout)?.[1];
    if (!email || !password) throw new Error(`no administrator credentials in the output of assist up:\n${stdout}`);

    // Only after the first start: a back-office user that exists earlier stops the administrator's creation.
    await assist(bin, [
      'admin', '--data-dir', dataDir, 'create-user',
      '--email', CLERK.email, '--full-name', CLERK.fullName, '--password', CLERK.password,
    ]);

    const remaining = () => Math.max(1_000, deadline - Date.now());
    await waitHealthy(`${baseUrl}/healthz`, remaining(), alive);
    if (hasDemoShop) await waitHealthy(`${shopUrl}/healthz`, remaining(), alive);
    return { baseUrl, shopUrl, hasDemoShop, admin: { email, password }, dataDir, stop, alive };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The link of the newest mail to `email` in the platform's outbox (`assist admin outbox`). */
export async function mailedLink(platform, email) {
  const { stdout } = await assist(assistBinary(), [
    'admin', '--data-dir', platform.dataDir, 'outbox', '--recipient', email,
  ], 30_000);
  const link = /^link:\s+(\S+)\s*$/m.exec(stdout)?.[1];
  if (!link) throw new Error(`no link in the mail to ${email}:\n${stdout}`);
  return link;
}

/** A JSON:API call to the gateway. */
export async function api(baseUrl, method, path, { token, body } = {}) {
  const headers = { accept: 'application/vnd.api+json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body) headers['content-type'] = 'application/vnd.api+json';
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

const first = (document) => (Array.isArray(document.data) ? document.data[0] : document.data);

/** An agent access token of a portal (prefix '' or '/merchant-portal'). */
export async function agentToken(baseUrl, prefix, { email, password }) {
  const document = await api(baseUrl, 'POST', `${prefix}/agent-access-tokens`, {
    body: { data: { type: 'agent-access-tokens', attributes: { username: email, password } } },
  });
  return first(document).attributes.accessToken;
}

/** Some seeded customers: [{customerReference, email, firstName, lastName}]. */
export async function someCustomers(baseUrl, admin, limit = 5) {
  const token = await agentToken(baseUrl, '', admin);
  const document = await api(baseUrl, 'GET', `/agent-customer-search?q=&page%5Blimit%5D=${limit}`, { token });
  const customers = first(document).attributes.customers;
  if (!customers?.length) throw new Error(`no customers found: ${JSON.stringify(document).slice(0, 500)}`);
  return customers;
}

/** An active merchant user of an approved merchant (seed.rs: merchant numbers divisible by 17 wait for
 *  approval; names of merchants past the name list end in their number). */
export async function someMerchantUser(baseUrl, admin) {
  const token = await agentToken(baseUrl, '/merchant-portal', admin);
  const document = await api(baseUrl, 'GET', '/merchant-portal/agent-merchant-user-search?q=&page%5Blimit%5D=100', { token });
  const users = first(document).attributes.merchantUsers ?? [];
  const active = users.filter((u) => String(u.status).toLowerCase() === 'active');
  const approved = (u) => {
    const number = /\s(\d+)$/.exec(u.merchantName)?.[1];
    return number !== undefined && Number(number) % 17 !== 0;
  };
  const sameMerchant = (u) => active.filter((o) => o.merchantName === u.merchantName).length;
  const candidates = active.filter(approved).sort((a, b) => sameMerchant(a) - sameMerchant(b));
  const user = candidates[0] ?? active[0];
  if (!user) throw new Error(`no active merchant user found: ${JSON.stringify(document).slice(0, 500)}`);
  return user;
}
