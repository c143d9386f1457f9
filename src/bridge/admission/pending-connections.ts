import type { Socket } from "node:net";

/**
 * TCP connections that carry no WebSocket yet — a request still arriving
 * (slowloris), an upgrade being authenticated, plain HTTP — counted in all
 * and per peer address, so that holding many of them cannot starve the
 * bridge. Past either cap a new connection is dropped as it is accepted,
 * before a byte of it is read. Trusted proxies are counted in the total
 * only: every client comes through them.
 */
export class PendingConnections {
  /** Release functions by `address|port`, the key the raw and the TLS socket share. */
  readonly #pending = new Map<string, () => void>();
  readonly #byAddress = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly maxPerAddress: number,
    private readonly trustedPeer: (address: string) => boolean,
  ) {}

  /** A TCP connection was accepted (the server's `connection` event): counted, or dropped at a cap. */
  accept(socket: Socket): void {
    const address = socket.remoteAddress ?? "";
    const key = `${address}|${socket.remotePort ?? ""}`;
    const counted = !this.trustedPeer(address);
    const perAddress = counted ? (this.#byAddress.get(address) ?? 0) : 0;
    if (this.#pending.size >= this.max || perAddress >= this.maxPerAddress) {
      socket.destroy();
      return;
    }
    if (counted) this.#byAddress.set(address, perAddress + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#pending.delete(key);
      if (!counted) return;
      const left = (this.#byAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.#byAddress.delete(address);
      else this.#byAddress.set(address, left);
    };
    this.#pending.set(key, release);
    socket.once("close", release);
  }

  /** The connection under `socket` now carries a WebSocket (counted by the connection caps from here on). */
  upgraded(socket: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }): void {
    this.#pending.get(`${socket.remoteAddress ?? ""}|${socket.remotePort ?? ""}`)?.();
  }
}
