// The HTTP side of the Node load clients (sse_watch.js, storm.js): an HTTP/1.0 GET of an event
// stream (so the body is the raw stream), its status line and head, then the body handed on
// in whole events. `connect` returns the socket; the caller handles "error" and "close".
const net = require("net");

exports.connect = (host, port, path, headers, { onOpen, onRefused, onBlocks }) => {
  const extra = Object.entries(headers || {}).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const socket = net.connect(port, host);
  let buffer = "", started = false;
  socket.setEncoding("latin1");
  socket.on("connect", () => socket.write(`GET ${path} HTTP/1.0\r\nHost: ${host}:${port}\r\n` +
                                          `Accept: text/event-stream\r\n${extra}\r\n`));
  socket.on("data", (chunk) => {
    buffer += chunk;
    if (!started) {
      const head = buffer.indexOf("\r\n\r\n");
      if (head < 0) return;
      const status = buffer.slice(0, buffer.indexOf("\r\n"));
      if (!status.includes(" 200 ")) return onRefused(status);
      started = true;
      buffer = buffer.slice(head + 4);
      onOpen();
    }
    const last = buffer.lastIndexOf("\n\n");
    if (last < 0) return;
    const complete = buffer.slice(0, last);
    buffer = buffer.slice(last + 2);
    onBlocks(complete.split("\n\n"));
  });
  return socket;
};
