'use strict';
// Order placements through the gateway when wrk is not installed: `clients` connections, each
// placing 2-line orders back to back for duration_s (the same requests as wrk.lua sends).
//
//   node orders.js config.json      (the JSON result on stdout: latencies in ms, errors, CPU)

const { request, readConfig, cpuMs } = require('./http.js');

async function main() {
  const { gateway, tokens, products, clients, duration_s: duration, timeout_ms: timeoutMs } = readConfig();
  const latencies = [];
  const statuses = {};
  let next = 0;
  const started = Date.now();
  const end = started + duration * 1000;
  const worker = async () => {
    while (Date.now() < end) {
      const n = next;
      next += 1;
      const items = [0, 1].map((k) => ({ product_id: products[(n + k) % products.length], quantity: 1 }));
      const headers = { authorization: `Bearer ${tokens[n % tokens.length]}`, 'content-type': 'application/json' };
      const sent = process.hrtime.bigint();
      const answer = await request('POST', `${gateway}/api/orders`, {
        headers,
        body: JSON.stringify({ items }),
        timeoutMs,
      });
      const key = answer.status ? String(answer.status) : answer.error;
      statuses[key] = (statuses[key] || 0) + 1;
      if (answer.status === 201) latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
    }
  };
  await Promise.all(Array.from({ length: clients }, worker));
  const elapsed = (Date.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ elapsed_s: elapsed, latencies_ms: latencies, statuses, cpu: cpuMs() })}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
