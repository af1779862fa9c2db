// The Socket.IO benchmark peer: a minimal, idiomatic Socket.IO 4 server on Node with the events of
// the original gateway (join_room, send_message -> MESSAGE_RECEIVED to the room).
// No authentication: the peer measures transport and fanout, not token checks.
"use strict";
const { createServer } = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const httpServer = createServer();
const io = new Server(httpServer, { transports: ["websocket"], serveClient: false });

// Per-room message counters, so MESSAGE_RECEIVED carries an offset like the engine's.
const offsets = new Map();

io.on("connection", (socket) => {
  socket.on("join_room", (data, ack) => {
    socket.join(data.room);
    if (typeof ack === "function") ack({ room: data.room });
  });
  socket.on("leave_room", (data, ack) => {
    socket.leave(data.room);
    if (typeof ack === "function") ack({ room: data.room });
  });
  socket.on("send_message", (data, ack) => {
    const offset = (offsets.get(data.room) || 0) + 1;
    offsets.set(data.room, offset);
    io.to(data.room).emit("MESSAGE_RECEIVED", {
      room: data.room,
      offset,
      user: socket.id,
      text: data.text,
      ts: Date.now(),
    });
    if (typeof ack === "function") ack({ offset });
  });
});

httpServer.listen(port, "127.0.0.1", () => console.error(`socket.io peer on 127.0.0.1:${port}`));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
