// Runs graphql-http's GraphQL-over-HTTP server audits against a running server and prints
// one JSON document on stdout. It only reports: the Rust test decides what must pass.
//
//   node audit.mjs <url>    e.g. node audit.mjs http://127.0.0.1:8000/graphql
//
// Exit 0 whenever the audits ran (whatever their results); 2 on usage error, or when an
// audit crashed instead of producing a result (graphql-http rethrows anything that is not
// an assertion failure, e.g. connection refused or reset: the server never answered).
import { serverAudits } from 'graphql-http';

// A hung request must fail the run, not stall CI until its global timeout.
const REQUEST_TIMEOUT_MS = 10_000;
// Enough of a failing response's body to see why, small enough to stay readable in a test log.
const BODY_EXCERPT_CHARS = 500;

const url = process.argv[2];
if (process.argv.length !== 3 || !/^https?:\/\//.test(url)) {
  console.error('usage: node audit.mjs <http(s)://host:port/path>');
  process.exit(2);
}

const fetchFn = (input, init = {}) =>
  fetch(input, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });

// A failed audit carries the Response; keep what a reader needs to fix the handler. Some
// audits have already read the body before failing, hence the best effort.
async function describe(response) {
  if (!response) return undefined;
  let body;
  try {
    body = (await response.text()).slice(0, BODY_EXCERPT_CHARS);
  } catch {
    body = null;
  }
  return { status: response.status, contentType: response.headers.get('content-type'), body };
}

try {
  const results = [];
  // One at a time (unlike graphql-http's auditServer, which fires all at once), so a
  // crash names its audit and server logs read in audit order.
  for (const audit of serverAudits({ url, fetchFn })) {
    let result;
    try {
      result = await audit.fn();
    } catch (err) {
      throw new Error(`audit ${audit.id} (${audit.name}) crashed: ${err}${err?.cause ? ` (${err.cause.message ?? err.cause})` : ''}`);
    }
    const { id, name, status, reason } = result;
    results.push(
      status === 'ok'
        ? { id, name, status }
        : { id, name, status, reason, response: await describe(result.response) },
    );
  }
  // graphql-http grades a failed MUST 'error', a failed SHOULD 'warn' and a failed MAY
  // 'notice'; every status is counted, so the counts always add up to results.length.
  const counts = { ok: 0, warn: 0, error: 0, notice: 0 };
  for (const { status } of results) counts[status] = (counts[status] ?? 0) + 1;
  process.stdout.write(JSON.stringify({ results, counts }, null, 2) + '\n');
} catch (err) {
  console.error(String(err?.stack ?? err));
  process.exit(2);
}
