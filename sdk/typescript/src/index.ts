// roomcast: the typed client of the roomcast room broker, for browsers and Node 20+.

export { connect, Client } from "./client.js";
export type { ConnectOptions, RequestOptions, TokenSource, WebSocketClass } from "./client.js";
export {
  RoomcastError,
  BrokerError,
  RequestTimeout,
  ConnectionLost,
  ClientClosed,
  ConnectFailed,
} from "./errors.js";
export { backoffBound, backoffDelay, reconnectRule, DEFAULT_RECONNECT } from "./backoff.js";
export type { ReconnectPolicy } from "./backoff.js";
export type {
  ClientEvent,
  Disconnected,
  EventMap,
  Gap,
  HistoryPage,
  Member,
  Reconnected,
  RoomPresence,
} from "./events.js";
export { CLOSE_RULES, CLOSE_NAMES, ERROR_CODES } from "./generated/protocol.js";
export type {
  ClientMessage,
  CloseCode,
  Error as ErrorReply,
  ErrorCode,
  History,
  HistoryReply,
  Join,
  Joined,
  Leave,
  Left,
  Message,
  Ok,
  Ping,
  Pong,
  Position,
  Presence,
  PresenceMember,
  PresenceReply,
  ReconnectRule,
  Refresh,
  Say,
  ServerMessage,
  Welcome,
} from "./generated/protocol.js";
