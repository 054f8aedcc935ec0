/**
 * The Server-Sent Events transport: `GET /sse` read with `fetch` and a
 * streaming parser (not `EventSource`, whose own reconnection would open a
 * new session behind the client's back and which cannot tell the end of a
 * stream from a failure). The first event (`session`) opens the transport;
 * every other event is one server message; the end of the stream ends the
 * session.
 *
 * @module
 */
import type { Timers } from "./env.js";
import { host } from "./env.js";
import { FallbackSocket } from "./fallback.js";
import type { FetchLike } from "./transport.js";

/** One dispatched event of an event stream. */
export interface SseEvent {
  /** The `event:` field (`"message"` when absent). */
  event: string;
  /** The `data:` lines, joined with `\n`. */
  data: string;
  /** The last `id:` field seen, if any. */
  id?: string;
}

/**
 * An incremental parser of `text/event-stream` (the WHATWG HTML rules for
 * lines, fields, comments and dispatch; `retry:` is ignored). Feed it text in
 * chunks cut anywhere.
 */
export class SseParser {
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private id: string | undefined;
  private sawCr = false;

  /** Parses `chunk`; returns the events it completed. */
  push(chunk: string): SseEvent[] {
    const out: SseEvent[] = [];
    let text = chunk;
    // A CR at the end of the previous chunk may be the first half of a CRLF.
    if (this.sawCr && text.startsWith("\n")) text = text.slice(1);
    this.sawCr = false;
    this.buffer += text;
    let start = 0;
    for (;;) {
      const end = this.lineEnd(start);
      if (end < 0) break;
      const line = this.buffer.slice(start, end);
      if (this.buffer[end] === "\r") {
        if (end + 1 === this.buffer.length) {
          this.sawCr = true;
          start = end + 1;
          this.line(line, out);
          break;
        }
        start = this.buffer[end + 1] === "\n" ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
      this.line(line, out);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  private lineEnd(from: number): number {
    const lf = this.buffer.indexOf("\n", from);
    const cr = this.buffer.indexOf("\r", from);
    if (cr < 0) return lf;
    if (lf < 0) return cr;
    return Math.min(cr, lf);
  }

  private line(line: string, out: SseEvent[]): void {
    if (line === "") {
      if (this.data.length > 0) {
        const event: SseEvent = { event: this.event === "" ? "message" : this.event, data: this.data.join("\n") };
        if (this.id !== undefined) event.id = this.id;
        out.push(event);
      }
      this.event = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return; // a comment (the server's `: ping`)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.id = value;
        break;
      default:
        break; // retry and unknown fields
    }
  }
}

interface TextDecoderLike {
  decode(input?: Uint8Array, options?: { stream?: boolean }): string;
}

/** The SSE transport: one session per stream. */
export class SseSocket extends FallbackSocket {
  constructor(base: string, fetchImpl: FetchLike, timers: Timers) {
    super(base, fetchImpl, timers);
    void this.run();
  }

  private async run(): Promise<void> {
    const Decoder = (host as { TextDecoder?: new () => TextDecoderLike }).TextDecoder;
    if (Decoder === undefined) {
      this.fail("no TextDecoder here");
      return;
    }
    const decoder = new Decoder();
    const parser = new SseParser();
    try {
      const response = await this.request(`${this.base}/sse`, { headers: { Accept: "text/event-stream" } });
      if (response === undefined) return;
      if (!response.ok || response.body === null) {
        this.fail(`SSE: HTTP ${response.status}`);
        return;
      }
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (this.closed) {
          reader.cancel().catch(() => {});
          return;
        }
        if (done) break;
        for (const event of parser.push(decoder.decode(value, { stream: true }))) {
          this.dispatch(event);
          if (this.closed) return;
        }
      }
      this.ended("SSE stream ended");
    } catch (error) {
      this.fail(`SSE: ${String(error)}`);
    }
  }

  private dispatch(event: SseEvent): void {
    if (event.event === "session") {
      if (this.session !== undefined) return;
      let id: unknown;
      try {
        id = (JSON.parse(event.data) as { session?: unknown }).session;
      } catch {
        id = undefined;
      }
      if (typeof id !== "string" || id === "") {
        this.fail("SSE: a session event without a session id");
        return;
      }
      this.opened(id);
      return;
    }
    if (event.event !== "message" || this.session === undefined) return;
    this.deliver(event.data);
  }
}
