import type { Member, ParleyClient, ParleyClientError, Room, RoomHandle } from "../../client/index.js";
import { MembershipState, RoomKind } from "../../client/index.js";
import type { TimelineEntry } from "./timeline.js";

/** What changed in a room, for the page to redraw only that. */
export type RoomChange = { readonly what: "entry"; readonly entry: TimelineEntry } | { readonly what: "info" | "members" | "pending" | "notice" };

interface PendingSend {
  readonly body: string;
  failure: string | undefined;
}

/**
 * What the page knows of one room: its log as followed through the client
 * library (from seq 1, so that opening it shows everything), the user's
 * standing from GetRoom / ListMyRooms, the members, the sends on their way,
 * and why the room cannot be read, if it cannot.
 *
 * The unread count follows the server's rule: messages by others after the
 * read position, where the user's own sends move the position up.
 */
export class RoomState {
  info: Room | undefined;
  members: readonly Member[] | undefined;
  readonly entries: TimelineEntry[] = [];
  readonly pending = new Map<string, PendingSend>();
  /** Why the room is not (or no longer) received: a refused follow, a refused GetRoom, a revocation. */
  notice: string | undefined;
  /** The follow was ended by the server (kicked, banned, left a room that is not public). */
  revoked = false;
  #readSeq = 0n;
  #handle: RoomHandle | undefined;
  #caughtUp = false;
  #marking = false;
  #markAgain = false;

  constructor(
    readonly id: string,
    private readonly me: string,
    private readonly changed: (room: RoomState, change: RoomChange) => void,
  ) {}

  get following(): boolean {
    return this.#handle !== undefined && !this.#handle.left;
  }

  /** The follow has replayed what was stored when it started; entries since are live. */
  get caughtUp(): boolean {
    return this.#caughtUp;
  }

  get joined(): boolean {
    return this.info?.myState === MembershipState.JOINED;
  }

  /** The highest seq shown (messages and changes alike). */
  get lastSeq(): bigint {
    return this.entries.at(-1)?.seq ?? 0n;
  }

  /** Messages by others after the read position; the server's count until the replay is done. */
  get unread(): bigint {
    if (!this.#caughtUp) return this.info?.unreadCount ?? 0n;
    let count = 0n;
    for (const entry of this.entries) if (entry.kind === "message" && entry.seq > this.#readSeq && entry.message.sender !== this.me) count++;
    return count;
  }

  /** Takes a fresher description (GetRoom, ListMyRooms, a membership answer). */
  describe(room: Room): void {
    this.info = room;
    if (room.myReadSeq > this.#readSeq) this.#readSeq = room.myReadSeq;
    this.changed(this, { what: "info" });
  }

  setNotice(notice: string | undefined): void {
    this.notice = notice;
    this.changed(this, { what: "notice" });
  }

  /**
   * Follows the room's log, from where this page left it (seq 1 the first
   * time); nothing if already following, unless `fresh` (after joining: a
   * follow asked before may still be refused).
   */
  follow(client: ParleyClient, fresh = false): void {
    if (this.following && !fresh) return;
    if (this.#handle !== undefined && !this.#handle.left) this.#handle.leave();
    this.revoked = false;
    this.#caughtUp = false;
    const handle: RoomHandle = client.join(this.id, {
      afterSeq: this.lastSeq,
      onMessage: (message) => {
        if (message.sender === this.me && message.seq > this.#readSeq) this.#readSeq = message.seq;
        if (message.sender === this.me) this.pending.delete(message.clientMsgId);
        this.#add({ kind: "message", seq: message.seq, message });
      },
      onMembership: (change, event) => {
        if (change.user === this.me && this.info !== undefined) {
          this.info.myState = change.state;
          this.info.myRole = change.role;
        }
        this.#add({ kind: "membership", seq: event.seq, change, event });
      },
      onSettings: (change, event) => {
        this.#add({ kind: "settings", seq: event.seq, change, event });
      },
      onCaughtUp: () => {
        this.#caughtUp = true;
        this.changed(this, { what: "info" });
      },
      onError: (error) => {
        // Only the latest follow speaks for the room.
        if (handle !== this.#handle) return;
        // A refused follow is over: drop it, so that opening the room again asks again.
        handle.leave();
        this.setNotice(`Cannot read this room: ${error.message}`);
      },
      onRevoked: (error: ParleyClientError) => {
        if (handle !== this.#handle) return;
        this.revoked = true;
        this.setNotice(`You no longer receive this room: ${error.message}`);
      },
    });
    this.#handle = handle;
  }

  /** Shows a send as pending until its message arrives in the log. */
  addPending(clientMsgId: string, body: string): void {
    this.pending.set(clientMsgId, { body, failure: undefined });
    this.changed(this, { what: "pending" });
  }

  failPending(clientMsgId: string, failure: string): void {
    const entry = this.pending.get(clientMsgId);
    if (entry === undefined) return;
    entry.failure = failure;
    this.changed(this, { what: "pending" });
  }

  /**
   * Moves the read position to the newest entry shown, one request at a
   * time (a newer entry arriving meanwhile is marked after it). Only a
   * joined member has a read position; nothing is asked for anyone else.
   */
  markRead(): void {
    const handle = this.#handle;
    if (handle === undefined || !this.joined || this.lastSeq <= this.#readSeq) return;
    if (this.#marking) {
      this.#markAgain = true;
      return;
    }
    this.#marking = true;
    handle
      .markRead(this.lastSeq)
      .then((answer) => {
        if (answer.readSeq > this.#readSeq) this.#readSeq = answer.readSeq;
        this.changed(this, { what: "info" });
      })
      .catch(() => {
        // Not a member after all (a stale standing): the badge stays as it is.
      })
      .finally(() => {
        this.#marking = false;
        if (this.#markAgain) {
          this.#markAgain = false;
          this.markRead();
        }
      });
  }

  /** The other users of a direct room, once its members are known. */
  get title(): string {
    const info = this.info;
    if (info?.kind === RoomKind.DIRECT) {
      const others = (this.members ?? []).map((member) => member.user).filter((user) => user !== this.me);
      return others.length === 0 ? "direct message" : `@${others.join(", @")}`;
    }
    return info?.name !== undefined && info.name !== "" ? info.name : this.id;
  }

  #add(entry: TimelineEntry): void {
    this.entries.push(entry);
    this.changed(this, { what: "entry", entry });
  }
}
