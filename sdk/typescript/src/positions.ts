// Where the client stands in each joined room (docs/HISTORY-PRESENCE.md,
// "Positions"). No I/O.
//
// A room's position is the highest offset such that every message up to it,
// in the room's epoch, preceded the join, was said by this client, or was
// handed on to the application. A reconnect re-joins `since` it.
//
// Invariants:
// - `offset` only grows within an epoch; it moves to another epoch only on
//   the `ok` of a join (a fresh one, or a re-join that was not recovered).
// - Every offset in `ahead` is greater than `offset + 1`: offsets done past a
//   hole (an own say whose `ok` came before an earlier message).
// - A room without history has `epoch === null` and no position; nothing is
//   deduplicated there.

import type { Message, Ok, Position } from "./generated/protocol.js";

// Offsets past a hole that never fills (the broker broke the contract) stop
// being tracked beyond this: the position then jumps.
const MAX_AHEAD = 10_000;

interface Track {
  epoch: string | null;
  offset: number;
  ahead: Set<number>;
}

/** The position an `ok` carries, if any (a room without history has none). */
export function positionOf(ok: Ok): Position | null {
  return ok.offset === undefined || ok.epoch === undefined
    ? null
    : { offset: ok.offset, epoch: ok.epoch };
}

/** The positions of one client's rooms. */
export class Positions {
  private readonly rooms = new Map<string, Track>();

  /** The position in `room`; `null` if not joined or it keeps no history. */
  position(room: string): Position | null {
    const track = this.rooms.get(room);
    return track?.epoch != null ? { offset: track.offset, epoch: track.epoch } : null;
  }

  /**
   * A join of `room` got `ok`. A recovered re-join keeps the position (the
   * replayed messages move it), and so does a no-op join in the same epoch;
   * otherwise the position is the `ok`'s.
   */
  joined(room: string, ok: Ok): void {
    const track = this.rooms.get(room);
    const position = positionOf(ok);
    if (position === null) {
      this.rooms.set(room, { epoch: null, offset: 0, ahead: new Set() });
    } else if (!(track?.epoch === position.epoch && ok.recovered !== false)) {
      this.rooms.set(room, { epoch: position.epoch, offset: position.offset, ahead: new Set() });
    }
  }

  /** A say to `room` got `ok`: its offset is done (the sender never receives it). */
  said(room: string, ok: Ok): void {
    const track = this.rooms.get(room);
    const position = positionOf(ok);
    if (track && position && track.epoch === position.epoch) this.done(track, position.offset);
  }

  /** `room` was left, or could not be re-joined. */
  forget(room: string): void {
    this.rooms.delete(room);
  }

  /**
   * Whether to hand `message` on: `false` for a duplicate (a replayed
   * message already handed on, or this client's own say). Moves the position.
   */
  accept(message: Message): boolean {
    const track = this.rooms.get(message.room);
    if (!track || track.epoch === null || message.epoch !== track.epoch) return true;
    const offset = message.offset ?? 0;
    if (offset <= track.offset || track.ahead.has(offset)) return false;
    this.done(track, offset);
    return true;
  }

  private done(track: Track, offset: number): void {
    if (offset <= track.offset) return;
    const { ahead } = track;
    if (offset > track.offset + 1) {
      ahead.add(offset);
      if (ahead.size <= MAX_AHEAD) return;
      offset = Math.min(...ahead);
    }
    track.offset = offset;
    ahead.delete(offset);
    while (ahead.delete(track.offset + 1)) track.offset += 1;
  }
}
