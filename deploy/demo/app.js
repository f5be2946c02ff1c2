// The demo chat page: one room at a time, names carried in message bodies.
//
// The protocol has no user names, so a message body is {"name": ..., "text": ...}.
// Everything that came from the network is shown with textContent, never as HTML.
// URL parameters: ?name=alice&room=lobby fill the form; ?ws=ws://host:port/ws
// talks to another endpoint than this page's own /ws.

import { connect } from "./roomcast.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const ui = {
  status: $("status"),
  node: $("node"),
  session: $("session"),
  joinForm: $("join-form"),
  name: $("name"),
  room: $("room"),
  roomTitle: $("room-title"),
  messages: $("messages"),
  sayForm: $("say-form"),
  text: $("text"),
  send: $("say-form").querySelector("button"),
};

ui.name.value = params.get("name") || ui.name.value;
ui.room.value = params.get("room") || ui.room.value;

let client = null; // connected on the first join: a node closes sessions that join no room
let current = null; // the room this page is in
const names = new Map(); // session -> the name it last used

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function shortSession(session) {
  return String(session).slice(0, 8);
}

function who(session) {
  const name = names.get(session);
  return `${name || "someone"} (${shortSession(session)})`;
}

/** Append one line; `kind` is "message", "own" or "system". */
function append(kind, name, text) {
  const item = document.createElement("li");
  item.dataset.kind = kind;
  const author = document.createElement("span");
  author.className = "who";
  author.textContent = name;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  item.append(author, body, time);
  const atBottom =
    ui.messages.scrollTop + ui.messages.clientHeight >= ui.messages.scrollHeight - 4;
  ui.messages.append(item);
  if (atBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
  return item;
}

const system = (text) => append("system", "", text);

function setJoined(room) {
  current = room;
  ui.roomTitle.textContent = room ? `#${room}` : "Pick a name and a room";
  ui.text.disabled = !room;
  ui.send.disabled = !room;
}

/** The client, connecting a new one if there is none or the last one closed for good. */
function ensureClient() {
  if (client && client.state !== "closed") return client;
  client = connect(params.get("ws") || "/ws", { heartbeatInterval: 15000 });
  setStatus("connecting", "connecting…");
  let node = null; // the node of the current connection, for the "lost" line
  client.on("welcome", (welcome) => {
    node = welcome.node;
    ui.node.textContent = welcome.node;
    ui.session.textContent = welcome.session;
    setStatus("open", `connected to ${welcome.node}`);
  });

  client.on("disconnected", ({ code, reconnect, delay }) => {
    const lost = node ? `connection to ${node} lost` : "connection lost";
    node = null;
    ui.node.textContent = "–";
    ui.session.textContent = "–";
    if (reconnect) {
      const when = delay ? `in ${(delay / 1000).toFixed(1)} s` : "now";
      setStatus("reconnecting", `${lost} (${code}), reconnecting ${when}`);
      system(`${lost} (code ${code}); reconnecting ${when}`);
    } else {
      setStatus("closed", `closed (${code})`);
      system(`connection closed (code ${code}); join again to reconnect`);
      setJoined(null);
    }
  });

  client.on("reconnected", ({ welcome, rooms, failed }) => {
    const joined = rooms.length ? `, joined #${rooms.join(", #")} again` : "";
    system(`reconnected to ${welcome.node}${joined}`);
    for (const { room, error } of failed) system(`could not join #${room} again: ${error.code}`);
    if (current && failed.some((f) => f.room === current)) setJoined(null);
  });

  client.on("message", ({ room, from, body }) => {
    if (room !== current) return;
    const isChat = body && typeof body === "object" && typeof body.text === "string";
    const name = isChat && typeof body.name === "string" && body.name ? body.name : "?";
    if (isChat) names.set(from, name);
    append("message", name, isChat ? body.text : JSON.stringify(body));
  });

  client.on("joined", ({ room, session }) => {
    if (room === current) system(`${who(session)} joined`);
  });

  client.on("left", ({ room, session }) => {
    if (room === current) system(`${who(session)} left`);
    names.delete(session);
  });
  return client;
}

ui.joinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const room = ui.room.value.trim();
  if (!ui.name.value.trim() || !room || room === current) return;
  const previous = current;
  setJoined(null);
  try {
    const connection = ensureClient();
    if (previous) await connection.leave(previous);
    await connection.join(room);
    setJoined(room);
    ui.messages.replaceChildren();
    system(`you joined #${room} as ${ui.name.value.trim()}`);
    ui.text.focus();
  } catch (error) {
    system(`could not join #${room}: ${error.code}`);
  }
});

ui.sayForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = ui.text.value;
  if (!current || !text.trim()) return;
  ui.text.value = "";
  const name = ui.name.value.trim();
  const item = append("own", name, text);
  item.dataset.delivery = "pending";
  try {
    await client.say(current, { name, text });
    item.dataset.delivery = "sent";
  } catch (error) {
    item.dataset.delivery = "failed";
    item.title = `not sent: ${error.code}`;
  }
});
