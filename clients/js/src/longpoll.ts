/**
 * The long-polling transport: `POST /poll` creates the session, then one
 * `GET /poll?session=…&ack=n` at a time, each held by the server until there
 * are messages (or its poll timeout), `ack` being the last sequence number
 * received. A poll lost on the network is asked again with the same `ack`, so
 * the server answers it again: nothing is lost. A 404 ends the session.
 *
 * @module
 */
import type { Timers } from "./env.js";
import { FallbackSocket, RETRIES, retryDelayMs } from "./fallback.js";
import type { FetchLike, ResponseLike } from "./transport.js";

/** The long-polling transport. */
export class PollSocket extends FallbackSocket {
  private ack = 0;

  constructor(base: string, fetchImpl: FetchLike, timers: Timers) {
    super(base, fetchImpl, timers);
    void this.run();
  }

  private async run(): Promise<void> {
    let session: unknown;
    try {
      const response = await this.request(`${this.base}/poll`, { method: "POST" });
      if (response === undefined) return;
      if (!response.ok) {
        this.fail(`long-poll: HTTP ${response.status}`);
        return;
      }
      session = (JSON.parse(await response.text()) as { session?: unknown }).session;
    } catch (error) {
      this.fail(`long-poll: ${String(error)}`);
      return;
    }
    if (this.closed) return;
    if (typeof session !== "string" || session === "") {
      this.fail("long-poll: no session id in the reply");
      return;
    }
    this.opened(session);
    let failures = 0;
    while (!this.closed) {
      let response: ResponseLike | undefined;
      let body: string;
      try {
        response = await this.request(`${this.base}/poll?session=${encodeURIComponent(session)}&ack=${this.ack}`, {});
        if (response === undefined) return;
        body = await response.text();
      } catch (error) {
        if (this.closed) return;
        failures += 1;
        if (failures > RETRIES) {
          this.fail(`long-poll: ${String(error)}`);
          return;
        }
        await this.sleep(retryDelayMs(failures));
        continue;
      }
      if (this.closed) return;
      if (response.status === 404) {
        this.ended("long-poll session ended");
        return;
      }
      if (!response.ok) {
        this.fail(`long-poll: HTTP ${response.status}`);
        return;
      }
      failures = 0;
      if (!this.receive(body)) return;
    }
  }

  /** Delivers one poll's messages; whether to poll again. */
  private receive(body: string): boolean {
    let reply: { messages?: unknown; last?: unknown };
    try {
      reply = JSON.parse(body) as { messages?: unknown; last?: unknown };
    } catch {
      this.fail("long-poll: a reply that is not JSON");
      return false;
    }
    const { messages, last } = reply;
    if (!Array.isArray(messages) || typeof last !== "number" || last < this.ack) {
      this.fail("long-poll: a reply without messages and last");
      return false;
    }
    this.ack = last;
    for (const message of messages) {
      this.deliver(JSON.stringify(message));
      if (this.closed) return false;
    }
    return true;
  }
}
