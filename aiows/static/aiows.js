/*
 * aiows browser client, served by every aiows server at /aiows.js (WebSocketServer(client_script_path=...)).
 * No dependencies; the wire format is in the guide "Delivery guarantees" (docs/guides/delivery.md).
 *
 *   <script src="/aiows.js"></script>
 *   const c = aiows.connect();                        // this page's server, path "/"; or aiows.connect("ws://host/chat")
 *   c.on("said", (frame) => { ... });                 // the server's frames by "type" ("*": every frame)
 *   const data = await c.request({type: "join", room: "lobby"}, {timeout: 5000});  // the reply's data
 *   c.onRequest(async (request) => answer);           // answers the server's websocket.request()
 *   c.onReconnect(async (c) => {                      // after each reconnection: join again, recover
 *     for (const [room, p] of Object.entries(c.positions)) {
 *       await c.request({type: "join", room, offset: p.offset, epoch: p.epoch});
 *     }
 *   });
 *
 * MessagePack (a server with codecs=("json", "msgpack")): give a MessagePack library's encode and decode,
 * such as @msgpack/msgpack's; the client offers the subprotocol and speaks JSON if the server does not agree:
 *
 *   const c = aiows.connect("/", {codec: {subprotocol: "aiows.msgpack", encode: MessagePack.encode,
 *                                         decode: MessagePack.decode}});
 *
 * request() rejects with aiows.RequestError (the server's error frame: .code, .frame), aiows.RequestTimeout
 * or aiows.ConnectionError (not connected, or the connection dropped before the answer). The client reconnects
 * with exponential backoff and jitter (options.backoffMin / backoffMax, in ms), except after a close the server
 * meant as final (1000, 1002, 1003, 1007, 1008, 1009, 1010, 4401) or close().
 */
