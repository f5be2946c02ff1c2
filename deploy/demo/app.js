// The demo chat page: one room at a time, names carried in message bodies,
// on the roomcast TypeScript SDK's browser build (roomcast.js here is a copy of
// sdk/typescript/dist/roomcast.min.js; deploy/local-cluster builds it when missing).
//
// The protocol has no user names, so a message body is {"name": ..., "text": ...}.
// Everything that came from the network is shown with textContent, never as HTML.
// URL parameters: ?name=alice&room=lobby fill the form; ?ws=ws://host:port/ws
// talks to another endpoint than this page's own /ws.
//
// What it shows: the room's recent history when it joins, who is in the room
// (read with presence, kept current from joined/left, read again after every
// reconnect), and every message exactly once across a node's restart: the
// SDK re-joins since its last position and replays what was missed.

import { connect } from "./roomcast.js";

const HISTORY_LINES = 50;
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
  members: $("members"),
  membersTitle: $("members-title"),
  sayForm: $("say-form"),
  text: $("text"),
  send: $("say-form").querySelector("button"),
};

ui.name.value = params.get("name") || ui.name.value;
ui.room.value = params.get("room") || ui.room.value;

let client = null; // connected on the first join: a node closes sessions that join no room
let current = null; // the room this page shows
let loading = null; // messages of `current` that arrived while its history loaded
const names = new Map(); // session -> the name it last used
const members = new Map(); // session -> user (presence of `current`)

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showConnection(session, node) {
  ui.node.textContent = node || "–";
  ui.session.textContent = session || "–";
}

function who(session) {
  const name = names.get(session);
  return `${name || "someone"} (${String(session).slice(0, 8)})`;
}

/** Append one line; `kind` is "message", "own" or "system". */
function append(kind, name, text, when = new Date()) {
  const item = document.createElement("li");
  item.dataset.kind = kind;
  const author = document.createElement("span");
  author.className = "who";
  author.textContent = name;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  const time = document.createElement("time");
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  item.append(author, body, time);
  const atBottom =
    ui.messages.scrollTop + ui.messages.clientHeight >= ui.messages.scrollHeight - 4;
  ui.messages.append(item);
  if (atBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
  return item;
}

const system = (text) => append("system", "", text);

/** Show a message frame (live, replayed or from history). */
function showMessage(message, kind = "message") {
  const body = message.body;
  const isChat = body && typeof body === "object" && typeof body.text === "string";
  const name = isChat && typeof body.name === "string" && body.name ? body.name : "?";
  if (isChat && names.get(message.from) !== name) {
    names.set(message.from, name);
    // Presence may have been read before this message taught the name.
    if (members.has(message.from)) renderMembers();
  }
  const item = append(kind, name, isChat ? body.text : JSON.stringify(body));
  if (message.offset !== undefined) item.dataset.offset = String(message.offset);
  return item;
}

function renderMembers() {
  const items = [...members.keys()].sort().map((session) => {
    const item = document.createElement("li");
    item.textContent =
      session === client?.session ? `${ui.name.value.trim()} (you)` : who(session);
    return item;
  });
  ui.members.replaceChildren(...items);
  ui.membersTitle.textContent = current ? `In #${current}: ${members.size}` : "In the room";
}

/** Read who is in `room` (after a join, and after every reconnect). */
async function loadPresence(room) {
  try {
    const presence = await client.presence(room);
    if (room !== current) return;
    members.clear();
    for (const member of presence.members) members.set(member.session, member.user);
    renderMembers();
  } catch (error) {
    system(`could not read who is in #${room}: ${error.code}`);
  }
}

/** Show the room's recent history, then what arrived meanwhile (each line once). */
async function loadHistory(room) {
  loading = [];
  let last = 0;
  try {
    const page = await client.history(room, { limit: HISTORY_LINES });
    if (page.messages.length) system(`recent messages of #${room}:`);
    for (const message of page.messages) {
      showMessage(message, "history");
      last = Math.max(last, message.offset ?? 0);
    }
  } catch (error) {
    system(`could not read the history of #${room}: ${error.code}`);
  }
  const arrived = loading;
  loading = null;
  for (const message of arrived) if ((message.offset ?? Infinity) > last) showMessage(message);
}

function setJoined(room) {
  current = room;
  ui.roomTitle.textContent = room ? `#${room}` : "Pick a name and a room";
  ui.text.disabled = !room;
  ui.send.disabled = !room;
  if (!room) members.clear();
  renderMembers();
}

/** The client, connecting a new one if there is none or the last one ended. */
function ensureClient() {
  if (client && !client.closed) return client;
  client = connect(params.get("ws") || "/ws", { heartbeat: 15000 });
  const connection = client;
  setStatus("connecting", "connecting…");
  connection.ready.then(
    (welcome) => {
      showConnection(welcome.session, welcome.node);
      setStatus("open", `connected to ${welcome.node}`);
    },
    (error) => setStatus("closed", `cannot connect (${error.code})`),
  );

  connection.on("disconnected", ({ code, reconnecting }) => {
    const lost = connection.node ? `connection to ${connection.node} lost` : "connection lost";
    showConnection(null, null);
    if (reconnecting) {
      setStatus("reconnecting", `${lost} (${code}), reconnecting`);
      system(`${lost} (code ${code}); reconnecting`);
    } else {
      setStatus("closed", `closed (${code})`);
      system(`connection closed (code ${code}); join again to reconnect`);
      setJoined(null);
    }
  });

  connection.on("reconnected", ({ session, node, rooms, failed, recovered }) => {
    showConnection(session, node);
    setStatus("open", `connected to ${node}`);
    const joined = rooms.length ? `, joined #${rooms.join(", #")} again` : "";
    system(`reconnected to ${node}${joined}`);
    for (const [room, error] of Object.entries(failed)) {
      system(`could not join #${room} again: ${error.code}`);
    }
    if (current && current in failed) setJoined(null);
    if (!current || !rooms.includes(current)) return;
    if (recovered[current]) {
      system("nothing was missed");
    } else {
      system("some messages may be missing: reloading recent history");
      void loadHistory(current);
    }
    // joined/left of the time away are not replayed: read presence again.
    void loadPresence(current);
  });

  connection.on("message", (message) => {
    if (message.room !== current) return;
    if (loading) loading.push(message);
    else showMessage(message);
  });

  connection.on("joined", ({ room, session, user }) => {
    if (room !== current) return;
    members.set(session, user);
    renderMembers();
    system(`${who(session)} joined`);
  });

  connection.on("left", ({ room, session }) => {
    if (room !== current) return;
    members.delete(session);
    renderMembers();
    system(`${who(session)} left`);
    names.delete(session);
  });
  return connection;
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
    ui.messages.replaceChildren();
    setJoined(room);
    system(`you joined #${room} as ${ui.name.value.trim()}`);
    await Promise.all([loadHistory(room), loadPresence(room)]);
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
    const position = await client.say(current, { name, text });
    item.dataset.delivery = "sent";
    if (position) item.dataset.offset = String(position.offset);
  } catch (error) {
    item.dataset.delivery = "failed";
    item.title = `not sent: ${error.code}`;
  }
});
