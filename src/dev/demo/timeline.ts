import type { ChatMessage, MembershipChange, RoomEvent, RoomSettingsChange } from "../../client/index.js";
import { MembershipState, RoomKind, RoomRole } from "../../client/index.js";
import { make } from "./dom.js";

// A room's log as the page shows it: messages, and membership and settings
// changes as one line each ("alice kicked bob"), in seq order.

export type TimelineEntry =
  | { readonly kind: "message"; readonly seq: bigint; readonly message: ChatMessage }
  | { readonly kind: "membership"; readonly seq: bigint; readonly change: MembershipChange; readonly event: RoomEvent }
  | { readonly kind: "settings"; readonly seq: bigint; readonly change: RoomSettingsChange; readonly event: RoomEvent };

export function kindName(kind: RoomKind): string {
  switch (kind) {
    case RoomKind.PUBLIC:
      return "public";
    case RoomKind.PRIVATE:
      return "private";
    case RoomKind.DIRECT:
      return "direct";
    case RoomKind.UNSPECIFIED:
      return "unknown";
  }
}

export function roleName(role: RoomRole): string {
  switch (role) {
    case RoomRole.READ_ONLY:
      return "read-only";
    case RoomRole.MEMBER:
      return "member";
    case RoomRole.ADMIN:
      return "admin";
    case RoomRole.OWNER:
      return "owner";
    case RoomRole.UNSPECIFIED:
      return "no role";
  }
}

/** One line for a membership change; `actor` made it (the user themself for a join or a leave). */
function describeMembership(change: MembershipChange, actor: string): string {
  const { user } = change;
  const reason = change.reason === "" ? "" : ` (${change.reason})`;
  switch (change.state) {
    case MembershipState.INVITED:
      return `${actor} invited ${user}`;
    case MembershipState.JOINED:
      if (change.previousState === MembershipState.JOINED) return `${actor} made ${user} ${roleName(change.role)}`;
      return actor === user ? `${user} joined` : `${actor} added ${user}`;
    case MembershipState.LEFT:
      if (change.previousState === MembershipState.BANNED) return `${actor} unbanned ${user}`;
      if (change.previousState === MembershipState.INVITED) return `${user} declined the invitation`;
      return `${user} left`;
    case MembershipState.KICKED:
      return `${actor} kicked ${user}${reason}`;
    case MembershipState.BANNED:
      return `${actor} banned ${user}${reason}`;
    case MembershipState.UNSPECIFIED:
      return `${user}'s membership changed`;
  }
}

function describeSettings(change: RoomSettingsChange, actor: string): string {
  const name = change.name === "" ? "" : ` "${change.name}"`;
  const topic = change.topic === "" ? "" : `, topic "${change.topic}"`;
  return change.created ? `${actor} created the ${kindName(change.kind)} room${name}${topic}` : `${actor} changed the room: ${kindName(change.kind)}${name}${topic}`;
}

function time(seconds: bigint | undefined): string {
  return new Date(Number(seconds ?? 0n) * 1000).toLocaleTimeString();
}

/**
 * The list item of an entry. A message is `sender`, body (a text node) and
 * meta; a change is its sentence and meta, marked `data-testid="event"`.
 */
export function entryItem(entry: TimelineEntry, me: string): HTMLLIElement {
  const meta = make("span", { class: "meta" }, `#${entry.seq} · `);
  if (entry.kind === "message") {
    const { message } = entry;
    meta.append(time(message.createdAt?.seconds));
    return make(
      "li",
      { class: message.sender === me ? "mine" : "", "data-seq": entry.seq.toString(), "data-testid": "message" },
      make("span", { class: "sender" }, message.sender),
      message.body,
      meta,
    );
  }
  meta.append(time(entry.event.createdAt?.seconds));
  const text = entry.kind === "membership" ? describeMembership(entry.change, entry.event.actor) : describeSettings(entry.change, entry.event.actor);
  return make("li", { class: "event", "data-seq": entry.seq.toString(), "data-testid": "event" }, text, meta);
}

/** The list item of a send not acknowledged yet (or refused: `failure`). */
export function pendingItem(clientMsgId: string, body: string, failure: string | undefined): HTMLLIElement {
  const text = failure === undefined ? `${body} (sending…)` : `${body} — not sent: ${failure}`;
  return make("li", { class: "mine pending", "data-client-msg-id": clientMsgId }, text);
}
