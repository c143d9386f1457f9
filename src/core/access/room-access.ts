import type { Identity } from "../../runtime/index.js";

/**
 * Who may do what in a room. The single place where room permissions are
 * decided: for now any authenticated user may read and write any room (rooms
 * come into being on first use). Room permissions tighten this function,
 * nothing else; it may throw a PERMISSION_DENIED ParleyError.
 */
export const roomAccess = {
  assertCanSend(_caller: Identity, _room: string): void {
    // Open by design until room permissions exist.
  },
  assertCanRead(_caller: Identity, _room: string): void {
    // Open by design until room permissions exist.
  },
};
