// Everything the SDK rejects with. Two families, so that a caller can tell
// whose fault a failure is: BrokerError (the broker answered with an `error`
// reply; the connection stays open) and the others (no answer came).

import type { ErrorCode } from "./generated/protocol.js";

/** Base class of every error the SDK rejects with; `code` says which. */
export class RoomcastError extends Error {
  /** A protocol error code, or the SDK's own: `timeout`, `connection_lost`, `closed`, `connect_failed`. */
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = "RoomcastError";
  }
}

/** The broker answered the request with an `error` reply (PROTOCOL.md, "Error codes"). */
export class BrokerError extends RoomcastError {
  declare readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = "BrokerError";
  }
}

/** No reply (or no connection to send on) within the request's timeout. */
export class RequestTimeout extends RoomcastError {
  constructor(message: string) {
    super("timeout", message);
    this.name = "RequestTimeout";
  }
}

/**
 * The connection ended before the broker answered. For a `say`, the message
 * may or may not have been published: it is not sent again.
 */
export class ConnectionLost extends RoomcastError {
  constructor(message: string) {
    super("connection_lost", message);
    this.name = "ConnectionLost";
  }
}

/** The client has ended: `close()` was called, or it stopped reconnecting. */
export class ClientClosed extends RoomcastError {
  /** The WebSocket close code that ended the client, if one did. */
  readonly closeCode: number | undefined;

  constructor(message: string, closeCode?: number, code = "closed") {
    super(code, message);
    this.closeCode = closeCode;
    this.name = "ClientClosed";
  }
}

/** No URL could be connected to when the client opened (it has ended). */
export class ConnectFailed extends ClientClosed {
  constructor(message: string, closeCode?: number) {
    super(message, closeCode, "connect_failed");
    this.name = "ConnectFailed";
  }
}
