import type { ParleyClient, Room } from "../../client/index.js";
import { MembershipState, ROOM_ID, RoomKind, RoomRole } from "../../client/index.js";
import { element, errorText, make } from "./dom.js";
import { drawRoomList } from "./room-list.js";
import { type RoomChange, RoomState } from "./room-state.js";
import { entryItem, kindName, pendingItem, roleName } from "./timeline.js";

/** Rooms the list asks for, and follows for their unread counts: one page, well within the bridge's 64 rooms per connection. */
const LISTED_ROOMS = 50;

/**
 * The rooms part of the demo page: the list of the user's rooms with unread
 * badges, the open room (its log, members, notices) and the room
 * operations, all through `client.rooms` and followed-room handles.
 */
export class RoomsPage {
  readonly #rooms = new Map<string, RoomState>();
  /** The ids of the list, in its order: ListMyRooms's, rooms made or joined here since on top. */
  #listed: string[] = [];
  #current: RoomState | undefined;
  #refreshes = 0;

  constructor(
    private readonly client: ParleyClient,
    private readonly me: string,
  ) {}

  /** Asks for the user's rooms again (new invitations and DMs appear here) and follows the joined ones. */
  async refresh(): Promise<void> {
    const ticket = ++this.#refreshes;
    try {
      const page = await this.client.rooms.listMyRooms({ pageSize: LISTED_ROOMS });
      // An older answer that arrives after a newer one changes nothing.
      if (ticket !== this.#refreshes) return;
      for (const room of page.rooms) this.#describe(this.#room(room.id), room);
      this.#listed = page.rooms.map((room) => room.id);
      this.#drawList();
      // The number of the refresh shown (they count up): something a test can wait on.
      element("room-list").dataset.refreshed = ticket.toString();
    } catch (error) {
      this.#status("rooms-status", `Could not list rooms: ${errorText(error)}`);
    }
  }

  /** Shows `room`: follows its log (a refusal is shown), describes it, lists its members, reads it. */
  open(id: string): void {
    if (!ROOM_ID.test(id)) {
      this.#status("rooms-status", `"${id}" is not a room name: letters, digits, _ . : - (up to 128)`);
      return;
    }
    const room = this.#room(id);
    this.#current = room;
    this.#status("room-status", "");
    // A room refused before is asked again, and its old notice goes.
    if (!room.following) room.setNotice(undefined);
    room.follow(this.client);
    this.#drawRoom();
    this.#drawList();
    void this.#load(room);
  }

  async create(name: string, kind: RoomKind): Promise<void> {
    await this.#make(`create ${name}`, () => this.client.rooms.createRoom({ kind, room: name, name }));
  }

  /** Opens the direct conversation with `user`: the same room every time. */
  async directMessage(user: string): Promise<void> {
    await this.#make(`open a conversation with ${user}`, () => this.client.rooms.createRoom({ kind: RoomKind.DIRECT, members: [user] }));
  }

  async invite(user: string): Promise<void> {
    await this.#act(`invite ${user}`, (room) => this.client.rooms.invite(room, user), `Invited ${user}`);
  }

  async kick(user: string): Promise<void> {
    await this.#act(`kick ${user}`, (room) => this.client.rooms.kick(room, user), `Kicked ${user}`);
  }

  /** Joins the open room as a member (public, or invited), and follows it anew: a follow asked before joining was refused. */
  async join(): Promise<void> {
    const room = this.#current;
    if (room === undefined) return;
    try {
      await this.client.rooms.join(room.id);
    } catch (error) {
      this.#status("room-status", `Could not join: ${errorText(error)}`);
      return;
    }
    this.#status("room-status", "Joined");
    room.setNotice(undefined);
    room.follow(this.client, true);
    await this.#load(room);
  }

  async leave(): Promise<void> {
    await this.#act("leave", (room) => this.client.rooms.leave(room), "Left the room");
    await this.refresh();
  }

  /** Sends to the open room; the message shows as pending until it arrives in the room's log. */
  send(body: string): void {
    const room = this.#current;
    if (room === undefined) return;
    const clientMsgId = crypto.randomUUID();
    room.addPending(clientMsgId, body);
    this.client.send(room.id, body, clientMsgId).catch((error: unknown) => {
      room.failPending(clientMsgId, errorText(error));
    });
  }

  #room(id: string): RoomState {
    let room = this.#rooms.get(id);
    if (room === undefined) {
      room = new RoomState(id, this.me, (changed, change) => {
        this.#changed(changed, change);
      });
      this.#rooms.set(id, room);
    }
    return room;
  }

  #describe(room: RoomState, info: Room): void {
    room.describe(info);
    if (room.joined) room.follow(this.client);
    if (room.joined && !this.#listed.includes(room.id)) this.#listed.unshift(room.id);
    if (info.kind === RoomKind.DIRECT && room.members === undefined) void this.#loadMembers(room);
  }

  /** GetRoom and ListMembers for the open room; a refusal is its notice (the room's name is all the user learns). */
  async #load(room: RoomState): Promise<void> {
    try {
      this.#describe(room, await this.client.rooms.getRoom(room.id));
    } catch (error) {
      room.setNotice(`Cannot open this room: ${errorText(error)}`);
      return;
    }
    await this.#loadMembers(room);
    if (room === this.#current) room.markRead();
  }

