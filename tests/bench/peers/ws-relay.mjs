// The Node peer of the fan-out benchmark: the bare protocol of tests/bench/baseline_server.py
// on the `ws` package. The first frame (auth, not checked) gets auth.ok; subscribe adds the
// socket to its topic; chat.send builds one chat.message, encodes it once and sends that
// buffer to every subscriber, then answers the sender. No compression, no queues.
// Run: node ws-relay.mjs [port]  (prints "listening on PORT")
import { randomUUID } from "node:crypto";
import { WebSocketServer } from "ws";

const topics = new Map(); // topic -> Set of sockets
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(process.argv[2] ?? 0), path: "/ws", backlog: 4096, perMessageDeflate: false, maxPayload: 64 * 1024 });

wss.on("connection", (ws) => {
  const id = randomUUID().replaceAll("-", "");
  const mine = new Set();
  let authed = false;
  ws.on("message", (raw, isBinary) => {
    if (isBinary) return;
    if (!authed) {
      authed = true;
      ws.send(JSON.stringify({ type: "auth.ok", user: { id, name: "", role: "viewer", scopes: ["*"] }, session_id: id }));
      return;
    }
    const req = JSON.parse(raw);
    let data = {};
    if (req.type === "subscribe") {
      if (!topics.has(req.topic)) topics.set(req.topic, new Set());
      topics.get(req.topic).add(ws);
      mine.add(req.topic);
      data = { topic: req.topic, seq: 0, snapshot: { chat: [], viewers: topics.get(req.topic).size }, missed: [], reset: false };
    } else if (req.type === "chat.send") {
      const msgId = randomUUID().replaceAll("-", "");
      const frame = Buffer.from(JSON.stringify({ type: "chat.message", topic: req.topic, seq: 0, msg_id: msgId, author: { id, name: "Deelnemer", role: "viewer" }, text: req.text, ts: new Date().toISOString() }));
      for (const peer of topics.get(req.topic) ?? []) peer.send(frame, { binary: false });
      data = { msg_id: msgId, held: false };
    }
    ws.send(JSON.stringify({ id: req.id ?? null, type: "result", data }));
  });
  ws.on("error", () => {}); // a reset viewer is dropped on its "close", not a crash
  ws.on("close", () => { for (const t of mine) topics.get(t)?.delete(ws); });
});
wss.on("listening", () => console.log(`listening on ${wss.address().port}`));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
