// Bookings: the input rules of a new booking, and an in-memory store partitioned by tenant.
//
// Every read and write names its tenant, so one tenant's bookings are invisible to another: a
// booking of another tenant and a booking that does not exist are the same `undefined`.

import { randomUUID } from "node:crypto";

/** A booking as the API returns it. */
export interface Booking {
  readonly id: string;
  readonly room: string;
  /** The day booked, `YYYY-MM-DD`. */
  readonly date: string;
  /** The `sub` of the user who booked it. */
  readonly bookedBy: string;
  /** When it was booked, RFC 3339. */
  readonly createdAt: string;
}

/** What a client sends to book: `{ "room": string, "date": "YYYY-MM-DD" }`. */
export interface NewBooking {
  readonly room: string;
  readonly date: string;
}

/** The result of validating a request body: the booking, or why it is refused (`field: message`). */
export type Validation = { readonly ok: true; readonly value: NewBooking } | { readonly ok: false; readonly detail: string };

export const ROOM_MAX_LENGTH = 64;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
// No control characters (C0, DEL, C1) and no line or paragraph separators in a room name.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** Whether `text` is `YYYY-MM-DD` and names a day of the proleptic Gregorian calendar. */
export function isCalendarDate(text: string): boolean {
  const match = DATE.exec(text);
  if (match === null) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (year < 1) return false;
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999; an impossible day or
  // month rolls over into another date, which the comparison then catches.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** Checks a parsed JSON body against the rules of a new booking. */
export function validateNewBooking(body: unknown): Validation {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, detail: "body: expected a JSON object with room and date" };
  }
  const fields = body as Record<string, unknown>;
  for (const name of Object.keys(fields)) {
    if (name !== "room" && name !== "date") return { ok: false, detail: `${name}: unknown field` };
  }
  const { room, date } = fields;
  if (typeof room !== "string") return { ok: false, detail: "room: expected a string" };
  const trimmed = room.trim();
  if (trimmed === "") return { ok: false, detail: "room: must not be empty" };
  if ([...trimmed].length > ROOM_MAX_LENGTH) return { ok: false, detail: `room: at most ${ROOM_MAX_LENGTH} characters` };
  if (CONTROL.test(trimmed)) return { ok: false, detail: "room: must not contain control characters" };
  if (typeof date !== "string") return { ok: false, detail: "date: expected a string YYYY-MM-DD" };
  if (!isCalendarDate(date)) return { ok: false, detail: "date: expected a calendar date YYYY-MM-DD" };
  return { ok: true, value: { room: trimmed, date } };
}

/** Bookings in this process's memory, by tenant. */
export class BookingStore {
  readonly #tenants = new Map<string, Map<string, Booking>>();
  readonly #now: () => Date;

  constructor(options: { readonly now?: () => Date } = {}) {
    this.#now = options.now ?? (() => new Date());
  }

  /** The tenant's bookings, by date, then room, then booking time. */
  list(tenant: string): Booking[] {
    const bookings = [...(this.#tenants.get(tenant)?.values() ?? [])];
    return bookings.sort(
      (a, b) => compare(a.date, b.date) || compare(a.room, b.room) || compare(a.createdAt, b.createdAt) || compare(a.id, b.id),
    );
  }

  /** The tenant's booking with this id, if any. */
  get(tenant: string, id: string): Booking | undefined {
    return this.#tenants.get(tenant)?.get(id);
  }

  /** Books a room for a day, or returns the tenant's booking that already holds it. */
  create(tenant: string, bookedBy: string, input: NewBooking): { readonly created: boolean; readonly booking: Booking } {
    let bookings = this.#tenants.get(tenant);
    if (bookings === undefined) {
      bookings = new Map();
      this.#tenants.set(tenant, bookings);
    }
    for (const existing of bookings.values()) {
      if (existing.room === input.room && existing.date === input.date) return { created: false, booking: existing };
    }
    const booking: Booking = Object.freeze({
      id: randomUUID(),
      room: input.room,
      date: input.date,
      bookedBy,
      createdAt: this.#now().toISOString(),
    });
    bookings.set(booking.id, booking);
    return { created: true, booking };
  }

  /** Cancels the tenant's booking with this id; false when the tenant has no such booking. */
  cancel(tenant: string, id: string): boolean {
    const bookings = this.#tenants.get(tenant);
    if (bookings === undefined || !bookings.delete(id)) return false;
    if (bookings.size === 0) this.#tenants.delete(tenant);
    return true;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
