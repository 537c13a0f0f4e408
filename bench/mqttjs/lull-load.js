#!/usr/bin/env node
'use strict';
// Load generators for lull's benchmarks, on MQTT.js rather than Paho (Paho C
// tops out near 5,000 QoS 1 round trips/s on this machine, below lulld's own
// ceiling). Prints one JSON object on stdout; progress goes to stderr.
//
//   lull-load.js echo   --broker URL [--seconds 3] [--concurrency 1]
//       QoS 1 request/response through a bare echo client: the broker's cost.
//   lull-load.js cycles --broker URL [--seconds 3] [--workers 50] [--conns 5]
//       grant+release cycles against lulld (open mode), each worker one at a
//       time; with --workers 1, the single-worker grant latency.
//   lull-load.js soak   --broker URL [--seconds 600] [--hosts 100]
//                       [--workers 1000] [--template HOST]
//       a fleet: simulated hosts publish snapshots every 2 s (copies of HOST's
//       snapshot, marked idle), workers hold 60 s leases, heartbeat every 5 s
//       and release and ask again after 30-90 s; --warmup S leaves the first
//       S seconds out of the latencies. Ten times a second one of the
//       workers' connections also sends a request to a bare echo client in
//       this process: the same broker, generator and machine under the same
//       load, without lulld (the baseline for the reply latencies).
//   lull-load.js submit --broker URL [--jobs 30000] [--window 500] [--acked FILE]
//       queues jobs (scheduler/job/submit, type "shutdown-bench", host
//       "nowhere", so none is dispatched), at most --window unanswered at a
//       time, and waits for every acknowledgement.
//   lull-load.js flood  --broker URL [--seconds 60] [--window 2000] [--acked FILE]
//       publishes submits as fast as the broker takes them, --window
//       unanswered at most, until --seconds pass or SIGTERM; never waits for
//       lulld (a lulld that stops answering leaves the window full, and the
//       flood goes on as bare publishes that expect no reply).
//   With --acked, every acknowledged job id is appended to FILE, one a line.
//
// Latencies are in milliseconds, from publish to the reply's arrival.

const crypto = require('node:crypto');
const mqtt = require('mqtt');

const say = (text) => process.stderr.write(`lull-load: ${text}\n`);

function parseArgs(argv) {
  const o = {
    mode: argv[0], broker: 'mqtt://127.0.0.1:1883', seconds: 3, concurrency: 1, workers: 50,
    conns: 5, hosts: 100, template: '', ttl: 60, heartbeat: 5, prefix: '', report: 30,
    warmup: 0, jobs: 30000, window: 500, acked: '',
  };
  for (let i = 1; i < argv.length; ++i) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in o) || i + 1 >= argv.length) throw new Error(`unknown or incomplete option ${argv[i]}`);
    const v = argv[++i];
    o[key] = typeof o[key] === 'number' ? Number(v) : v;
  }
  if (!['echo', 'cycles', 'soak', 'submit', 'flood'].includes(o.mode)) {
    throw new Error('mode: echo, cycles, soak, submit or flood');
  }
  return o;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.round((p / 100) * (sorted.length - 1)))];
}

/// Latency samples (ms) with p50/p99/max, a count, and how many took over
/// 200 ms (the replies a user would notice).
class Samples {
  constructor() { this.v = []; }
  add(ms) { this.v.push(ms); }
  summary() {
    const s = Float64Array.from(this.v).sort();
    const r = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
    return { n: s.length, p50_ms: r(percentile(s, 50)), p99_ms: r(percentile(s, 99)),
      max_ms: r(s.length ? s[s.length - 1] : null), over_200_ms: s.filter((x) => x > 200).length };
  }
}

function connect(o, id, version = 5) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(o.broker, { protocolVersion: version, clientId: id,
      reconnectPeriod: 1000, connectTimeout: 10000, clean: true });
    // No Nagle: small request/reply packets otherwise wait for delayed ACKs
    // (~40 ms a round trip), as Paho and Mosquitto already set TCP_NODELAY.
    c.on('connect', () => { if (c.stream && c.stream.setNoDelay) c.stream.setNoDelay(true); });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

