import type { EntityManager } from "@mikro-orm/postgresql";
import type { ChatMessage, RoomEvent } from "../../../gen/parley/v1/chat_pb.js";
import { ROOM_EVENT_COLUMNS, type RoomEventRow, toRoomEvent } from "../store/room-event-rows.js";
import type { MessageStore } from "./message-store.js";

/**
 * A room's log: its messages (chat_messages) and its other events
 * (room_events), one gapless sequence between them. Messages travel as
 * ChatMessage — the hot path, unchanged by the log — and every other event
 * as a RoomEvent; both carry `room` and `seq`, which is all the fan-out and
 * the follow loop need.
 */
export type RoomLogItem = ChatMessage | RoomEvent;

export function isMessage(item: RoomLogItem): item is ChatMessage {
  return item.$typeName === "parley.v1.ChatMessage";
}

/**
 * Reads a room's log by seq. Messages are read first; room_events only
 * when the messages leave a hole where events may be (membership changes
 * are rare beside messages, so a busy room's replay and fan-out reads cost
 * what they cost before the log had events).
 */
export class RoomLog {
  constructor(private readonly messages: MessageStore) {}

  /** Items with seq > afterSeq, ascending, at most `limit`, gapless. */
  async readAfter(em: EntityManager, room: string, afterSeq: bigint, limit: number): Promise<RoomLogItem[]> {
    const messages = await this.messages.readAfter(em, room, afterSeq, limit);
    if (messages.length === limit && messages.at(-1)?.seq === afterSeq + BigInt(limit)) return messages;
    const events = await readEvents(em, `room_id = ? and seq > ? order by seq limit ?`, [room, afterSeq.toString(), limit]);
    return merge(messages, events, ascending).slice(0, limit);
  }

  /** Items with seq in [from, to], ascending. */
  async readRange(em: EntityManager, room: string, from: bigint, to: bigint): Promise<RoomLogItem[]> {
    const messages = await this.messages.readRange(em, room, from, to);
    if (BigInt(messages.length) === to - from + 1n) return messages;
    const events = await readEvents(em, `room_id = ? and seq between ? and ? order by seq`, [room, from.toString(), to.toString()]);
    return merge(messages, events, ascending);
  }

  /** How many of the room's events after `seq` are not messages (few: membership and settings changes). */
  async countEventsAfter(em: EntityManager, room: string, seq: bigint): Promise<bigint> {
    const rows = await em.execute<{ n: string }[]>(`select count(*) as n from room_events where room_id = ? and seq > ?`, [room, seq.toString()]);
    return BigInt(rows[0]?.n ?? "0");
  }

  /** Items with seq < beforeSeq (the newest when beforeSeq is 0), descending, at most `limit`. */
  async readBefore(em: EntityManager, room: string, beforeSeq: bigint, limit: number): Promise<RoomLogItem[]> {
    const messages = await this.messages.readBefore(em, room, beforeSeq, limit);
    const bound = beforeSeq === 0n ? "" : "and seq < ?";
    const params = beforeSeq === 0n ? [room, limit] : [room, beforeSeq.toString(), limit];
    const events = await readEvents(em, `room_id = ? ${bound} order by seq desc limit ?`, params);
    return merge(messages, events, descending).slice(0, limit);
  }
}

async function readEvents(em: EntityManager, where: string, params: (string | number)[]): Promise<RoomEvent[]> {
  const rows = await em.execute<RoomEventRow[]>(`select ${ROOM_EVENT_COLUMNS} from room_events where ${where}`, params);
  return rows.map(toRoomEvent);
}

const ascending = (a: RoomLogItem, b: RoomLogItem): boolean => a.seq < b.seq;
const descending = (a: RoomLogItem, b: RoomLogItem): boolean => a.seq > b.seq;

/** Two lists sorted by `before` as one (seqs never repeat between them). */
function merge(messages: readonly RoomLogItem[], events: readonly RoomLogItem[], before: (a: RoomLogItem, b: RoomLogItem) => boolean): RoomLogItem[] {
  if (events.length === 0) return [...messages];
  const merged: RoomLogItem[] = [];
  let m = 0;
  let e = 0;
  while (m < messages.length || e < events.length) {
    const message = messages[m];
    const event = events[e];
    if (event === undefined || (message !== undefined && before(message, event))) {
      merged.push(message as RoomLogItem);
      m++;
    } else {
      merged.push(event);
      e++;
    }
  }
  return merged;
}