  async #loadMembers(room: RoomState): Promise<void> {
    try {
      room.members = (await this.client.rooms.listMembers(room.id)).members;
      this.#changed(room, { what: "members" });
    } catch {
      // Not readable (any more): the notice says so; the members stay as they were.
    }
  }

  /** Creates (or opens) a room through `call`, puts it on top of the list and opens it. */
  async #make(what: string, call: () => ReturnType<ParleyClient["rooms"]["createRoom"]>): Promise<void> {
    try {
      const { room } = await call();
      if (room === undefined) return;
      this.#describe(this.#room(room.id), room);
      this.#listed = [room.id, ...this.#listed.filter((id) => id !== room.id)];
      this.open(room.id);
    } catch (error) {
      this.#status("rooms-status", `Could not ${what}: ${errorText(error)}`);
    }
  }

  /** A membership operation on the open room; the user's standing is read again after it. */
  async #act(what: string, call: (room: string) => Promise<unknown>, done: string): Promise<void> {
    const room = this.#current;
    if (room === undefined) return;
    try {
      await call(room.id);
      this.#status("room-status", done);
    } catch (error) {
      this.#status("room-status", `Could not ${what}: ${errorText(error)}`);
      return;
    }
    try {
      this.#describe(room, await this.client.rooms.getRoom(room.id));
    } catch {
      // No longer readable (left a private room): the revocation notice tells.
    }
  }

  #changed(room: RoomState, change: RoomChange): void {
    const current = room === this.#current;
    switch (change.what) {
      case "entry":
        if (current) {
          this.#appendEntry(change.entry);
          room.markRead();
          // Replayed changes are in the members #load asks for; live ones change them.
          if (change.entry.kind === "membership" && room.caughtUp) void this.#loadMembers(room);
          if (change.entry.kind !== "message") this.#drawHeader();
          // A first send joins a public room without an event (rooms on first use, in development): ask again.
          else if (change.entry.message.sender === this.me && !room.joined && room.caughtUp) void this.#load(room);
        }
        break;
      case "pending":
        if (current) this.#drawTimeline();
        break;
      case "members":
        if (current) this.#drawMembers();
        break;
      case "info":
        if (current) {
          this.#drawHeader();
          room.markRead();
        }
        break;
      case "notice":
        if (current) this.#drawHeader();
        break;
    }
    this.#drawList();
  }

  #drawList(): void {
    const rooms = this.#listed.map((id) => this.#room(id));
    drawRoomList(element("room-list"), rooms, this.#current, (id) => {
      this.open(id);
    });
  }

  #drawRoom(): void {
    this.#drawHeader();
    this.#drawMembers();
    this.#drawTimeline();
  }

  /** Name, kind, the notice, and which of join / leave / invite apply. */
  #drawHeader(): void {
    const room = this.#current;
    if (room === undefined) return;
    const info = room.info;
    const name = element("room-name");
    name.textContent = room.title;
    name.dataset.room = room.id;
    element("room-kind").textContent = info === undefined ? "" : kindName(info.kind);
    const notice = element("room-notice");
    notice.textContent = room.notice ?? "";
    notice.hidden = room.notice === undefined;
    const state = info?.myState;
    const direct = info?.kind === RoomKind.DIRECT;
    element("join-room").hidden = room.joined || !(state === MembershipState.INVITED || info?.kind === RoomKind.PUBLIC || (direct && state === MembershipState.LEFT));
    element("leave-room").hidden = !(room.joined || state === MembershipState.INVITED);
    element("invite-form").hidden = !room.joined || direct;
  }

  #drawMembers(): void {
    const room = this.#current;
    const list = element("members");
    list.replaceChildren();
    if (room === undefined) return;
    const myRole = room.joined ? (room.info?.myRole ?? RoomRole.UNSPECIFIED) : RoomRole.UNSPECIFIED;
    const mayKick = myRole >= RoomRole.ADMIN && room.info?.kind !== RoomKind.DIRECT;
    for (const member of room.members ?? []) {
      const standing = member.state === MembershipState.JOINED ? roleName(member.role) : "invited";
      const item = make("li", { "data-user": member.user, "data-testid": "member" }, make("span", { class: "sender" }, member.user), make("span", { class: "meta" }, standing));
      if (mayKick && member.user !== this.me) {
        const kick = make("button", { type: "button", class: "secondary small", "aria-label": `Kick ${member.user}` }, "Kick");
        kick.addEventListener("click", () => {
          void this.kick(member.user);
        });
        item.append(kick);
      }
      list.append(item);
    }
  }

  #drawTimeline(): void {
    const room = this.#current;
    const list = element("messages");
    list.replaceChildren();
    if (room === undefined) return;
    for (const entry of room.entries) list.append(entryItem(entry, this.me));
    for (const [clientMsgId, pending] of room.pending) list.append(pendingItem(clientMsgId, pending.body, pending.failure));
    list.scrollTop = list.scrollHeight;
  }

  /** The log arrives in seq order: stored entries stay sorted, pending sends last. */
  #appendEntry(entry: Parameters<typeof entryItem>[0]): void {
    const list = element("messages");
    if (entry.kind === "message" && entry.message.sender === this.me) list.querySelector(`li.pending[data-client-msg-id="${CSS.escape(entry.message.clientMsgId)}"]`)?.remove();
    list.insertBefore(entryItem(entry, this.me), list.querySelector("li.pending"));
    list.scrollTop = list.scrollHeight;
  }

  #status(id: "rooms-status" | "room-status", text: string): void {
    element(id).textContent = text;
  }
}