/// One MQTT connection that carries requests for many workers: v5 response
/// topic + correlation data, one inbox per connection.
class Requester {
  constructor(o, name) {
    this.o = o;
    this.name = name;
    this.inbox = `${o.prefix}workers/${name}/reply`;
    this.pending = new Map();
    this.seq = 0;
  }
  async start() {
    this.c = await connect(this.o, `lull-load-${this.name}-${crypto.randomBytes(3).toString('hex')}`);
    this.c.on('message', (t, p, packet) => {
      const corr = packet.properties && packet.properties.correlationData;
      if (!corr) return;
      const entry = this.pending.get(corr.toString());
      if (!entry) return;
      this.pending.delete(corr.toString());
      clearTimeout(entry.timer);
      let doc = null;
      try { doc = JSON.parse(p.toString()); } catch { /* counted as a failure below */ }
      entry.resolve({ doc, ms: Number(process.hrtime.bigint() - entry.t0) / 1e6 });
    });
    await this.c.subscribeAsync(this.inbox, { qos: 1 });
  }
  call(topic, body, timeoutMs = 10000) {
    const key = `${this.name}-${++this.seq}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.pending.delete(key); resolve({ doc: null, ms: null }); },
        timeoutMs);
      this.pending.set(key, { resolve, timer, t0: process.hrtime.bigint() });
      this.c.publish(`${this.o.prefix}${topic}`, JSON.stringify(body), { qos: 1, properties: {
        responseTopic: this.inbox, correlationData: Buffer.from(key),
        contentType: 'application/json' } });
    });
  }
  end() { return this.c.endAsync(); }
}

// A bare echo client: answers each request on bench/echo at its response
// topic, as lulld answers a lease request, with nothing else in between.
async function echoResponder(o) {
  const responder = await connect(o, `lull-load-echo-${crypto.randomBytes(3).toString('hex')}`);
  responder.on('message', (t, p, packet) => {
    const props = packet.properties || {};
    if (props.responseTopic)
      responder.publish(props.responseTopic, p, { qos: 1,
        properties: { correlationData: props.correlationData } });
  });
  await responder.subscribeAsync(`${o.prefix}bench/echo`, { qos: 1 });
  return responder;
}

async function echo(o) {
  const responder = await echoResponder(o);
  const r = new Requester(o, 'echo');
  await r.start();
  const lat = new Samples();
  let done = 0, failed = 0;
  const deadline = Date.now() + o.seconds * 1000;
  const loop = async () => {
    while (Date.now() < deadline) {
      const { ms } = await r.call('bench/echo', { v: 1, n: done });
      if (ms === null) ++failed; else { ++done; lat.add(ms); }
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: o.concurrency }, loop));
  const secs = (Date.now() - t0) / 1000;
  await r.end();
  await responder.endAsync();
  return { mode: 'echo', concurrency: o.concurrency, round_trips: done, failed,
    per_sec: Math.round(done / secs), latency: lat.summary() };
}

async function cycles(o) {
  const conns = [];
  for (let i = 0; i < Math.min(o.conns, o.workers); ++i) {
    const r = new Requester(o, `cyc${i}`);
    await r.start();
    conns.push(r);
  }
  const grant = new Samples(), release = new Samples();
  let done = 0, denied = 0, failed = 0;
  const warmupEnd = Date.now() + o.warmup * 1000;
  const deadline = warmupEnd + o.seconds * 1000;
  let measuredFrom = null;
  const worker = async (w) => {
    const r = conns[w % conns.length];
    const id = `bench-w${w}`;
    while (Date.now() < deadline) {
      const g = await r.call('scheduler/lease/request',
        { v: 1, worker_id: id, cost_units: 1, priority: 'HIGH', ttl_sec: 30 });
      if (!g.doc) { ++failed; continue; }
      if (!g.doc.approved) {
        ++denied;
        await new Promise((res) => setTimeout(res, 50));
        continue;
      }
      const rel = await r.call(`scheduler/lease/${g.doc.lease_id}/release`,
        { v: 1, worker_id: id, outcome: 'succeeded' });
      if (!rel.doc || !rel.doc.ok) { ++failed; continue; }
      if (Date.now() >= warmupEnd) {
        if (measuredFrom === null) measuredFrom = Date.now();
        ++done;
        grant.add(g.ms);
        release.add(rel.ms);
      }
    }
  };
  await Promise.all(Array.from({ length: o.workers }, (_, w) => worker(w)));
  const secs = (Date.now() - (measuredFrom || Date.now())) / 1000 || 1;
  for (const r of conns) await r.end();
  return { mode: 'cycles', workers: o.workers, conns: conns.length, cycles: done, denied, failed,
    per_sec: Math.round(done / secs), grant: grant.summary(), release: release.summary() };
}

/// The template host's snapshot, marked idle: the simulated hosts are quiet,
/// so what is measured is lulld's cost, not the policy's.
async function snapshotTemplate(o) {
  const c = await connect(o, `lull-load-tpl-${crypto.randomBytes(3).toString('hex')}`);
  const topic = `${o.prefix}stats/host/${o.template}`;
  const doc = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no snapshot on ${topic} within 30 s`)), 30000);
    c.on('message', (t, p) => {
      if (t !== topic) return;
      try { const d = JSON.parse(p.toString()); clearTimeout(timer); resolve(d); } catch { /* next */ }
    });
    c.subscribe(topic, { qos: 1 });
  });
  await c.endAsync();
  const idle = (x) => (typeof x === 'number' ? 2 : x);
  if (doc.cpu) {
    doc.cpu.total_pct = 2;
    if (Array.isArray(doc.cpu.per_core_pct)) doc.cpu.per_core_pct = doc.cpu.per_core_pct.map(idle);
  }
  if (doc.load) for (const k of Object.keys(doc.load)) doc.load[k] = 0.05;
  doc.leased = null;
  return doc;
}

