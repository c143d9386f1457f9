import type { Identity } from "../../runtime/index.js";

/**
 * Who may read a room: for now any authenticated user may read any room.
 * Room permissions tighten this function; it may throw a PERMISSION_DENIED
 * ParleyError. Sends and read positions are decided where they are written
 * (write-access.ts, parley_store_chat_batch, MessageStore.markRead).
 */
export const roomAccess = {
  assertCanRead(_caller: Identity, _room: string): void {
    // Open by design until room permissions exist.
  },
};
