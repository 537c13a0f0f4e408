#!/usr/bin/env node
// A lull worker on MQTT.js: wait for a lease, run a command under it,
// heartbeat on a timer, stop the command when the lease is revoked or expires,
// and release with an outcome.
//
//   npm install            # MQTT.js into this folder
//   node lull-worker.js --broker mqtt://127.0.0.1:1883 --worker node-1 -- make -j4
//
// MQTT v5 (response topic + correlation data), falling back to v3.1.1
// (reply_to + request_id in the payload) when the broker refuses v5, or with
// --mqtt 3. --secure uses the per-worker topics of lull's secure broker config.
// docs/workers.md walks through the protocol.
//
// Exit status: the command's own; 69 when lulld cannot be reached, 75 when no
// lease came within --wait.
'use strict';

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const os = require('node:os');
const path = require('node:path');
const mqtt = require('mqtt');

const EX_USAGE = 64;
const EX_UNAVAILABLE = 69;
const EX_TEMPFAIL = 75;

const say = (text) => process.stderr.write(`lull-worker: ${text}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseArgs(argv) {
  const o = {
    broker: process.env.LULL_BROKER || 'mqtt://127.0.0.1:1883',
    worker: process.env.LULL_WORKER_ID || os.hostname().split('.')[0],
    user: process.env.LULL_USERNAME, password: process.env.LULL_PASSWORD,
    prefix: process.env.LULL_TOPIC_PREFIX || '', secure: false, mqtt: 5,
    costClass: 'NORMAL', priority: 'NORMAL', host: '', jobType: '',
    wait: 0, grace: 10, timeout: 10, command: [],
  };
  const value = { '--broker': 'broker', '--worker': 'worker', '--user': 'user',
    '--password': 'password', '--topic-prefix': 'prefix', '--cost-class': 'costClass',
    '--priority': 'priority', '--host': 'host', '--job-type': 'jobType' };
  const number = { '--mqtt': 'mqtt', '--wait': 'wait', '--grace': 'grace', '--timeout': 'timeout' };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a === '--') { o.command = argv.slice(i + 1); break; }
    if (a === '--secure') o.secure = true;
    else if (value[a] && i + 1 < argv.length) o[value[a]] = argv[++i];
    else if (number[a] && i + 1 < argv.length) o[number[a]] = Number(argv[++i]);
    else { o.command = argv.slice(i); break; }
  }
  if (!o.broker.includes('://')) o.broker = `mqtt://${o.broker}`;
  return o;
}

class LeaseClient {
  constructor(o) {
    this.o = o;
    this.prefix = o.prefix ? o.prefix.replace(/\/$/, '') + '/' : '';
    this.inbox = this.topic(`workers/${o.worker}/reply/${crypto.randomBytes(6).toString('hex')}`);
    this.pending = new Map(); // correlation id -> resolve
    this.onNotice = () => {};
  }

  topic(relative) { return this.prefix + relative; }

  // Connects with MQTT v5, or v3.1.1 when the broker refuses v5.
  async connect() {
    const versions = this.o.mqtt === 5 ? [5, 4] : [4];
    let lastError;
    for (const v of versions) {
      try {
        this.client = await this.connectWith(v);
        this.version = v;
        return;
      } catch (e) {
        lastError = e;
        if (!/protocol|version/i.test(String(e.message))) break;
      }
    }
    throw lastError;
  }

  connectWith(protocolVersion) {
    const status = this.topic(`stats/worker/${this.o.worker}`);
    return new Promise((resolve, reject) => {
      const c = mqtt.connect(this.o.broker, {
        protocolVersion,
        clientId: `lull-node-${this.o.worker}-${crypto.randomBytes(4).toString('hex')}`,
        username: this.o.user, password: this.o.password,
        reconnectPeriod: 0, connectTimeout: this.o.timeout * 1000,
        // The last will: if this process dies, lulld ends its leases at once.
        will: { topic: status, payload: JSON.stringify({ v: 1, state: 'offline' }), qos: 1, retain: true },
      });
      c.once('connect', async () => {
        c.removeAllListeners('error');
        c.on('error', (e) => say(`mqtt: ${e.message}`));
        c.on('message', (t, p, packet) => this.message(t, p, packet));
        const filters = [this.inbox];
        if (this.o.secure) filters.push(this.topic(`workers/${this.o.worker}/lease/+/state`));
        await c.subscribeAsync(filters, { qos: 1 });
        await c.publishAsync(status, JSON.stringify({ v: 1, state: 'online' }), { qos: 1, retain: true });
        resolve(c);
      });
      c.once('error', (e) => { c.end(true); reject(e); });
      c.once('close', () => reject(new Error(`cannot connect to ${this.o.broker}`)));
    });
  }

  // Says the worker is gone (the worker status schema's offline, as the
  // last will would), then disconnects.
  async close(state = 'offline') {
    await this.client.publishAsync(this.topic(`stats/worker/${this.o.worker}`),
      JSON.stringify({ v: 1, state }), { qos: 1, retain: true });
    await this.client.endAsync();
  }

  message(topic, payload, packet) {
    let doc;
    try { doc = JSON.parse(payload.toString()); } catch { return; }
    if (topic === this.inbox) {
      const corr = packet.properties && packet.properties.correlationData;
      const key = corr ? corr.toString() : doc && doc.request_id;
      const resolve = this.pending.get(key);
      if (resolve) { this.pending.delete(key); resolve(doc); }
    } else if (topic.endsWith('/state')) {
      this.onNotice(doc);
    }
  }

