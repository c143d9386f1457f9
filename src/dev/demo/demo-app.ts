import type { Notification } from "../../client/index.js";
import { ParleyClient, RoomKind } from "../../client/index.js";
import { element, form, input, onSubmit, select } from "./dom.js";
import { RoomsPage } from "./rooms-page.js";

// The demo page: everything it does goes through the client library.

async function fetchToken(user: string): Promise<string> {
  const response = await fetch("/dev/token", { method: "POST", body: JSON.stringify({ user }) });
  const body = (await response.json()) as { token?: string; message?: string };
  if (!response.ok || body.token === undefined) throw new Error(body.message ?? "could not get a token");
  return body.token;
}

function start(user: string, roomName: string): void {
  element("login").hidden = true;
  element("app").hidden = false;
  element("whoami").textContent = `signed in as ${user}`;
  const state = element("state");

  const client = new ParleyClient({ url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`, token: () => fetchToken(user) });
  const rooms = new RoomsPage(client, user);
  const showState = (value: string) => {
    state.dataset.state = value;
    state.textContent = value;
    // Rooms others added the user to while away show up on reconnect.
    if (value === "connected" || value === "resumed") void rooms.refresh();
  };
  showState(client.state);
  client.onStateChange(showState);

  rooms.open(roomName);
  onSubmit("send-form", input("body"), (body) => {
    rooms.send(body);
  });
  element("refresh-rooms").addEventListener("click", () => {
    void rooms.refresh();
  });
  onSubmit("open-form", input("open-room"), (room) => {
    rooms.open(room);
  });
  onSubmit("create-form", input("new-room"), (name) => {
    void rooms.create(name, select("new-room-kind").value === "private" ? RoomKind.PRIVATE : RoomKind.PUBLIC);
  });
  onSubmit("dm-form", input("dm-user"), (other) => {
    void rooms.directMessage(other);
  });
  onSubmit("invite-form", input("invite-user"), (invited) => {
    void rooms.invite(invited);
  });
  element("join-room").addEventListener("click", () => {
    void rooms.join();
  });
  element("leave-room").addEventListener("click", () => {
    void rooms.leave();
  });

  startNotifications(client, user);
}

function startNotifications(client: ParleyClient, user: string): void {
  const inbox = element("notifications");
  const unread = element("unread");
  const renderUnread = (count: bigint) => {
    unread.textContent = count.toString();
    unread.dataset.count = count.toString();
  };
  let lastNotificationSeq = 0n;
  const renderNotification = (notification: Notification) => {
    lastNotificationSeq = notification.seq;
    const item = document.createElement("li");
    item.className = notification.readAt === undefined ? "unread" : "";
    item.dataset.testid = "notification";
    item.textContent = notification.title;
    inbox.prepend(item);
  };
  client.notifications.onUnreadCount(renderUnread);
  client.notifications.subscribe(renderNotification, 0n);
  element("notify-me").addEventListener("click", () => {
    void fetch("/dev/notify", { method: "POST", body: JSON.stringify({ user, title: `Ping at ${new Date().toLocaleTimeString()}` }) });
  });
  element("mark-read").addEventListener("click", () => {
    void client.notifications.ack({ upToSeq: lastNotificationSeq }).then(() => {
      for (const item of inbox.querySelectorAll("li")) item.className = "";
    });
  });
}

form("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  start(input("name").value.trim(), input("room").value.trim());
});