async function soak(o) {
  const tpl = await snapshotTemplate(o);
  const hostIds = Array.from({ length: o.hosts }, (_, i) => `soak-h${String(i).padStart(3, '0')}`);
  const pub = await connect(o, `lull-load-hosts-${crypto.randomBytes(3).toString('hex')}`);
  const quiet = new Map();
  pub.on('message', (t, p) => {
    try { quiet.set(t.split('/').slice(-2)[0], JSON.parse(p.toString()).state); } catch { /* */ }
  });
  await pub.subscribeAsync(`${o.prefix}stats/host/+/quiet`, { qos: 0 });
  let snapshots = 0;
  const publishHosts = () => {
    const now = Math.floor(Date.now() / 1000);
    for (const h of hostIds) {
      tpl.host_id = h;
      tpl.collected_at = new Date(now * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
      pub.publish(`${o.prefix}stats/host/${h}`, JSON.stringify(tpl), { qos: 0, retain: true });
      ++snapshots;
    }
  };
  publishHosts();
  const hostTimer = setInterval(publishHosts, 2000);
  const t0 = Date.now();
  while (hostIds.some((h) => quiet.get(h) !== 'QUIET')) {
    if (Date.now() - t0 > 180000) throw new Error('hosts not QUIET within 180 s');
    await new Promise((res) => setTimeout(res, 500));
  }
  say(`${o.hosts} hosts QUIET after ${((Date.now() - t0) / 1000).toFixed(1)} s; starting ${o.workers} workers`);

  const conns = [];
  for (let i = 0; i < Math.max(1, Math.min(o.conns * 4, o.workers)); ++i) {
    const r = new Requester(o, `soak${i}`);
    await r.start();
    conns.push(r);
  }
  const lat = { grant: new Samples(), heartbeat: new Samples(), release: new Samples() };
  const counts = { grants: 0, denies: 0, heartbeats: 0, releases: 0, timeouts: 0, lost: 0 };
  const responder = await echoResponder(o);
  const echoLat = new Samples();
  const started = Date.now();
  const deadline = started + o.seconds * 1000;
  // Latencies count after the warm-up and before the end (the last releases
  // all go at once and only clean up).
  const measuring = () => Date.now() >= started + o.warmup * 1000 && Date.now() < deadline;
  const add = (kind, ms) => { if (measuring()) lat[kind].add(ms); };
  const sleep = (ms) => new Promise((res) => setTimeout(res, Math.max(0, Math.min(ms, deadline - Date.now()))));
  const worker = async (w) => {
    const r = conns[w % conns.length];
    const id = `soak-w${String(w).padStart(4, '0')}`;
    const host = hostIds[w % hostIds.length];
    await sleep(Math.random() * 5000); // spread the first requests
    while (Date.now() < deadline) {
      const g = await r.call('scheduler/lease/request',
        { v: 1, worker_id: id, host_id: host, cost_units: 2, priority: 'NORMAL', ttl_sec: o.ttl });
      if (!g.doc) { ++counts.timeouts; continue; }
      add('grant', g.ms);
      if (!g.doc.approved) {
        ++counts.denies;
        await sleep(1000 * Math.min(10, g.doc.retry_after_sec || 5));
        continue;
      }
      ++counts.grants;
      const holdUntil = Date.now() + 30000 + Math.random() * 60000;
      let alive = true;
      while (alive && Date.now() < Math.min(holdUntil, deadline)) {
        await sleep(o.heartbeat * 1000);
        if (Date.now() >= deadline) break;
        const hb = await r.call(`scheduler/lease/${g.doc.lease_id}/heartbeat`, { v: 1, worker_id: id });
        if (!hb.doc) { ++counts.timeouts; continue; }
        add('heartbeat', hb.ms);
        ++counts.heartbeats;
        if (!hb.doc.ok) { ++counts.lost; alive = false; }
      }
      if (!alive) continue;
      const rel = await r.call(`scheduler/lease/${g.doc.lease_id}/release`,
        { v: 1, worker_id: id, outcome: 'succeeded' });
      if (!rel.doc) { ++counts.timeouts; continue; }
      add('release', rel.ms);
      ++counts.releases;
    }
  };
  const progress = setInterval(() => {
    const all = new Samples();
    for (const s of Object.values(lat)) all.v.push(...s.v);
    const m = all.summary();
    say(`t=${Math.round((Date.now() - started) / 1000)} s grants=${counts.grants} heartbeats=${counts.heartbeats}`
      + ` releases=${counts.releases} denies=${counts.denies} timeouts=${counts.timeouts}`
      + ` reply p50=${m.p50_ms} ms p99=${m.p99_ms} ms`);
  }, o.report * 1000);
  const echoProbe = async () => {
    for (let n = 0; Date.now() < deadline; ++n) {
      await sleep(100);
      if (Date.now() >= deadline) break;
      const e = await conns[n % conns.length].call('bench/echo', { v: 1, n });
      if (e.ms !== null && measuring()) echoLat.add(e.ms);
    }
  };
  await Promise.all([echoProbe(), ...Array.from({ length: o.workers }, (_, w) => worker(w))]);
  clearInterval(progress);
  clearInterval(hostTimer);
  await responder.endAsync();
  for (const r of conns) await r.end();
  for (const h of hostIds) pub.publish(`${o.prefix}stats/host/${h}`, '', { qos: 1, retain: true });
  await pub.endAsync();
  const all = new Samples();
  for (const s of Object.values(lat)) all.v.push(...s.v);
  return { mode: 'soak', hosts: o.hosts, workers: o.workers, seconds: o.seconds, snapshots, ...counts,
    measured_sec: Math.max(0, o.seconds - o.warmup),
    requests_per_sec: Math.round(all.v.length / Math.max(1, o.seconds - o.warmup)),
    replies: all.summary(), grant: lat.grant.summary(), heartbeat: lat.heartbeat.summary(),
    release: lat.release.summary(), echo: echoLat.summary() };
}

/// A job no host runs (host "nowhere"): it stays queued.
function benchJob(i, tag) {
  return { v: 1, job_type: 'shutdown-bench', cost_units: 1, host_id: 'nowhere',
    priority: ['high', 'normal', 'low', 'background'][i % 4], producer: `p${i % 5}`,
    idempotency_key: `${tag}-${i}`, payload: { i, pad: 'x'.repeat(64) } };
}

/// Acknowledged job ids, appended to a file synchronously in batches (and at
/// exit), so a killed generator leaves a complete list.
class AckLog {
  constructor(path) { this.path = path; this.buf = []; this.n = 0; }
  add(id) {
    ++this.n;
    if (!this.path) return;
    this.buf.push(id);
    if (this.buf.length >= 256) this.flush();
  }
  flush() {
    if (!this.path || this.buf.length === 0) return;
    require('node:fs').appendFileSync(this.path, `${this.buf.join('\n')}\n`);
    this.buf = [];
  }
}

async function submit(o) {
  const r = new Requester(o, `submit-${crypto.randomBytes(3).toString('hex')}`);
  await r.start();
  const acks = new AckLog(o.acked);
  const tag = crypto.randomBytes(4).toString('hex');
  let next = 0, failed = 0;
  const t0 = Date.now();
  let lastSay = t0;
  const lane = async () => {
    while (next < o.jobs) {
      const i = next++;
      const res = await r.call('scheduler/job/submit', benchJob(i, tag), 30000);
      if (res.doc && res.doc.ok && res.doc.job_id) acks.add(res.doc.job_id); else ++failed;
      if (Date.now() - lastSay > 5000) { lastSay = Date.now(); say(`submitted ${acks.n}/${o.jobs}`); }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.window) }, lane));
  acks.flush();
  await r.end();
  const secs = (Date.now() - t0) / 1000;
  return { mode: 'submit', jobs: o.jobs, acked: acks.n, failed, seconds: Math.round(secs * 10) / 10,
    per_sec: Math.round(acks.n / secs) };
}

