/* Nexus content jobs console: plain JavaScript over the JSON API and the SSE streams. */
(function () {
  "use strict";

  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function api(method, url, body) {
    const options = {method, credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (method !== "GET") {
      options.headers["X-CSRFToken"] = csrfToken();
      if (body !== undefined) {
        options.headers["Content-Type"] = "application/json";
        options.body = JSON.stringify(body);
      }
    }
    // No answer at all (the server is away) is a failed answer of status 0, for the caller to say so.
    const response = await fetch(url, options).catch(() => null);
    if (response === null) return {ok: false, status: 0, data: null};
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    return {ok: response.ok, status: response.status, data};
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  /* A visible connection state: "reconnecting…" while an EventSource is trying again. */
  function connectionIndicator() {
    const box = document.getElementById("conn");
    const failing = new Set();
    return {
      // `ended()` says the stream was expected to close (the job is over): its reconnect, which
      // the server answers with 204, is no outage.
      watch(name, es, ended) {
        es.addEventListener("open", () => this.set(name, true));
        es.addEventListener("error", () => this.set(name, es.readyState === EventSource.OPEN || (ended && ended())));
      },
      set(name, ok) {
        if (ok) failing.delete(name); else failing.add(name);
        this.render();
      },
      render() {
        box.hidden = failing.size === 0;
        box.textContent = failing.size ? "reconnecting…" : "";
      },
    };
  }

  /* How long to wait before trying again: 1 s, doubling up to 30 s; back to 1 s once it works. */
  function backoff() {
    let pause = 1000;
    return {
      next() { const wait = pause; pause = Math.min(pause * 2, 30000); return wait; },
      reset() { pause = 1000; },
    };
  }

  /* An EventSource that is opened again when the browser gives up on it. The browser retries
     by itself after a dropped connection, but an answer other than 200 (a 502 from a proxy, a
     503 while the server restarts) closes an EventSource for good. Here it is opened again
     after a pause (`backoff`), from the last event it delivered, unless
     `ended()` says the stream closed on purpose (the job is over). */
  function liveStream(url, name, conn, ended) {
    const handlers = [];
    const pause = backoff();
    let es = null, lastId = "", timer = null, closed = false;
    function open() {
      timer = null;
      const from = lastId ? `${url.includes("?") ? "&" : "?"}lastEventId=${encodeURIComponent(lastId)}` : "";
      const source = es = new EventSource(url + from);
      conn.watch(name, source, ended);
      source.addEventListener("open", () => pause.reset());
      source.addEventListener("error", () => {
        if (source !== es || closed || source.readyState !== EventSource.CLOSED || (ended && ended())) return;
        timer = setTimeout(open, pause.next());
      });
      for (const [event, handler] of handlers) source.addEventListener(event, handler);
    }
    return {
      on(event, handle) {
        handlers.push([event, (e) => { if (e.lastEventId) lastId = e.lastEventId; handle(e); }]);
        return this;
      },
      start() { open(); return this; },
      close() {
        closed = true;
        clearTimeout(timer);
        if (es) es.close();
      },
    };
  }

  const JOB_EVENTS = ["content_job.status", "content_job.running", "content_job.progress",
                      "content_job.done", "content_job.failed", "content_job.cancelled"];

  function setProgress(container, bar, text, job) {
    const pct = Math.max(0, Math.min(100, job.progress || 0));
    bar.style.width = pct + "%";
    text.textContent = pct.toFixed(0) + "%";
    container.setAttribute("aria-valuenow", pct.toFixed(0));
  }

  function shortId(id) { return id.slice(0, 8); }

  /* ---------------------------------------------------------------- jobs list */
  function jobsPage({companyId, jobUrl}) {
    const base = `/api/companies/${companyId}/content-jobs`;
    const rows = document.getElementById("job-rows");
    const empty = document.getElementById("empty");
    const more = document.getElementById("more");
    const filters = document.getElementById("filters");
    const byId = new Map();
    let next = null;
    // The company stream has the last word on a job: what it said of a job while a request was
    // out is newer than that request's answer (a fast job can be done before its submit is
    // answered). `ask` hands each answer the stream's jobs of that while as `newer`.
    let heard = 0, out = 0;
    const said = new Map();  // jobId -> {tick, job}, kept only while a request is out
    async function ask(method, url, body) {
      const since = heard;
      out++;
      try {
        const answer = await api(method, url, body);
        answer.newer = new Map([...said].filter(([, s]) => s.tick > since).map(([id, s]) => [id, s.job]));
        return answer;
      } finally {
        if (--out === 0) said.clear();
      }
    }

    function filterValues() {
      return {status: filters.status.value, jobType: filters.jobType.value};
    }

    function matches(job) {
      const f = filterValues();
      return (!f.status || job.status === f.status) && (!f.jobType || job.jobType === f.jobType);
    }

    function row(job) {
      const link = el("a", {href: jobUrl.replace("JOB", job.jobId), text: shortId(job.jobId)});
      const bar = el("div", {class: "bar"});
      const pct = el("span", {class: "pct"});
      const progress = el("div", {class: "progress small", role: "progressbar", "aria-label": `Progress of ${shortId(job.jobId)}`,
        "aria-valuemin": "0", "aria-valuemax": "100"}, bar, pct);
      const tr = el("tr", {"data-job-id": job.jobId, "data-created": job.createdAt},
        el("td", {}, link), el("td", {text: job.jobType}),
        el("td", {}, el("span", {class: "status"})), el("td", {}, progress),
        el("td", {class: "wide", text: new Date(job.createdAt).toLocaleString()}));
      update(tr, job);
      return tr;
    }

    function update(tr, job) {
      const status = tr.querySelector(".status");
      status.textContent = job.status;
      status.dataset.status = job.status;
      const progress = tr.querySelector(".progress");
      setProgress(progress, progress.querySelector(".bar"), progress.querySelector(".pct"), job);
    }

    function upsert(job) {
      let tr = byId.get(job.jobId);
      if (tr) {
        update(tr, job);
        if (!matches(job)) { tr.remove(); byId.delete(job.jobId); }
      } else if (matches(job)) {
        tr = row(job);
        byId.set(job.jobId, tr);
        // Newest first, as the API lists them, wherever the job came from.
        const older = [...rows.children].find((r) => r.dataset.created < job.createdAt);
        rows.insertBefore(tr, older || null);
      }
      empty.hidden = byId.size > 0;
    }

    let listed = 0;  // a new reading of the list supersedes the answers still out
    async function load(reset) {
      const mine = reset ? ++listed : listed;
      let url = next;
      if (reset) {
        const params = new URLSearchParams();
        const f = filterValues();
        if (f.status) params.set("status", f.status);
        if (f.jobType) params.set("jobType", f.jobType);
        url = `${base}?${params}`;
      }
      const {ok, data, newer} = await ask("GET", url);
      if (!ok || mine !== listed) return;
      if (reset) {  // the rows are replaced at once, with what the stream said meanwhile
        rows.textContent = "";
        byId.clear();
        newer.forEach((job) => upsert(job));
      }
      data.results.forEach((job) => upsert(newer.get(job.jobId) || job));
      next = data.next;
      more.hidden = !next;
      empty.hidden = byId.size > 0;
    }

    filters.addEventListener("change", () => load(true));
    more.addEventListener("click", () => load(false));
    load(true);

    // One EventSource on the company stream moves every row. It has no past, so once it is
    // open the list is read again: a job that moved before the stream listened (one submitted
    // while the page was opening it) shows where it is now.
    const company = liveStream(`/api/companies/${companyId}/events`, "company", connectionIndicator());
    for (const name of JOB_EVENTS) {
      company.on(name, (e) => {
        const job = JSON.parse(e.data);
        heard++;
        if (out > 0) said.set(job.jobId, {tick: heard, job});
        upsert(job);
      });
    }
    let listening = false;
    company.on("open", () => { if (!listening) { listening = true; load(true); } });
    company.start();

    // Submit forms generated from each job type's params.
    const picker = document.getElementById("job-type");
    if (!picker) return;
    const forms = document.querySelectorAll(".submit-form");
    picker.addEventListener("change", () => {
      forms.forEach((f) => { f.hidden = f.dataset.jobType !== picker.value; });
    });
    forms.forEach((form) => form.addEventListener("submit", async (event) => {
      event.preventDefault();
      form.querySelectorAll(".field-error").forEach((p) => { p.textContent = ""; });
      form.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
      const params = {};
      form.querySelectorAll("[name]").forEach((input) => {
        if (input.dataset.kind === "checkbox") params[input.name] = input.checked;
        else if (input.dataset.kind === "number") {
          if (input.value === "") { if (input.dataset.nullable) params[input.name] = null; }
          else params[input.name] = Number(input.value);
        } else if (input.value !== "") params[input.name] = input.value;
      });
      const {ok, status, data, newer} = await ask("POST", base, {jobType: form.dataset.jobType, params});
      if (ok) {
        // The answer is the job's first state: it adds the row, never overwrites one.
        if (!byId.has(data.jobId) && !newer.has(data.jobId)) upsert(data);
        return;
      }
      const errors = (data && data.errors) || [];
      let placed = false;
      for (const error of errors) {
        const name = (error.field || "").replace(/^params\./, "");
        const input = form.querySelector(`[name="${name}"]`);
        if (input) {
          input.setAttribute("aria-invalid", "true");
          input.setAttribute("aria-describedby", input.id + "-error");
          document.getElementById(input.id + "-error").textContent = error.message;
          placed = true;
        }
      }
      if (!placed) {
        form.querySelector(".form-error").textContent = (data && data.detail) ||
          (status === 0 ? "The server did not answer; the job was not submitted." : "The job was not accepted.");
      }
    }));
  }

  /* ---------------------------------------------------------------- job page */
  function jobPage({companyId, jobId}) {
    const url = `/api/companies/${companyId}/content-jobs/${jobId}`;
    const $ = (id) => document.getElementById(id);
    const log = $("log");
    const search = $("log-search");
    const jump = $("jump");
    const seen = new Set();
    let following = true;
    let terminal = false;
    const conn = connectionIndicator();

    function showJob(job) {
      terminal = ["done", "failed", "cancelled"].includes(job.status);
      $("job-type").textContent = job.jobType;
      $("job-status").textContent = job.status;
      $("job-status").dataset.status = job.status;
      $("job-stage").textContent = job.stage || "—";
      $("job-attempt").textContent = job.attempt;
      $("job-error").textContent = job.error ? `${job.error.code}: ${job.error.message}` : "—";
      setProgress($("job-progress"), $("job-progress-bar"), $("job-progress-text"), job);
      const cancel = $("cancel"), retry = $("retry");
      if (cancel) cancel.disabled = !(job.status === "queued" || job.status === "running") || job.cancelRequested;
      if (retry) retry.disabled = !(job.status === "failed" || job.status === "cancelled");
      showArtifacts(job);
    }

    function showArtifacts(job) {
      const artifacts = (job.result && job.result.artifacts) || [];
      $("artifacts-card").hidden = artifacts.length === 0;
      const box = $("artifacts");
      box.textContent = "";
      for (const a of artifacts) {
        const figure = el("figure", {class: "artifact"});
        if (a.contentType.startsWith("image/")) {
          figure.append(el("img", {src: a.url, alt: `Preview of ${a.name}`, loading: "lazy"}));
        } else if (a.contentType.startsWith("text/html")) {
          // Sandboxed: the document is shown, never run, and cannot reach this page.
          figure.append(el("iframe", {src: a.url, sandbox: "", title: `Preview of ${a.name}`}));
        }
        figure.append(el("figcaption", {},
          el("a", {href: a.url, download: a.name, text: `Download ${a.name}`}),
          ` (${a.contentType}, ${a.size} bytes)`));
        box.append(figure);
      }
    }

    function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 8; }
    function applySearch(li) {
      const q = search.value.trim().toLowerCase();
      li.hidden = q !== "" && !li.textContent.toLowerCase().includes(q);
    }

    function addLine(line) {
      if (seen.has(line.event_id)) return;  // a resumed stream never shows a line twice
      seen.add(line.event_id);
      const time = new Date(line.event_time * 1000).toLocaleTimeString();
      const li = el("li", {class: `line sev-${line.severity}`, "data-event-id": String(line.event_id)},
        el("span", {class: "ts", text: time}), el("span", {class: "sev", text: line.severity}),
        el("span", {class: "msg", text: line.event_message}));
      applySearch(li);
      log.append(li);
      if (following) log.scrollTop = log.scrollHeight;
      else jump.hidden = false;
    }

    log.addEventListener("scroll", () => {
      following = atBottom();
      if (following) jump.hidden = true;
    });
    jump.addEventListener("click", () => {
      following = true;
      log.scrollTop = log.scrollHeight;
      jump.hidden = true;
    });
    search.addEventListener("input", () => log.querySelectorAll("li").forEach(applySearch));

    let streamed = 0;  // job-stream events shown so far
    async function act(verb) {
      const before = streamed;
      const {ok, data} = await api("POST", `${url}/${verb}`);
      $("action-error").textContent = ok ? "" : ((data && data.detail) || `Could not ${verb}.`);
      // The job stream carries every change, this one too. Once it has shown an event while
      // the request was out, the page follows the stream alone: the answer may be older than
      // what is shown (a stream can deliver "cancelled" before the cancel request's answer).
      if (ok && streamed === before) showJob(data);
    }
    if ($("cancel")) $("cancel").addEventListener("click", () => act("cancel"));
    if ($("retry")) $("retry").addEventListener("click", async () => { await act("retry"); openStreams(); });

    const pause = backoff();
    let jobStream = null, logStream = null, again = null, opening = 0;
    async function openStreams() {
      const mine = ++opening;  // a later call (Retry, a timer) supersedes this one
      clearTimeout(again);
      if (jobStream) jobStream.close();
      if (logStream) logStream.close();
      const {ok, data: job} = await api("GET", url);
      if (mine !== opening) return;
      conn.set("job", ok);
      if (!ok) {  // the server is away or failing: ask again, less and less often
        again = setTimeout(openStreams, pause.next());
        return;
      }
      pause.reset();
      showJob(job);
      jobStream = liveStream(job.eventsUrl, "job", conn, () => terminal);
      for (const name of JOB_EVENTS) jobStream.on(name, (e) => { streamed++; showJob(JSON.parse(e.data)); });
      jobStream.start();
      logStream = liveStream(job.logsUrl, "log", conn, () => terminal)
        .on("message", (e) => addLine(JSON.parse(e.data).log)).start();
    }
    openStreams();
  }

  window.NexusConsole = {jobsPage, jobPage};
})();
