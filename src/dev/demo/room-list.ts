import { MembershipState } from "../../client/index.js";
import { make } from "./dom.js";
import type { RoomState } from "./room-state.js";
import { kindName } from "./timeline.js";

/**
 * Draws the list of the user's rooms into `list`, keyed by room id: items
 * are updated in place (a click on a button being redrawn still lands),
 * and put in the order of `rooms`.
 */
export function drawRoomList(list: HTMLElement, rooms: readonly RoomState[], current: RoomState | undefined, open: (room: string) => void): void {
  const wanted = new Set(rooms.map((room) => room.id));
  for (const item of list.querySelectorAll<HTMLLIElement>(":scope > li")) {
    if (!wanted.has(item.dataset.room ?? "")) item.remove();
  }
  for (const [index, room] of rooms.entries()) {
    let item = list.querySelector<HTMLLIElement>(`:scope > li[data-room="${CSS.escape(room.id)}"]`);
    if (item === null) {
      const button = make("button", { type: "button", class: "room-open" }, make("span", { class: "room-title" }), make("span", { class: "kind" }), make("span", { class: "room-tag" }));
      button.addEventListener("click", () => {
        open(room.id);
      });
      item = make("li", { "data-room": room.id, "data-testid": "room-entry" }, button);
    }
    const status = standing(room);
    item.dataset.kind = room.info === undefined ? "" : kindName(room.info.kind);
    item.dataset.state = status;
    item.classList.toggle("current", room === current);
    part(item, ".room-title").textContent = room.title;
    part(item, ".kind").textContent = item.dataset.kind;
    drawTag(part(item, ".room-tag"), status, room.unread);
    // Moved only when out of place, so that an item being clicked stays put.
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] ?? null);
  }
}

function part(item: HTMLElement, selector: string): HTMLElement {
  const found = item.querySelector<HTMLElement>(selector);
  if (found === null) throw new Error(`a room entry without ${selector}`);
  return found;
}

function standing(room: RoomState): string {
  if (room.revoked) return "removed";
  switch (room.info?.myState) {
    case MembershipState.INVITED:
      return "invited";
    case MembershipState.JOINED:
      return "joined";
    case MembershipState.LEFT:
      return "left";
    case MembershipState.KICKED:
      return "kicked";
    case MembershipState.BANNED:
      return "banned";
    case MembershipState.UNSPECIFIED:
    case undefined:
      return "";
  }
}

/** The unread badge of a joined room, or the user's standing (invited, removed, ...). */
function drawTag(tag: HTMLElement, status: string, unread: bigint): void {
  if (status === "joined") {
    tag.className = "room-tag badge";
    tag.dataset.testid = "room-unread";
    tag.dataset.count = unread.toString();
    tag.textContent = unread.toString();
  } else {
    tag.className = "room-tag tag";
    delete tag.dataset.testid;
    delete tag.dataset.count;
    tag.textContent = status;
  }
}
