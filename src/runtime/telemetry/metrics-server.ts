import { createServer, type Server } from "node:http";
import type { Logger } from "../logger.js";
import { telemetry } from "./setup.js";

/**
 * A small HTTP server for `/metrics` (Prometheus text), for processes that
 * have no HTTP server of their own (`parley core`). Returns a stop function.
 */
export async function serveMetrics(address: string, logger: Logger): Promise<{ address: string; stop(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://metrics").pathname;
    const running = telemetry();
    if (path === "/metrics" && running) {
      running.metricsHandler(request, response);
      return;
    }
    response.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ category: "ROUTING", message: `no route for ${path}` }));
  });
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[|\]$/g, "");
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(address.slice(colon + 1)), host, () => {
      resolve();
    });
  });
  const bound = server.address();
  const actual = `${host}:${typeof bound === "object" && bound !== null ? bound.port : 0}`;
  logger.info({ metrics: `http://${actual}/metrics` }, "metrics serving");
  return {
    address: actual,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      }),
  };
}
