// Job pickup client for the benchmarks, on Node: one stream on the company's events, then `jobs`
// POSTs one at a time, `gapMs` apart, each timed from the call that sends its request to the
// moment its job's content_job.running event is read. A Python client (httpx)
// spent 1.3 to 1.5 ms of its own building each request before a byte was sent, which the
// figure then counted as the service's. Prints one JSON line: pickups (s, one per job that ran
// within `timeout`), errors.
//   node bench/pickup.js '{"host": ..., "port": ..., "eventsPath": ..., "postPath": ..., "headers": {...},
//                          "body": "...", "jobs": 20, "gapMs": 100, "timeout": 30}'
const http = require("http");
const { connect } = require("./sse_http");
const { performance } = require("perf_hooks");

const args = JSON.parse(process.argv[2]);
const NAME = /(?:^|\n)event: ([^\n]*)/;
const DATA = /(?:^|\n)data: ([^\n]*)/;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const sentAt = new Map(), runningAt = new Map();
const errors = [];

function report() {
  const pickups = [...sentAt].filter(([id]) => runningAt.has(id)).map(([id, t]) => (runningAt.get(id) - t) / 1000);
  process.stdout.write(JSON.stringify({ pickups, errors: errors.slice(0, 3) }) + "\n", () => process.exit(0));
}

function post() {
  return new Promise((resolve) => {
    const t = performance.now();
    const req = http.request({
      host: args.host, port: args.port, path: args.postPath, method: "POST", agent,
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(args.body), ...args.headers },
    }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => { body += chunk; });
      res.on("end", () => {
        if (res.statusCode === 202) sentAt.set(JSON.parse(body).jobId, t);
        else errors.push(`POST answered ${res.statusCode}`);
        resolve();
      });
    });
    req.on("error", (error) => { errors.push(error.message); resolve(); });
    req.end(args.body);
  });
}

const socket = connect(args.host, args.port, args.eventsPath, args.headers, {
  onOpen: async () => {
    for (let i = 0; i < args.jobs; i++) {
      await post();
      await new Promise((r) => setTimeout(r, args.gapMs));
    }
    const deadline = performance.now() + args.timeout * 1000;
    const wait = () => ([...sentAt.keys()].every((id) => runningAt.has(id)) || performance.now() > deadline
      ? report() : setTimeout(wait, 20));
    wait();
  },
  onRefused: (status) => { errors.push(status); report(); },
  onBlocks: (blocks) => {
    const now = performance.now();
    for (const block of blocks) {
      const name = NAME.exec(block), data = DATA.exec(block);
      if (name && name[1] === "content_job.running" && data) {
        const id = JSON.parse(data[1]).jobId;
        if (!runningAt.has(id)) runningAt.set(id, now);
      }
    }
  },
});
socket.on("error", (error) => { errors.push(error.message); report(); });
