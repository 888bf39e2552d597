'use strict';
// A small HTTP/1.1 client on node:http with keep-alive: cheaper per request than fetch, and with a
// hard deadline per request so that a hang is reported as one instead of waiting forever.

const http = require('node:http');

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });

function once(method, url, headers, payload, timeoutMs, pooled = true) {
  return new Promise((resolve) => {
    const target = new URL(url);
    const options = {
      method,
      host: target.hostname,
      port: target.port,
      path: target.pathname + target.search,
      headers: payload ? { ...headers, 'content-length': payload.length } : headers,
      // agent: false is a connection of its own, not another kept-alive one that may be as stale.
      agent: pooled ? agent : false,
    };
    let settled = false;
    const finish = (answer) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        resolve(answer);
      }
    };
    const request = http.request(options, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () =>
        finish({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks).toString() }),
      );
      response.on('error', (error) => finish({ status: 0, error: error.code || error.message }));
    });
    const timer = setTimeout(() => {
      finish({ status: 0, error: 'timeout' });
      request.destroy();
    }, timeoutMs);
    request.on('error', (error) =>
      finish({ status: 0, error: error.code || error.message, stale: request.reusedSocket && error.code === 'ECONNRESET' }),
    );
    if (payload) request.write(payload);
    request.end();
  });
}

// A kept-alive socket the server closed a moment ago fails with ECONNRESET on reuse; Node's own
// advice is to send the request again on a fresh socket (every POST here is idempotent: it carries an
// Idempotency-Key or pays a session that can be paid once).
async function request(method, url, { headers = {}, body = null, timeoutMs = 30000 } = {}) {
  const payload = body === null ? null : Buffer.from(body);
  const answer = await once(method, url, headers, payload, timeoutMs);
  return answer.stale ? once(method, url, headers, payload, timeoutMs, false) : answer;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function readConfig() {
  const path = process.argv[2];
  if (!path) {
    process.stderr.write(`usage: node ${process.argv[1]} <config.json>\n`);
    process.exit(2);
  }
  return JSON.parse(require('node:fs').readFileSync(path, 'utf8'));
}

function cpuMs() {
  const usage = process.cpuUsage();
  return { user_ms: usage.user / 1000, system_ms: usage.system / 1000 };
}

module.exports = { request, sleep, readConfig, cpuMs };
