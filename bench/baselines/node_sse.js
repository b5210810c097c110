// Reference SSE broadcaster on Node's http: the practical ceiling of this machine for holding
// idle connections and fanning one message out to many. GET /sse subscribes; POST /publish?n=N
// sends N events (each stamped with the send time) to every subscriber, as one burst, or with
// &intervalMs=M one event every M ms (the pace of the latency figure's pulse job).
const http = require("http");
const { wallClock } = require("../wall_clock");
const port = Number(process.argv[2] || 9100);
const clients = new Set();
http.createServer((req, res) => {
  if (req.url.startsWith("/sse")) {
    res.writeHead(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"});
    res.write("retry: 2000\n\n");
    clients.add(res);
    req.on("close", () => clients.delete(res));
    return;
  }
  if (req.url.startsWith("/publish")) {
    const query = new URL(req.url, "http://x").searchParams;
    const n = Number(query.get("n") || 1);
    const interval = Number(query.get("intervalMs") || 0);
    const clock = wallClock();  // anchored per publish: this process outlives many runs
    const stamp = () => clock().toFixed(6);
    let i = 0;
    const burst = () => {
      for (let k = 0; k < (interval ? 1 : 100) && i < n; k++, i++) {
        const frame = `id: ${i + 1}\ndata: {"log":{"event_message":"t=${stamp()} i=${i}"}}\n\n`;
        for (const c of clients) c.write(frame);
      }
      if (i >= n) res.end(String(clients.size));
      else if (interval) setTimeout(burst, interval);
      else setImmediate(burst);
    };
    burst();
    return;
  }
  if (req.url.startsWith("/stats")) {
    res.end(JSON.stringify({clients: clients.size, rss: process.memoryUsage().rss}));
    return;
  }
  res.writeHead(404); res.end();
}).listen(port, "127.0.0.1", 4096);
