// Load-side SSE watcher for the benchmarks, on Node: a Python client costs about three times
// the server's CPU per event it reads, so with 1,000 streams on a 2-core machine the clients,
// not the server, would set the latency. Same job as sse_client.watch_many: `n` connections on
// `path` (or on each of `paths`), each until `expect` stamped events (bench.pulse log lines and
// progress events, whose text carries the handler's call time as t=<unix seconds>) or the
// deadline. Prints one JSON line: received, connected, errors, latencies (s), first_stamp,
// last_recv.
//   node bench/sse_watch.js '{"host": ..., "port": ..., "path": ..., "n": ..., "expect": ..., "timeout": ...}'
const net = require("net");
const { performance } = require("perf_hooks");

const args = JSON.parse(process.argv[2]);
const now = () => (performance.timeOrigin + performance.now()) / 1000; // wall clock, sub-ms
const STAMP = /t=(\d+\.\d+)/;
const NAME = /(?:^|\n)event: ([^\n]*)/;
const out = { received: 0, connected: 0, error_count: 0, errors: [], latencies: [] };
let open = 0;
let reported = false;

function report() {  // once: when every connection has ended, or at the deadline
  if (reported) return;
  reported = true;
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
}

function finish() {
  if (--open === 0) report();
}

function watch(path) {
  open++;
  const headers = Object.entries(args.headers || {}).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const socket = net.connect(args.port, args.host);
  let buffer = "", started = false, got = 0, done = false;
  const end = (error) => {
    if (done) return;
    done = true;
    if (error) {
      out.error_count++;
      if (out.errors.length < 3) out.errors.push(String(error));
    }
    socket.destroy();
    finish();
  };
  socket.setEncoding("latin1");
  socket.on("connect", () => socket.write(`GET ${path} HTTP/1.0\r\nHost: ${args.host}:${args.port}\r\n` +
                                          `Accept: text/event-stream\r\n${headers}\r\n`));
  socket.on("data", (chunk) => {
    buffer += chunk;
    if (!started) {
      const head = buffer.indexOf("\r\n\r\n");
      if (head < 0) return;
      const status = buffer.slice(0, buffer.indexOf("\r\n"));
      if (!status.includes(" 200 ")) return end(status);
      started = true;
      out.connected++;
      buffer = buffer.slice(head + 4);
    }
    const last = buffer.lastIndexOf("\n\n");
    if (last < 0) return;
    const complete = buffer.slice(0, last);
    buffer = buffer.slice(last + 2);
    const t = now();
    for (const block of complete.split("\n\n")) {
      const stamp = STAMP.exec(block);
      if (!stamp) continue;
      const name = NAME.exec(block);
      const kind = name ? name[1] : "message";
      if (kind !== "message" && kind !== "content_job.progress") continue;
      const s = Number(stamp[1]);
      out.latencies.push(t - s);
      if (out.first_stamp === undefined || s < out.first_stamp) out.first_stamp = s;
      if (out.last_recv === undefined || t > out.last_recv) out.last_recv = t;
      out.received++;
      if (++got >= args.expect) return end();
    }
  });
  socket.on("error", (error) => end(error.message));
  socket.on("close", () => end());
}

for (const path of args.paths || [args.path]) {
  for (let i = 0; i < args.n; i++) watch(path);
}
setTimeout(report, args.timeout * 1000).unref();
