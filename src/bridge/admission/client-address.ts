import type { IncomingMessage } from "node:http";
import proxyAddr from "proxy-addr";

/**
 * Where a request comes from. Without trusted proxies, the TCP peer. Behind
 * a load balancer the peer is the balancer, so `X-Forwarded-For` is read —
 * from the right, only through hops that are trusted proxies — and the
 * first untrusted address is the client's. A header from anyone else is
 * ignored: a client cannot choose its own address by sending one.
 */
export class ClientAddresses {
  readonly #trust: (address: string, hop: number) => boolean;

  /** `trusted`: addresses, CIDR ranges or proxy-addr's names (`loopback`, `uniquelocal`, `linklocal`). */
  constructor(trusted: readonly string[]) {
    this.#trust = trusted.length === 0 ? () => false : proxyAddr.compile([...trusted]);
  }

  /** The client's address for `request`. */
  of(request: IncomingMessage): string {
    return normalize(proxyAddr(request, this.#trust));
  }

  /** Whether `address` (a TCP peer) is a trusted proxy. */
  trusts(address: string): boolean {
    return this.#trust(address, 0);
  }
}

/** `::ffff:10.0.0.1` and `10.0.0.1` are one client. */
function normalize(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
