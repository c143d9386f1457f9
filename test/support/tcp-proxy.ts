import { connect, createServer, type Socket } from "node:net";

/** A TCP proxy on loopback in front of a server, that can fail the way networks do. */
export interface TcpProxy {
  /** `127.0.0.1:port`, for clients. */
  readonly address: string;
  /** Connections to the server that are still open. */
  readonly openUpstreams: number;
  /** Connections clients made through the proxy, ever. */
  readonly connections: number;
  /** Closes every connection on both sides at once: a client that went away. */
  cut(): void;
  /**
   * Stops forwarding on the one connection that has carried the most bytes
   * (one session among several) and returns the function that closes it:
   * what was sent in between is lost with it.
   */
  holdBusiest(): () => void;
  /**
   * Stops forwarding in both directions and leaves every connection open:
   * a peer that vanished without a word (a machine switched off, a cable
   * pulled). Only the server's keepalive can notice.
   */
  blackhole(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const colon = target.lastIndexOf(":");
  const host = target.slice(0, colon);
  const port = Number(target.slice(colon + 1));
  const sockets = new Set<Socket>();
  /** Each client connection's upstream, and the bytes the pair carried. */
  const pairs = new Map<Socket, { upstream: Socket; bytes: number; held: boolean }>();
  let upstreams = 0;
  let connections = 0;
  let dropping = false;
  const server = createServer((client) => {
    const upstream = connect(port, host);
    const pair = { upstream, bytes: 0, held: false };
    pairs.set(client, pair);
    client.once("close", () => pairs.delete(client));
    upstreams += 1;
    connections += 1;
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
    }
    const forward = (from: Socket, to: Socket) => {
      from.on("data", (chunk: Buffer) => {
        pair.bytes += chunk.length;
        if (!dropping && !pair.held) to.write(chunk);
      });
      from.on("end", () => {
        if (!dropping) to.end();
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    // A broken side is closed with the other; errors are the point here, not failures.
    client.on("error", () => {
      if (!dropping) upstream.destroy();
    });
    upstream.on("error", () => {
      if (!dropping) client.destroy();
    });
    upstream.once("close", () => {
      upstreams -= 1;
      if (!dropping) client.destroy();
    });
    client.once("close", () => {
      if (!dropping) upstream.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const bound = server.address();
  const listening = typeof bound === "object" && bound !== null ? bound.port : 0;
  return {
    address: `127.0.0.1:${listening}`,
    get openUpstreams() {
      return upstreams;
    },
    get connections() {
      return connections;
    },
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    holdBusiest() {
      const busiest = [...pairs].sort(([, a], [, b]) => b.bytes - a.bytes)[0];
      if (busiest === undefined) throw new Error("no connection to hold");
      const [client, pair] = busiest;
      pair.held = true;
      return () => {
        client.destroy();
        pair.upstream.destroy();
      };
    },
    blackhole() {
      dropping = true;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
}
