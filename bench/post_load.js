// Load-side POST client for the benchmarks, on Node: `concurrency` keep-alive connections each
// sending the same JSON POST back to back for `seconds`. A Python (httpx) client spent about as
// much CPU per request as the server it measured on this 2-core machine. Prints one JSON line:
// ok (answers with `expect` status), other (any other status or error), seconds, p99 (s).
//   node bench/post_load.js '{"host": ..., "port": ..., "path": ..., "headers": {...}, "body": "...",
//                            "expect": 202, "concurrency": 32, "seconds": 4}'
const http = require("http");
const { performance } = require("perf_hooks");

const args = JSON.parse(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, maxSockets: args.concurrency });
const latencies = [];
let other = 0;
const started = performance.now();
const end = started + args.seconds * 1000;

function one() {
  return new Promise((resolve) => {
    const t = performance.now();
    const req = http.request({
      host: args.host, port: args.port, path: args.path, method: "POST", agent,
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(args.body), ...args.headers },
    }, (res) => {
      res.resume();
      res.on("end", () => {
        if (res.statusCode === args.expect) latencies.push((performance.now() - t) / 1000);
        else other++;
        resolve();
      });
    });
    req.on("error", () => { other++; resolve(); });
    req.end(args.body);
  });
}

async function client() {
  while (performance.now() < end) await one();
}

Promise.all(Array.from({ length: args.concurrency }, client)).then(() => {
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const p99 = latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] : NaN;
  process.stdout.write(JSON.stringify({ ok: latencies.length, other, seconds, p99 }) + "\n", () => process.exit(0));
});
