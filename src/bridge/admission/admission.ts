// Who may open a WebSocket on this bridge, and what they share once in:
// the caps per user and per address, the TCP connections that have no
// WebSocket yet, and each user's budget across their connections.
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { ErrorCategory } from "../../../gen/parley/v1/errors_pb.js";
import { ParleyError } from "../../wire/index.js";
import type { AdmissionLimits } from "../limits.js";
import { ClientAddresses } from "./client-address.js";
import { KeyedCounter } from "./keyed-counter.js";
import { PendingConnections } from "./pending-connections.js";
import { type UserBudget, UserBudgets } from "./user-budgets.js";

/** How long a client refused at a connection cap is told to wait. */
const CAP_RETRY_AFTER_MS = 2_000;

/** What an admitted connection holds until its socket closes. */
export interface Seat {
  readonly budget: UserBudget;
  /** Gives back the address's and the user's connection (once). */
  readonly release: () => void;
}

/** See the comment at the top of this file. */
export class Admission {
  readonly limits: AdmissionLimits;
  readonly #addresses: ClientAddresses;
  readonly #byAddress: KeyedCounter<string>;
  readonly #users: UserBudgets;
  readonly #pending: PendingConnections;

  constructor(limits: AdmissionLimits, trustedProxies: readonly string[]) {
    this.limits = limits;
    this.#addresses = new ClientAddresses(trustedProxies);
    this.#byAddress = new KeyedCounter(limits.maxConnectionsPerAddress);
    this.#users = new UserBudgets(limits);
    this.#pending = new PendingConnections(limits.maxPendingConnections, limits.maxPendingConnectionsPerAddress, (address) => this.#addresses.trusts(address));
  }

  /** Counts a TCP connection the server just accepted (dropped at the caps of pending ones). */
  accepted(socket: Socket): void {
    this.#pending.accept(socket);
  }

  /** The connection under `socket` now carries a WebSocket: the connection caps count it from here on. */
  upgraded(socket: Socket): void {
    this.#pending.upgraded(socket);
  }

  /** The client address of an upgrade request (X-Forwarded-For through trusted proxies only). */
  addressOf(request: IncomingMessage): string {
    return this.#addresses.of(request);
  }

  /** One more WebSocket from `address`, or RATE_LIMITED; checked before the token is verified. */
  admitAddress(address: string): () => void {
    const release = this.#byAddress.acquire(address);
    if (release === undefined) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, `too many connections from this address (at most ${this.limits.maxConnectionsPerAddress}, PARLEY_WS_MAX_CONNECTIONS_PER_ADDRESS)`, {
        retryAfterMs: CAP_RETRY_AFTER_MS,
      });
    }
    return release;
  }

  /** One more WebSocket of `user` (with the address's, already held), or RATE_LIMITED. */
  admitUser(user: string, addressRelease: () => void): Seat {
    const awayMs = this.#users.awayMs(user);
    if (awayMs > 0) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, "this user was closed for their rate (4029) and must stay away for the go_away's reconnect_after", { retryAfterMs: awayMs });
    }
    const admitted = this.#users.connect(user);
    if (admitted === undefined) {
      throw new ParleyError(ErrorCategory.RATE_LIMITED, `too many connections of this user (at most ${this.limits.maxConnectionsPerUser}, PARLEY_WS_MAX_CONNECTIONS_PER_USER)`, {
        retryAfterMs: CAP_RETRY_AFTER_MS,
      });
    }
    return {
      budget: admitted.budget,
      release: () => {
        admitted.release();
        addressRelease();
      },
    };
  }

  close(): void {
    this.#users.close();
  }
}
