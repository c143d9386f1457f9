import type { ChatMessage, Notification } from "../../client/index.js";
import { ParleyClient } from "../../client/index.js";

// The demo page: everything it does goes through the client library.

function element(id: string): HTMLElement {
  const found = document.getElementById(id);
  if (!found) throw new Error(`missing #${id}`);
  return found;
}

function input(id: string): HTMLInputElement {
  const found = element(id);
  if (!(found instanceof HTMLInputElement)) throw new Error(`#${id} is not an input`);
  return found;
}

function form(id: string): HTMLFormElement {
  const found = element(id);
  if (!(found instanceof HTMLFormElement)) throw new Error(`#${id} is not a form`);
  return found;
}

async function fetchToken(user: string): Promise<string> {
  const response = await fetch("/dev/token", { method: "POST", body: JSON.stringify({ user }) });
  const body = (await response.json()) as { token?: string; message?: string };
  if (!response.ok || body.token === undefined) throw new Error(body.message ?? "could not get a token");
  return body.token;
}

function time(message: ChatMessage): string {
  const seconds = Number(message.createdAt?.seconds ?? 0n);
  return new Date(seconds * 1000).toLocaleTimeString();
}

function start(user: string, roomName: string): void {
  element("login").hidden = true;
  element("app").hidden = false;
  element("room-name").textContent = roomName;
  element("whoami").textContent = `signed in as ${user}`;
  const state = element("state");
  const list = element("messages");
  const inbox = element("notifications");
  const unread = element("unread");

  const client = new ParleyClient({ url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`, token: () => fetchToken(user) });
  const showState = (value: string) => {
    state.dataset.state = value;
    state.textContent = value;
  };
  showState(client.state);
  client.onStateChange(showState);

  const render = (message: ChatMessage) => {
    const pending = list.querySelector(`[data-client-msg-id="${CSS.escape(message.clientMsgId)}"]`);
    const item = pending instanceof HTMLLIElement && message.sender === user ? pending : document.createElement("li");
    const wasPending = item.classList.contains("pending");
    item.className = message.sender === user ? "mine" : "";
    item.dataset.seq = message.seq.toString();
    item.dataset.testid = "message";
    item.replaceChildren();
    const sender = document.createElement("span");
    sender.className = "sender";
    sender.textContent = message.sender;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `#${message.seq} · ${time(message)}`;
    item.append(sender, document.createTextNode(message.body), meta);
    // Messages arrive in seq order: stored ones stay sorted, pending ones last.
    if (!item.isConnected || wasPending) list.insertBefore(item, list.querySelector("li.pending"));
    list.scrollTop = list.scrollHeight;
  };
  const room = client.join(roomName, { afterSeq: 0n, onMessage: render });

  form("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const field = input("body");
    const body = field.value.trim();
    if (body === "") return;
    field.value = "";
    const clientMsgId = crypto.randomUUID();
    const item = document.createElement("li");
    item.className = "mine pending";
    item.dataset.clientMsgId = clientMsgId;
    item.textContent = `${body} (sending…)`;
    list.append(item);
    room.send(body, clientMsgId).catch((error: unknown) => {
      item.textContent = `${body} — not sent: ${error instanceof Error ? error.message : String(error)}`;
    });
  });

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
