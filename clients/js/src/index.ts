/**
 * volley-js: the browser and Node client of the Volley realtime hub.
 *
 * ```ts
 * import { Client } from "volley-js";
 * const client = new Client("ws://127.0.0.1:8000/connection/websocket", { getToken });
 * const sub = client.subscribe("chat:lobby", { presence: true });
 * sub.on("publication", (p) => console.log(p.data));
 * client.connect();
 * ```
 *
 * @module
 */
export { Client } from "./client.js";
export type {
  ClientErrorEvent,
  ClientEvents,
  ClientOptions,
  ClientState,
  ConnectedEvent,
  ConnectingEvent,
  DisconnectedEvent,
  GetToken,
  MessageEvent,
  ReplyHandler,
  StateEvent,
  TokenRequest,
} from "./client.js";
export { Subscription } from "./subscription.js";
export type {
  GapEvent,
  GetSubscriptionToken,
  PresenceChangeEvent,
  PresenceEvent,
  PublicationEvent,
  SubscribedEvent,
  SubscribingEvent,
  SubscriptionErrorEvent,
  SubscriptionEvents,
  SubscriptionHandlers,
  SubscriptionOptions,
  SubscriptionState,
  UnsubscribedEvent,
} from "./subscription.js";
export { TRANSPORTS } from "./transport.js";
export type { FetchLike, RequestInitLike, ResponseLike, TransportName, TransportSocket } from "./transport.js";
export { UnauthorizedError, VolleyError } from "./errors.js";
export type { VolleyErrorKind } from "./errors.js";
export { Emitter } from "./emitter.js";
export type { Listener } from "./emitter.js";
export type {
  CloseEventLike,
  EventHandler,
  MessageEventLike,
  TimerHandle,
  Timers,
  WebSocketConstructor,
  WebSocketLike,
} from "./env.js";
export {
  DisconnectCode,
  ErrorCode,
  PATH,
  SUBPROTOCOL,
  backoffDelay,
  closeAction,
  isTemporary,
} from "./protocol.js";
export type {
  ClientInfo,
  CloseAction,
  ConnectResult,
  HistoryOptions,
  HistoryResult,
  Json,
  PresenceResult,
  PresenceStatsResult,
  Publication,
  PublishResult,
  RefreshResult,
  ReplyError,
  StreamPosition,
  SubscribeResult,
} from "./protocol.js";
export { VERSION } from "./version.js";
