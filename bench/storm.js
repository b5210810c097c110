// Reconnect storm clients for the benchmarks, on Node (Python clients parsing every event cost
// the 2-core machine more CPU than the server they measured). `n` connections on one job's log
// stream, each keeping the ids it read; prints "connected" once all are open. When a line
// "cut" arrives on stdin, every connection drops and reconnects at once with Last-Event-ID, as
// browsers do after a network blip, and reads to the stream's end. Prints one JSON line: how
// long after the cut each was back (its response had begun; s), and every client whose ids are
// not exactly 1..expect (a gap or a repeat).
//   node bench/storm.js '{"host": ..., "port": ..., "path": ..., "n": ..., "expect": ..., "headers": {...}}'
const { connect } = require("./sse_http");
const { performance } = require("perf_hooks");

const args = JSON.parse(process.argv[2]);
const ID = /(?:^|\n)id: (\d+)/;
const back = [], bad = [], errors = [];
let connected = 0, finished = 0, cutAt = null;
const clients = [];
let active = 0;
const waiting = [];

function limit(fn) {  // at most 200 connects in flight, as the Python client did
  if (active < 200) { active++; fn(); } else waiting.push(fn);
}
function release() {
  active--;
  if (waiting.length) { active++; waiting.shift()(); }
}

function open(client, lastId, onOpen) {
  limit(() => {
    const headers = { ...(args.headers || {}) };
    if (lastId !== null) headers["Last-Event-ID"] = String(lastId);
    let released = false;
    const done = () => { if (!released) { released = true; release(); } };
    const socket = connect(args.host, args.port, args.path, headers, {
      onOpen: () => { done(); onOpen(); },
      onRefused: (status) => { done(); client.error = status; socket.destroy(); },
      onBlocks: (blocks) => {
        for (const block of blocks) {
          const id = ID.exec(block);
          if (id) client.ids.push(Number(id[1]));
        }
      },
    });
    client.socket = socket;
    socket.on("error", (error) => { done(); client.error = client.error || error.message; });
    socket.on("close", () => {
      done();
      if (socket !== client.socket) return;  // the cut connection: the client is coming back
      end(client);
    });
  });
}

function end(client) {
  if (client.ended) return;
  client.ended = true;
  if (client.error) errors.push(client.error);
  else {
    const ids = client.ids;
    const ok = ids.length === args.expect && ids.every((id, i) => id === i + 1);
    if (!ok) bad.push(`${ids.length} ids, first ${ids.slice(0, 3)}, last ${ids.slice(-3)}`);
  }
  if (++finished === clients.length) {
    process.stdout.write(JSON.stringify({ back, bad: bad.slice(0, 3), bad_count: bad.length,
                                          errors: errors.slice(0, 3), error_count: errors.length }) + "\n",
                         () => process.exit(0));
  }
}

for (let i = 0; i < args.n; i++) {
  const client = { ids: [], socket: null, ended: false, error: null };
  clients.push(client);
  open(client, null, () => { if (++connected === args.n) process.stdout.write("connected\n"); });
}

process.stdin.setEncoding("utf8");
process.stdin.on("data", (text) => {
  if (!text.includes("cut") || cutAt !== null) return;
  cutAt = performance.now();
  for (const client of clients) {
    if (client.ended) continue;
    const old = client.socket;
    const last = client.ids.length ? client.ids[client.ids.length - 1] : null;
    client.socket = null;
    old.destroy();
    open(client, last, () => back.push((performance.now() - cutAt) / 1000));
  }
});
