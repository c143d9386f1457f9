/**
 * The raw ws baseline of bench:e2e, run as its own process: a room broadcast
 * with no persistence and no protobuf. It answers each frame with an ack to
 * the sender and sends the frame to the room's other clients.
 */
import { createServer } from "node:http";
import { type RawData, WebSocket, WebSocketServer } from "ws";

/** A minimal room broadcast over ws, reporting its port on stdout. */
async function rawServer(): Promise<void> {
  const rooms = new Map<string, Set<WebSocket>>();
  const http = createServer();
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false, maxPayload: 64 * 1024 });
  const welcome = Buffer.from('{"welcome":{}}');
  wss.on("connection", (socket, request) => {
    const room = new URL(request.url ?? "/", "http://raw").pathname.split("/").pop() ?? "";
    const members = rooms.get(room) ?? new Set<WebSocket>();
    rooms.set(room, members);
    members.add(socket);
    socket.on("close", () => members.delete(socket));
    socket.on("message", (data: RawData) => {
      const text = rawText(data);
      // The request id is all the ack needs; no JSON parse, no schema.
      const start = text.indexOf('"requestId":"') + 13;
      const requestId = text.slice(start, text.indexOf('"', start));
      socket.send(`{"requestId":"${requestId}","sendAck":{}}`);
      // Encoded once, like parley's EncodedEvent.
      const frame = Buffer.from(`{"message":${text}}`);
      for (const peer of members) if (peer !== socket && peer.readyState === WebSocket.OPEN) peer.send(frame, { binary: false });
    });
    socket.send(welcome, { binary: false });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const address = http.address();
  process.stdout.write(`${JSON.stringify({ msg: "raw serving", port: typeof address === "object" && address !== null ? address.port : 0 })}\n`);
  const stop = () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    http.close(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  // Never outlive the benchmark.
  process.stdin.on("end", stop);
  process.stdin.resume();
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  return data instanceof ArrayBuffer ? Buffer.from(data).toString("utf8") : data.toString("utf8");
}

await rawServer();
