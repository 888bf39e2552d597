'use strict';
// Checkouts through the gateway, as a customer's browser does them: place a 2-line order, start a
// Stripe payment, open the sandbox's Checkout page, post its pay form. The sandbox then delivers the
// signed webhook and the saga confirms the order.
//
//   node checkout.js config.json      (the JSON result on stdout)
//
// mode "closed": `clients` customers, each waiting for its order to be confirmed before the next;
//   the wait reads the order once, after about as long as the recent confirmations took, then
//   long-polls it (If-None-Match with its ETag, Prefer: wait=long_poll_s: answered when it changes),
//   so that the waiting adds as few reads as possible to the load being measured (the latency figures
//   come from the orders' timelines). long_poll_s 0: polls after poll_ms, growing by half each time
//   up to poll_max_ms.
// mode "open": a new checkout every 1/rate seconds whatever the shop does (arrivals do not wait for
//   the shop), nobody waits for confirmation; the caller checks the orders' outcome itself.
// A 429/503 is retried after its Retry-After (at most max_attempts tries); every answer is counted
// per step and status, every refusal by whether it said Retry-After.

const crypto = require('node:crypto');
const { request, sleep, readConfig, cpuMs } = require('./http.js');

const TERMINAL = new Set(['confirmed', 'cancelled', 'refunded']);
const REFUSED = new Set([429, 503]);

function count(table, step, key) {
  const row = (table[step] ||= {});
  row[key] = (row[key] || 0) + 1;
}

function retryAfterMs(answer) {
  const seconds = Number.parseFloat(answer.headers?.['retry-after'] ?? '');
  return Number.isFinite(seconds) ? Math.min(seconds * 1000, 5000) : 500;
}

async function call(ctx, step, method, url, { headers = {}, body = null } = {}) {
  for (let attempt = 1; ; attempt += 1) {
    const answer = await request(method, url, { headers, body, timeoutMs: ctx.config.timeout_ms });
    count(ctx.responses, step, answer.status ? String(answer.status) : answer.error);
    if (!REFUSED.has(answer.status)) return answer;
    count(ctx.refusals, step, answer.headers['retry-after'] ? 'with_retry_after' : 'without_retry_after');
    if (attempt >= ctx.config.max_attempts) return answer;
    await sleep(retryAfterMs(answer));
  }
}

function json(answer) {
  try {
    return JSON.parse(answer.body);
  } catch {
    return null;
  }
}