(function (root) {
  "use strict";

  const FINAL_CLOSE_CODES = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010, 4401]);

  class ConnectionError extends Error {
    constructor(message, code) {
      super(message);
      this.name = "ConnectionError";
      this.code = code;
    }
  }

  class RequestTimeout extends Error {
    constructor(message) {
      super(message);
      this.name = "RequestTimeout";
    }
  }

  class RequestError extends Error {
    constructor(frame) {
      super(typeof frame.message === "string" ? frame.message : "the request failed");
      this.name = "RequestError";
      this.code = frame.code;
      this.frame = frame;
    }
  }

  function resolveUrl(url) {
    if (url === undefined || url === null) url = "/";
    if (/^wss?:\/\//.test(url)) return url;
    const base = new URL(url, root.location.href);
    base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    return base.href;
  }

  function report(what, error) {
    if (root.console) root.console.error("aiows: " + what, error);
  }

  class Client {
    constructor(url, options) {
      options = options || {};
      this.url = resolveUrl(url);
      this.reconnect = options.reconnect !== false;
      this.backoffMin = options.backoffMin || 500;
      this.backoffMax = options.backoffMax || 10000;
      this.codec = options.codec || null; // {subprotocol, encode(object) -> bytes, decode(bytes) -> object}
      this.positions = {}; // room -> {epoch, offset}: the last numbered publication seen
      this.reconnects = 0;
      this.closeCode = null;
      this.closed = false;
      this._handlers = new Map(); // type -> [fn]
      this._open_handlers = [];
      this._close_handlers = [];
      this._reconnect_handlers = [];
      this._request_handler = null;
      this._pending = new Map(); // ref -> {resolve, reject, timer}
      this._last_ref = 0;
      this._ws = null;
      this._opened = false;
      this._attempt = 0;
      this._timer = null;
      this._open();
    }

    get connected() {
      return this._ws !== null && this._ws.readyState === 1;
    }

    _open() {
      const ws = this.codec ? new root.WebSocket(this.url, [this.codec.subprotocol]) : new root.WebSocket(this.url);
      ws.binaryType = "arraybuffer";
      this._ws = ws;
      ws.onopen = () => {
        const again = this._opened;
        this._opened = true;
        this._attempt = 0;
        if (again) this.reconnects += 1;
        for (const fn of this._open_handlers.slice()) this._call(fn, [this], "an onOpen handler failed");
        if (again) {
          for (const fn of this._reconnect_handlers.slice()) this._call(fn, [this], "an onReconnect handler failed");
        }
      };
      ws.onmessage = (event) => this._received(event.data);
      ws.onclose = (event) => {
        if (this._ws !== ws) return;
        this._ws = null;
        this.closeCode = event.code;
        this._failPending(new ConnectionError("connection closed before the answer", event.code));
        const retry = !this.closed && this.reconnect && !FINAL_CLOSE_CODES.has(event.code);
        if (!retry) this.closed = true;
        for (const fn of this._close_handlers.slice()) this._call(fn, [event.code, retry], "an onClose handler failed");
        if (retry) {
          const delay = Math.min(this.backoffMax, this.backoffMin * Math.pow(2, this._attempt));
          this._attempt += 1;
          this._timer = setTimeout(() => {
            this._timer = null;
            if (!this.closed) this._open();
          }, delay * (0.5 + Math.random() / 2));
        }
      };
    }

    _call(fn, args, what) {
      try {
        const result = fn.apply(null, args);
        if (result && typeof result.then === "function") result.then(null, (error) => report(what, error));
      } catch (error) {
        report(what, error);
      }
    }

    _failPending(error) {
      const pending = Array.from(this._pending.values());
      this._pending.clear();
      for (const p of pending) {
        clearTimeout(p.timer);
        p.reject(error);
      }
    }

    _encoded(frame) {
      const codec = this.codec;
      return codec && this._ws.protocol === codec.subprotocol ? codec.encode(frame) : JSON.stringify(frame);
    }

    _received(data) {
      let frame;
      try {
        frame = typeof data === "string" ? JSON.parse(data) : this.codec.decode(new Uint8Array(data));
      } catch (error) {
        return;
      }
      if (frame === null || typeof frame !== "object" || Array.isArray(frame)) return;
      const ref = frame.ref;
      if (ref !== undefined && ref !== null) {
        if (frame.type === "reply" || frame.type === "error") {
          const p = this._pending.get(ref);
          if (p !== undefined) {
            this._pending.delete(ref);
            clearTimeout(p.timer);
            if (frame.type === "reply") p.resolve(frame.data === undefined ? null : frame.data);
            else p.reject(new RequestError(frame));
            return;
          }
        } else if (this._request_handler !== null) {
          this._answer(this._request_handler, frame);
          return;
        }
      }
      if (typeof frame.room === "string" && Number.isInteger(frame.offset) && typeof frame.epoch === "string") {
        this.positions[frame.room] = { epoch: frame.epoch, offset: frame.offset };
      }
      for (const type of [frame.type, "*"]) {
        const handlers = this._handlers.get(type);
        if (handlers) for (const fn of handlers.slice()) this._call(fn, [frame, this], "an on(" + type + ") handler failed");
      }
    }

    async _answer(handler, frame) {
      let data;
      try {
        data = await handler(frame, this);
      } catch (error) {
        report("the onRequest handler failed: no reply sent", error);
        return;
      }
      if (this.connected) this._ws.send(this._encoded({ type: "reply", ref: frame.ref, data: data === undefined ? null : data }));
    }

    /** Send one frame (JSON, or the codec's when the server agreed to it); throws aiows.ConnectionError while not connected. */
    send(frame) {
      if (!this.connected) throw new ConnectionError("not connected", this.closeCode);
      this._ws.send(this._encoded(frame));
    }

    /** Send frame with a "ref"; resolves to the reply's data (options.timeout in ms, default 5000). */
    request(frame, options) {
      const timeout = options && options.timeout !== undefined ? options.timeout : 5000;
      if (!this.connected) return Promise.reject(new ConnectionError("not connected", this.closeCode));
      if (Object.prototype.hasOwnProperty.call(frame, "ref")) {
        return Promise.reject(new Error('a request must not have a "ref" of its own: the client chooses it'));
      }
      this._last_ref += 1;
      const ref = this._last_ref;
      const ws = this._ws;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this._pending.delete(ref);
          reject(new RequestTimeout("no answer to request " + ref + " within " + timeout + " ms"));
        }, timeout);
        this._pending.set(ref, { resolve, reject, timer });
        ws.send(this._encoded(Object.assign({}, frame, { ref })));
      });
    }

    /** Call fn(frame, client) for every frame of this "type" ("*": every frame); returns a function that stops it. */
    on(type, fn) {
      if (!this._handlers.has(type)) this._handlers.set(type, []);
      this._handlers.get(type).push(fn);
      return () => {
        const handlers = this._handlers.get(type) || [];
        const at = handlers.indexOf(fn);
        if (at >= 0) handlers.splice(at, 1);
      };
    }

    /** fn(client) each time a connection opens (the first one too). */
    onOpen(fn) {
      this._open_handlers.push(fn);
      if (this.connected) this._call(fn, [this], "an onOpen handler failed");
    }

    /** fn(code, reconnecting) each time the connection closes. */
    onClose(fn) {
      this._close_handlers.push(fn);
    }

    /** fn(client) after each reconnection (not the first connection): join the rooms again from client.positions. */
    onReconnect(fn) {
      this._reconnect_handlers.push(fn);
    }

    /** Answer the server's requests: fn(request, client) returns the reply's data (or a promise of it). */
    onRequest(fn) {
      this._request_handler = fn;
    }

    /** Close for good (code 1000): no more reconnections. */
    close() {
      this.closed = true;
      if (this._timer !== null) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      if (this._ws !== null) this._ws.close(1000);
    }
  }

  function connect(url, options) {
    return new Client(url, options);
  }

  const api = { connect, Client, ConnectionError, RequestError, RequestTimeout, FINAL_CLOSE_CODES };
  root.aiows = api;
  if (typeof module === "object" && module && module.exports) module.exports = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
