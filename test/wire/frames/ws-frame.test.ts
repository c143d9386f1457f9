import type { AddressInfo } from "node:net";
import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { serverFrame } from "../../../src/wire/frames/ws-frame.js";

// A real ws server and client: the frames written straight to the server's
// socket must reach the client as the messages ws would have sent, at every
// length encoding (7-bit, 16-bit, 64-bit) and its edges.
const LENGTHS = [0, 1, 125, 126, 127, 65_535, 65_536, 70_000];

let server: WebSocketServer;
let port: number;

beforeAll(async () => {
  server = new WebSocketServer({ port: 0, host: "127.0.0.1", perMessageDeflate: false });
  await new Promise<void>((resolve) => server.once("listening", () => { resolve(); }));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => { server.close(() => { resolve(); }); });
});

/** Connects a client, has the server write `frames` straight to its socket, returns what the client received. */
async function received(frames: readonly Buffer[]): Promise<{ data: Buffer; binary: boolean }[]> {
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  const messages: { data: Buffer; binary: boolean }[] = [];
  const all = new Promise<void>((resolve, reject) => {
    client.on("message", (data: Buffer, binary: boolean) => {
      messages.push({ data, binary });
      if (messages.length === frames.length) resolve();
    });
    client.on("error", reject);
    client.on("close", (code) => { reject(new Error(`closed with ${code}`)); });
  });
  const [accepted] = await Promise.all([
    new Promise<WebSocket>((resolve) => server.once("connection", resolve)),
    new Promise<void>((resolve) => client.once("open", () => { resolve(); })),
  ]);
  const socket = (accepted as unknown as { _socket: Socket })._socket;
  for (const frame of frames) socket.write(frame);
  await all;
  client.removeAllListeners("close");
  client.close();
  return messages;
}

describe("serverFrame", () => {
  it("frames text of every length encoding as ws's client reads it", async () => {
    const texts = LENGTHS.map((length) => "é".repeat(Math.floor(length / 2)) + "x".repeat(length % 2));
    const messages = await received(texts.map((text) => serverFrame(Buffer.from(text, "utf8"), false)));
    expect(messages.map((message) => message.binary)).toEqual(texts.map(() => false));
    expect(messages.map((message) => message.data.toString("utf8"))).toEqual(texts);
  });

  it("frames binary payloads of every length encoding byte for byte", async () => {
    const payloads = LENGTHS.map((length) => Buffer.from(Array.from({ length }, (_, i) => (i * 31 + 7) % 256)));
    const messages = await received(payloads.map((payload) => serverFrame(payload, true)));
    expect(messages.map((message) => message.binary)).toEqual(payloads.map(() => true));
    messages.forEach((message, i) => {
      expect(Buffer.compare(message.data, payloads[i] ?? Buffer.alloc(0))).toBe(0);
    });
  });

  it("writes the smallest header each length allows (RFC 6455 §5.2)", () => {
    expect(serverFrame(Buffer.alloc(125), false).length).toBe(2 + 125);
    expect(serverFrame(Buffer.alloc(126), false).subarray(0, 4)).toEqual(Buffer.from([0x81, 126, 0, 126]));
    expect(serverFrame(Buffer.alloc(65_536), true).subarray(0, 10)).toEqual(Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]));
  });
});
