// Wall-clock time in seconds with sub-millisecond resolution, for the stamps that a server and
// a client in different processes compare. Date.now() has whole milliseconds; performance.now()
// is finer but counts from the process's start, and performance.timeOrigin fixes the wall time
// of that start once: a wall clock set meanwhile (this machine's was seen a few ms off within a
// run) puts a long-lived process's stamps that far from a new one's. So each caller anchors
// anew, on the moment Date.now() turns to its next millisecond (exact to a few microseconds;
// it waits at most 1 ms for it).
const { performance } = require("perf_hooks");

exports.wallClock = () => {
  const start = Date.now();
  let ms;
  while ((ms = Date.now()) === start) { /* wait for the next millisecond */ }
  const anchor = ms - performance.now();
  return () => (anchor + performance.now()) / 1000;
};