function headersOf(token) {
  return { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
}

async function placeOrder(ctx, token, n) {
  const { products } = ctx.config;
  const items = [0, 1].map((k) => ({ product_id: products[(n + k) % products.length], quantity: 1 }));
  const headers = { ...headersOf(token), 'idempotency-key': crypto.randomUUID() };
  const answer = await call(ctx, 'place', 'POST', `${ctx.config.gateway}/api/orders`, {
    headers,
    body: JSON.stringify({ items }),
  });
  return answer.status === 201 || answer.status === 200 ? json(answer) : null;
}

// Payments learns of an order from OrderPlaced a moment after placement and says so with a retryable
// 409 until then.
async function startPayment(ctx, token, orderId) {
  const headers = { ...headersOf(token), 'idempotency-key': crypto.randomUUID() };
  const body = JSON.stringify({ order_id: orderId, provider: 'stripe' });
  const deadline = Date.now() + ctx.config.payment_start_within_s * 1000;
  for (;;) {
    const answer = await call(ctx, 'payment', 'POST', `${ctx.config.gateway}/api/payments`, { headers, body });
    const payment = json(answer);
    if (answer.status === 201 || answer.status === 200) return payment;
    if (answer.status !== 409 || payment?.retryable !== true || Date.now() > deadline) return null;
    await sleep(ctx.config.payment_retry_ms);
  }
}

async function payOnStripePage(ctx, redirectUrl) {
  const page = await call(ctx, 'stripe_page', 'GET', redirectUrl);
  if (page.status !== 200) return false;
  const paid = await call(ctx, 'stripe_pay', 'POST', `${redirectUrl}/pay`, {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'outcome=success',
  });
  return paid.status === 200;
}

function settle(record, order) {
  record.status = order.status;
  const confirmed = (order.timeline || []).find((step) => step.status === 'confirmed');
  record.confirmed_at = confirmed ? confirmed.at : null;
}

async function waitTerminal(ctx, token, record, paidAt) {
  const url = `${ctx.config.gateway}/api/orders/${record.id}`;
  const deadline = Date.now() + ctx.config.confirm_within_s * 1000;
  await sleep(ctx.waitEstimateMs);
  let pause = ctx.config.poll_ms;
  let etag = null;
  while (Date.now() < deadline) {
    record.polls += 1;
    const headers = headersOf(token);
    if (etag && ctx.config.long_poll_s > 0) {
      // A long poll: the order answers as soon as it changes, or 304 after long_poll_s.
      headers['if-none-match'] = etag;
      headers.prefer = `wait=${ctx.config.long_poll_s}`;
    }
    const answer = await call(ctx, 'poll', 'GET', url, { headers });
    const order = answer.status === 200 ? json(answer) : null;
    if (order && TERMINAL.has(order.status)) {
      settle(record, order);
      if (record.confirmed_at) {
        const took = Date.parse(record.confirmed_at) - paidAt;
        ctx.waitEstimateMs = Math.max(10, 0.8 * ctx.waitEstimateMs + 0.2 * took);
      }
      return;
    }
    if (answer.status === 200 || answer.status === 304) etag = answer.headers?.etag || etag;
    if (answer.status === 304 && answer.headers?.['retry-after']) {
      // The wait was not granted (too many wait already): asked to come back later, not at once.
      await sleep(retryAfterMs(answer));
    } else if (!etag || ctx.config.long_poll_s <= 0) {
      await sleep(pause);
      pause = Math.min(pause * 1.5, ctx.config.poll_max_ms);
    }
  }
}

async function checkout(ctx, n) {
  const token = ctx.config.tokens[n % ctx.config.tokens.length];
  const started = Date.now();
  const order = await placeOrder(ctx, token, n);
  if (!order?.id) return count(ctx.abandoned, 'place', 'count');
  const record = { id: order.id, status: order.status, created_at: order.created_at, confirmed_at: null, polls: 0 };
  ctx.orders.push(record);
  const payment = await startPayment(ctx, token, order.id);
  if (!payment?.redirect_url) return count(ctx.abandoned, 'payment', 'count');
  if (!(await payOnStripePage(ctx, payment.redirect_url))) return count(ctx.abandoned, 'stripe', 'count');
  ctx.paid += 1;
  if (ctx.config.mode !== 'closed') return undefined;
  await waitTerminal(ctx, token, record, Date.now());
  if (record.confirmed_at) record.client_ms = Date.now() - started;
  return undefined;
}

// A checkout that throws (a bug here, not an answer of the shop) is counted, not fatal to the run.
function attempt(ctx, n) {
  return checkout(ctx, n).catch((error) => {
    count(ctx.abandoned, 'error', 'count');
    process.stderr.write(`checkout ${n}: ${error.stack || error}\n`);
  });
}

async function closedLoop(ctx) {
  const { clients, duration_s: duration } = ctx.config;
  const end = Date.now() + duration * 1000;
  let next = 0;
  const worker = async () => {
    while (Date.now() < end) {
      const n = next;
      next += 1;
      await attempt(ctx, n);
    }
  };
  await Promise.all(Array.from({ length: clients }, worker));
  ctx.arrivals = next;
}

async function openLoop(ctx) {
  const { rate, duration_s: duration, max_in_flight: maxInFlight } = ctx.config;
  const started = Date.now();
  const total = Math.floor(rate * duration);
  const running = new Set();
  for (let n = 0; n < total; n += 1) {
    const due = started + (n * 1000) / rate;
    if (due > Date.now()) await sleep(due - Date.now());
    if (running.size >= maxInFlight) {
      ctx.skipped += 1;
      continue;
    }
    const done = attempt(ctx, n).finally(() => running.delete(done));
    running.add(done);
  }
  ctx.arrivals = total;
  await Promise.all(running);
}

async function main() {
  const config = readConfig();
  const ctx = {
    config,
    orders: [],
    responses: {},
    refusals: {},
    abandoned: {},
    paid: 0,
    skipped: 0,
    arrivals: 0,
    waitEstimateMs: config.first_poll_ms,
  };
  const started = Date.now();
  await (config.mode === 'closed' ? closedLoop(ctx) : openLoop(ctx));
  const result = {
    mode: config.mode,
    clients: config.clients,
    rate: config.rate,
    duration_s: config.duration_s,
    elapsed_s: (Date.now() - started) / 1000,
    arrivals: ctx.arrivals,
    skipped_arrivals: ctx.skipped,
    paid: ctx.paid,
    orders: ctx.orders,
    responses: ctx.responses,
    refusals: ctx.refusals,
    abandoned: ctx.abandoned,
    cpu: cpuMs(),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