  // Publishes body on topic and resolves with the reply (null on timeout).
  call(topic, body, timeoutSec = this.o.timeout) {
    const key = crypto.randomBytes(8).toString('hex');
    body = { ...body, v: 1 };
    if (!this.o.secure) body.worker_id = this.o.worker;
    const opts = { qos: 1 };
    if (this.version === 5) {
      opts.properties = { responseTopic: this.inbox, correlationData: Buffer.from(key),
        contentType: 'application/json' };
    } else {
      body.reply_to = this.inbox;
      body.request_id = key;
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.pending.delete(key); resolve(null); }, timeoutSec * 1000);
      this.pending.set(key, (doc) => { clearTimeout(timer); resolve(doc); });
      this.client.publish(this.topic(topic), JSON.stringify(body), opts);
    });
  }

  leaseTopic(leaseId, action) {
    return this.o.secure ? `scheduler/${this.o.worker}/lease/${leaseId}/${action}`
      : `scheduler/lease/${leaseId}/${action}`;
  }

  request(fields) {
    return this.call(this.o.secure ? `scheduler/${this.o.worker}/lease/request`
      : 'scheduler/lease/request', fields);
  }

  // Notices of one lease; in secure mode they already come to our inbox.
  async watch(leaseId, fn) {
    this.onNotice = (doc) => { if (doc.lease_id === leaseId) fn(doc); };
    if (!this.o.secure)
      await this.client.subscribeAsync(this.topic(`scheduler/lease/${leaseId}/state`), { qos: 1 });
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.command.length === 0) {
    say('usage: lull-worker.js [--broker URL] [--worker ID] [--cost-class C] [--mqtt 3|5] -- CMD ARGS...');
    return EX_USAGE;
  }
  const lc = new LeaseClient(o);
  try {
    await lc.connect();
  } catch (e) {
    say(`cannot connect to ${o.broker}: ${e.message}`);
    return EX_UNAVAILABLE;
  }
  say(`connected with MQTT ${lc.version === 5 ? 'v5' : 'v3.1.1'}`);
  let interrupted = 0;
  let child = null;
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      interrupted = os.constants.signals[sig];
      if (child) stop('interrupted');
    });
  }

  // 1. Ask until granted (a denial says when to ask again).
  const request = { job_type: o.jobType || path.basename(o.command[0]),
    cost_class: o.costClass, priority: o.priority };
  if (o.host) request.host_id = o.host;
  const started = Date.now();
  let reply;
  for (;;) {
    reply = await lc.request(request);
    if (!reply) { say(`no reply from lulld within ${o.timeout}s`); await lc.close(); return EX_UNAVAILABLE; }
    if (reply.ok === false) {
      say(`request refused: ${reply.error.code}: ${reply.error.message}`);
      await lc.close();
      return EX_USAGE;
    }
    if (reply.approved) break;
    const retry = Math.max(0.5, reply.retry_after_sec || 5);
    if (o.wait && (Date.now() - started) / 1000 + retry > o.wait) {
      say(`no lease within ${o.wait}s: ${reply.reason}`);
      await lc.close();
      return EX_TEMPFAIL;
    }
    say(`waiting ${retry.toFixed(1)}s: ${reply.reason}`);
    await sleep(retry * 1000);
    if (interrupted) { await lc.close(); return 128 + interrupted; }
  }
  const leaseId = reply.lease_id;
  const interval = reply.limits.heartbeat_interval_sec;
  say(`lease ${leaseId} on ${reply.host_id} (fencing token ${reply.fencing_token})`);

  // 2. Watch the lease's notices, run the command, heartbeat on a timer.
  let lost = null;
  let killTimer = null;
  const stop = (why) => {
    if (killTimer || !child || child.exitCode !== null) return;
    say(`stopping the command: ${why}`);
    try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
    killTimer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { } }, o.grace * 1000);
  };
  await lc.watch(leaseId, (notice) => {
    if (notice.state === 'REVOKED' || notice.state === 'EXPIRED') {
      lost = `lease ${notice.state.toLowerCase()}: ${notice.reason || ''}`;
      stop(lost);
    }
  });
  child = spawn(o.command[0], o.command.slice(1), { stdio: 'inherit', detached: true,
    env: { ...process.env, LULL_LEASE_ID: leaseId, LULL_FENCING_TOKEN: String(reply.fencing_token) } });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(code !== null ? code : 128 + os.constants.signals[signal]));
    child.on('error', (e) => { say(`cannot run ${o.command[0]}: ${e.message}`); resolve(127); });
  });
  const beat = async () => {
    if (lost) return;
    const r = await lc.call(lc.leaseTopic(leaseId, 'heartbeat'), {}, interval);
    if (!r) say('no heartbeat reply'); // keep trying until the TTL runs out
    else if (r.ok === false) { lost = `heartbeat refused: ${r.error.message}`; stop(lost); }
  };
  beat(); // at once: catches a revoke that came before we subscribed
  const beats = setInterval(beat, interval * 1000);
  const code = await exited;
  clearInterval(beats);
  clearTimeout(killTimer);

  // 3. Release with the outcome (also after a revoke: it says the work stopped).
  const outcome = { outcome: code === 0 && !lost ? 'succeeded' : 'failed',
    result: { exit_code: code }, reason: lost || (interrupted ? 'interrupted' : 'command exited') };
  if (outcome.outcome === 'failed') outcome.error = lost || `exit status ${code}`;
  const rel = await lc.call(lc.leaseTopic(leaseId, 'release'), outcome);
  if (!rel || rel.ok === false) say(`release: ${rel ? rel.error.message : 'no reply'}`);
  else say(`released ${leaseId}: ${outcome.outcome}`);
  await lc.close();
  return code;
}

main().then((code) => process.exit(code), (e) => { say(e.stack || String(e)); process.exit(70); });
