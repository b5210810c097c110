// Load-side SSE watcher for the benchmarks, on Node: a Python client costs about three times
// the server's CPU per event it reads, so with 1,000 streams on a 2-core machine the clients,
// not the server, would set the latency. Same job as sse_client.watch_many: `n` connections on
// `path` (or on each of `paths`), each until `expect` stamped events (bench.pulse log lines and
// progress events, whose text carries the handler's call time as t=<unix seconds>) or the
// deadline; with "idle" (s), the watcher also stops once events have come and then none, on any
// of its connections, for that long (what a server dropped will not come). Prints one JSON
// line: received, connected, errors, latencies (s), first_stamp, last_recv.
//   node bench/sse_watch.js '{"host": ..., "port": ..., "path": ..., "n": ..., "expect": ..., "timeout": ..., "idle": ...}'
const { connect } = require("./sse_http");
const { wallClock } = require("./wall_clock");

const args = JSON.parse(process.argv[2]);
const now = wallClock();
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
  let got = 0, done = false;
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
  const socket = connect(args.host, args.port, path, args.headers, {
    onOpen: () => out.connected++,
    onRefused: (status) => end(status),
    onBlocks: (blocks) => {
      const t = now();
      for (const block of blocks) {
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
    },
  });
  socket.on("error", (error) => end(error.message));
  socket.on("close", () => end());
}

for (const path of args.paths || [args.path]) {
  for (let i = 0; i < args.n; i++) watch(path);
}
setTimeout(report, args.timeout * 1000).unref();
if (args.idle) {
  setInterval(() => {
    if (out.last_recv !== undefined && now() - out.last_recv > args.idle) report();
  }, 250).unref();
}
