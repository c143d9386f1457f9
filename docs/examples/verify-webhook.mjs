// A parley webhook receiver with no dependencies (node:http + node:crypto).
// It verifies the `parley-signature` header, answers 401 when it does not
// verify and 204 when it does, and prints each notification once.
//
//   PARLEY_WEBHOOK_SECRET=... PORT=8787 node docs/examples/verify-webhook.mjs
//
// PARLEY_WEBHOOK_SECRET may list several secrets separated by commas, as
// parley's own does: during a rotation the receiver accepts either.
// PORT=0 picks a free port; the first line printed names the bound address.
// HOST defaults to 127.0.0.1 (use 0.0.0.0 to accept from other machines).
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

const SECRETS = (process.env.PARLEY_WEBHOOK_SECRET ?? "")
  .split(",")
  .map((secret) => secret.trim())
  .filter((secret) => secret !== "");
const PORT = Number(process.env.PORT ?? "8787");
const HOST = process.env.HOST ?? "127.0.0.1";
// A signature older (or newer) than this is refused: a captured request
// cannot be replayed later.
const TOLERANCE_SECONDS = 300;
// parley's bodies are a few KiB; refuse anything far larger without reading it.
const MAX_BODY_BYTES = 1024 * 1024;

if (SECRETS.length === 0) {
  console.error("PARLEY_WEBHOOK_SECRET is required");
  process.exit(2);
}

/**
 * Returns undefined when `header` is a valid signature of `rawBody` (the exact
 * bytes received), or the reason it is not.
 */
function verify(header, rawBody, nowSeconds) {
  if (typeof header !== "string") return "missing parley-signature header";
  // 1. Split `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`. Several v1 entries
  //    appear while parley's secret is being rotated; unknown keys are ignored.
  let timestamp;
  const signatures = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) return "malformed header";
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t") {
      if (timestamp !== undefined || !/^\d{1,15}$/.test(value)) return "malformed timestamp";
      timestamp = value;
    } else if (key === "v1") {
      if (!/^[0-9a-fA-F]{64}$/.test(value)) return "malformed v1 signature";
      signatures.push(Buffer.from(value, "hex"));
    }
  }
  if (timestamp === undefined || signatures.length === 0) return "no timestamp or no v1 signature";
  // 2. HMAC-SHA256 with each shared secret over "<t>." followed by the raw
  //    body. Use the bytes as received: parsing and re-serializing the JSON
  //    would change them.
  const expected = SECRETS.map((secret) => createHmac("sha256", secret).update(`${timestamp}.`).update(rawBody).digest());
  // 3. Compare in constant time, so response times reveal nothing about how
  //    close a forgery came. Any v1 matching any secret will do.
  if (!signatures.some((signature) => expected.some((mac) => timingSafeEqual(signature, mac)))) return "signature mismatch";
  // 4. Only now trust the timestamp, and refuse it when it is too far from now.
  if (Math.abs(nowSeconds - Number(timestamp)) > TOLERANCE_SECONDS) return "timestamp outside the tolerance";
  return undefined;
}

// Delivery ids already handled. Delivery is at-least-once: a delivery whose
// 2xx answer was lost is sent again with the same id. A real receiver keeps
// these in its database (a unique key), not in memory.
const seen = new Set();

const server = createServer((request, response) => {
  if (request.method !== "POST") {
    response.writeHead(405, { allow: "POST" }).end();
    return;
  }
  const chunks = [];
  let size = 0;
  request.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      response.writeHead(413, { connection: "close" }).end();
      request.destroy();
      return;
    }
    chunks.push(chunk);
  });
  request.on("end", () => {
    const rawBody = Buffer.concat(chunks);
    const deliveryId = request.headers["parley-delivery-id"] ?? "?";
    const problem = verify(request.headers["parley-signature"], rawBody, Math.floor(Date.now() / 1000));
    if (problem !== undefined) {
      console.error(`refused delivery ${deliveryId}: ${problem}`);
      response.writeHead(401).end();
      return;
    }
    let delivery;
    try {
      delivery = JSON.parse(rawBody.toString("utf8"));
    } catch {
      response.writeHead(400).end();
      return;
    }
    if (!seen.has(delivery.deliveryId)) {
      seen.add(delivery.deliveryId);
      console.log(`notification ${JSON.stringify(delivery.notification)}`);
    }
    // 2xx only after the notification is safely handled: parley retries otherwise.
    response.writeHead(204).end();
  });
});

server.listen(PORT, HOST, () => {
  const address = server.address();
  console.log(`listening on http://${HOST}:${typeof address === "object" && address !== null ? address.port : PORT}`);
});
