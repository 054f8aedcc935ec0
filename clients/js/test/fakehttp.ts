// An in-memory stand-in for the hub's HTTP fallback endpoints: a `fetch`
// whose every request waits until the test answers it (a status and body, a
// streamed body for SSE, or a network failure). Aborting a request (the SDK's
// AbortController) rejects it and ends its stream, as a real fetch does.
import type { FetchLike, RequestInitLike, ResponseLike } from "../src/transport.js";

interface Signal {
  aborted: boolean;
  addEventListener(type: "abort", fn: () => void): void;
}

/** A streamed response body the test writes to. */
export class FakeStream {
  private readonly chunks: (Uint8Array | null)[] = [];
  private waiting: ((r: { done: boolean; value?: Uint8Array }) => void) | null = null;
  private failWaiting: ((e: Error) => void) | null = null;
  private error: Error | null = null;
  cancelled = false;

  /** Sends text (cut anywhere). */
  write(text: string): void {
    this.chunks.push(new TextEncoder().encode(text));
    this.pump();
  }

  /** Sends one event: `event:` (when given) and `data:` lines, then a blank line. */
  event(data: string, event?: string, id?: number): void {
    this.write(`${event ? `event: ${event}\n` : ""}${id !== undefined ? `id: ${id}\n` : ""}data: ${data}\n\n`);
  }

  /** Ends the stream (the server closed it). */
  end(): void {
    this.chunks.push(null);
    this.pump();
  }

  /** Fails the stream (the connection broke). */
  abort(error = new Error("aborted")): void {
    this.error = error;
    this.pump();
  }

  reader(): { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(): Promise<void> } {
    return {
      read: () =>
        new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.failWaiting = reject;
          this.pump();
        }),
      cancel: async () => {
        this.cancelled = true;
      },
    };
  }

  private pump(): void {
    const resolve = this.waiting;
    const reject = this.failWaiting;
    if (resolve === null || reject === null) return;
    if (this.error !== null) {
      this.waiting = this.failWaiting = null;
      reject(this.error);
      return;
    }
    if (this.chunks.length === 0) return;
    this.waiting = this.failWaiting = null;
    const chunk = this.chunks.shift() as Uint8Array | null;
    resolve(chunk === null ? { done: true } : { done: false, value: chunk });
  }
}

/** One request the SDK made, waiting for the test's answer. */
export class FakeRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly body: string | undefined;
  readonly headers: Record<string, string>;
  answered = false;
  aborted = false;
  private resolve!: (r: ResponseLike) => void;
  private reject!: (e: Error) => void;
  readonly response: Promise<ResponseLike>;

  constructor(
    readonly url: string,
    readonly init: RequestInitLike,
  ) {
    const parsed = new URL(url);
    this.method = init.method ?? "GET";
    this.path = parsed.pathname;
    this.query = parsed.searchParams;
    this.body = init.body as string | undefined;
    this.headers = (init.headers ?? {}) as Record<string, string>;
    this.response = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    const signal = init.signal as Signal | undefined;
    signal?.addEventListener("abort", () => {
      this.aborted = true;
      if (!this.answered) this.fail(new Error("AbortError"));
      this.stream?.abort(new Error("AbortError"));
    });
  }

  stream: FakeStream | undefined;

  /** The commands of a POST /send body (one JSON object per line). */
  get commands(): { id: number; method: string; params?: Record<string, unknown> }[] {
    return (this.body ?? "").split("\n").map((line) => JSON.parse(line));
  }

  /** Answers with a status and a text body. */
  reply(status: number, body = ""): void {
    this.answered = true;
    this.resolve({ ok: status >= 200 && status < 300, status, body: null, text: async () => body });
  }

  /** Answers with a JSON body. */
  json(value: unknown, status = 200): void {
    this.reply(status, JSON.stringify(value));
  }

  /** Answers 200 with a streamed body; returns the stream to write to. */
  open(): FakeStream {
    this.answered = true;
    const stream = new FakeStream();
    this.stream = stream;
    this.resolve({ ok: true, status: 200, body: { getReader: () => stream.reader() }, text: async () => "" });
    return stream;
  }

  /** Fails the request as a network error. */
  fail(error = new Error("network error")): void {
    this.answered = true;
    this.reject(error);
  }
}

/** The fake HTTP side of the hub: hand `http.fetch` to the Client. */
export class FakeHttp {
  readonly requests: FakeRequest[] = [];
  private read = 0;

  readonly fetch: FetchLike = (url, init) => {
    const request = new FakeRequest(url, init ?? {});
    this.requests.push(request);
    return request.response;
  };

  /** The next request not yet taken; fails if there is none or it is another one. */
  next(method: string, path: string): FakeRequest {
    const request = this.requests[this.read];
    if (request === undefined) throw new Error(`expected ${method} ${path}, no request was made`);
    if (request.method !== method || request.path !== path) {
      throw new Error(`expected ${method} ${path}, got ${request.method} ${request.url}`);
    }
    this.read++;
    return request;
  }

  /** The requests not yet taken. */
  pending(): FakeRequest[] {
    return this.requests.slice(this.read);
  }
}
