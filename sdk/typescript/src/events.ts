// What the client hands to the application: the broker's own room events
// (generated types) and the SDK's lifecycle events, as one tagged union.

import type { Joined, Left, Message, Position } from "./generated/protocol.js";
import type { BrokerError } from "./errors.js";

/** The connection to the broker ended. */
export interface Disconnected {
  type: "disconnected";
  /** The WebSocket close code (1006: dropped without a closing handshake). */
  code: number;
  /** The close reason the broker gave, possibly empty. */
  reason: string;
  /** Whether the client reconnects; when `false` this is its last event. */
  reconnecting: boolean;
}

/**
 * The client is connected again, as a new session, and re-joined its rooms
 * `since` their positions. In a recovered room the messages said while it
 * was away follow this event, in order, before live ones, none twice. A room
 * not recovered may have lost messages: reload it (`history`). `joined` and
 * `left` are never replayed: read `presence` again.
 */
export interface Reconnected {
  type: "reconnected";
  /** The new session id. */
  session: string;
  /** The node now serving the client. */
  node: string;
  /** The rooms re-joined. */
  rooms: string[];
  /** Rooms the broker refused to re-join, with its error; no longer joined. */
  failed: Record<string, BrokerError>;
  /** For each room re-joined: whether nothing said meanwhile is lost. */
  recovered: Record<string, boolean>;
}

/**
 * Messages of `room` were dropped unread from the full event queue of
 * `for await`; read them back with `history(room, { before: lastOffset + 1 })`
 * if they matter. Delivered before the queue's next event.
 */
export interface Gap {
  type: "gap";
  room: string;
  /** The epoch of the dropped messages. */
  epoch: string;
  /** The offset before the first dropped message. */
  afterOffset: number;
  /** The offset of the last dropped message. */
  lastOffset: number;
  /** How many were dropped. */
  dropped: number;
}

/** Every event, by its `type`. */
export interface EventMap {
  message: Message;
  joined: Joined;
  left: Left;
  disconnected: Disconnected;
  reconnected: Reconnected;
  gap: Gap;
}

/** Anything `for await (const event of client)` yields. */
export type ClientEvent = EventMap[keyof EventMap];

/** A room's kept messages (docs/HISTORY-PRESENCE.md, "history"). */
export interface HistoryPage {
  room: string;
  /** The room's current position; `null` when it keeps no history. */
  position: Position | null;
  /** Oldest first, each as members received it. */
  messages: Message[];
}

/** One session in a room. */
export interface Member {
  session: string;
  /** The session's user (its token's `sub`); absent when anonymous. */
  user?: string;
}

/** Who is in a room on every node, the asker included. */
export interface RoomPresence {
  room: string;
  /** Sessions in the room. */
  count: number;
  /** Distinct users among them (anonymous sessions count as none). */
  users: number;
  /** At most 1,000 of the sessions, in no particular order. */
  members: Member[];
  /** Whether `members` lists fewer sessions than `count`. */
  truncated: boolean;
}