async function flood(o) {
  const r = new Requester(o, `flood-${crypto.randomBytes(3).toString('hex')}`);
  await r.start();
  const acks = new AckLog(o.acked);
  const tag = crypto.randomBytes(4).toString('hex');
  let sent = 0, open = 0, bare = 0, stop = false;
  const deadline = Date.now() + o.seconds * 1000;
  const finish = () => { stop = true; };
  process.on('SIGTERM', finish);
  process.on('SIGINT', finish);
  const t0 = Date.now();
  while (!stop && Date.now() < deadline) {
    // One batch a turn of the event loop: the socket drains in between.
    for (let k = 0; k < 200; ++k) {
      const i = sent++;
      if (open < o.window) {
        ++open;
        r.call('scheduler/job/submit', benchJob(i, tag), 5000).then((res) => {
          --open;
          if (res.doc && res.doc.ok && res.doc.job_id) acks.add(res.doc.job_id);
        });
      } else {
        ++bare;
        r.c.publish(`${o.prefix}scheduler/job/submit`, JSON.stringify(benchJob(i, tag)), { qos: 0 });
      }
    }
    await new Promise((res) => setImmediate(res));
    if (r.c.stream && r.c.stream.writableLength > 4 * 1024 * 1024) {
      await new Promise((res) => setTimeout(res, 5));
    }
  }
  acks.flush();
  const secs = (Date.now() - t0) / 1000;
  r.c.end(true);
  return { mode: 'flood', sent, bare, acked: acks.n, seconds: Math.round(secs * 10) / 10,
    per_sec: Math.round(sent / secs) };
}

async function main() {
  let o;
  try { o = parseArgs(process.argv.slice(2)); } catch (e) { say(e.message); process.exit(64); }
  const result = await { echo, cycles, soak, submit, flood }[o.mode](o);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

main().catch((e) => { say(String(e.message || e)); process.exit(1); });
