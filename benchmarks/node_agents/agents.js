'use strict';
/*
 * One client process of benchmarks/streams.py with --clients node: the cheap agents of
 * benchmarks/stream_agents.py + stream_clients.py's client_main, in Node.js (@grpc/grpc-js),
 * because the Python ones cost more CPU than the aggregator they measure on the same 2 cores.
 *
 *     node agents.js [--client-node] target first stride count ready_file stop_file rate
 *
 * Agents first, first + stride, ... (count of them), house ids house-NNNNNN, connecting at
 * `rate` a second.  The same conversation as the Python cheap agents: one gRPC channel (its own
 * HTTP/2 connection) per agent and per stream attempt, the house id in the x-vpp-house-id header,
 * Hello with sequence 1, then +1 per message; a FlexibilityUpdate after the Welcome; Telemetry
 * every 5 s at the agent's own phase with measured_at now; a PlanStatus ACCEPTED for every plan;
 * a Drain ends the stream; reconnects with the agent's DEFAULT_BACKOFF (0.5 s doubling to 60 s,
 * uniform in [d/2, d], reset after a Welcome).  Messages are encoded once where the Python
 * agents encode them once (Hello, FlexibilityUpdate; one telemetry sample per 20 ms tick shared
 * by the agents due in it); aggregator messages are read only for their kind and, for a plan,
 * its id, version and created_at.  Writes ready_file once every agent has a plan (or count /
 * rate + 150 s passed), measures until stop_file exists, prints one JSON line (the keys of
 * client_main's) and leaves.
 */

const fs = require('fs');
const path = require('path');
const { performance } = require('perf_hooks');

const USAGE = 'usage: node agents.js [--client-node] target first stride count ready_file stop_file rate';

function fail(msg) {
  process.stderr.write(`agents.js: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

function intArg(name, text, lo, hi) {
  const v = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(v) || v < lo || v > hi) {
    fail(`${name} must be an integer from ${lo} to ${hi} (got ${JSON.stringify(text)})`);
  }
  return v;
}

function parseArgs(argv) {
  const a = argv[0] === '--client-node' || argv[0] === '--client-cheap' ? argv.slice(1) : argv;
  if (a.length !== 7) fail(`7 arguments expected, got ${a.length}`);
  const [target, first, stride, count, readyFile, stopFile, rate] = a;
  if (!/^[^\s]+:\d+$/.test(target)) fail(`target must be host:port (got ${JSON.stringify(target)})`);
  const r = Number(rate);
  if (!Number.isFinite(r) || r <= 0 || r > 1e5) fail(`rate must be > 0 and at most 1e5 (got ${JSON.stringify(rate)})`);
  return {
    target, first: intArg('first', first, 0, 999999), stride: intArg('stride', stride, 1, 1000),
    count: intArg('count', count, 1, 100000), readyFile, stopFile, rate: r,
  };
}

// --encodings: print the hex of the messages as sent (Hello, FlexibilityUpdate, Telemetry,
// PlanStatus of plan "p-1" version 7 with sequence 5), for tests/unit/test_node_agents.py
const ENCODINGS = process.argv[2] === '--encodings';
const args = ENCODINGS ? null : parseArgs(process.argv.slice(2));  // before loading grpc: a bad argument costs nothing

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const METHOD = '/vpp.v1.FleetService/Connect';
const HOUSE_ID_HEADER = 'x-vpp-house-id';  // edge_agent/uplink/client.py
// edge_agent/uplink/client.py's CHANNEL_OPTIONS, as far as grpc-js has them (it has no
// grpc.http2.max_pings_without_data: it never limits pings).  Keepalive 30 s: the server
// permits pings every 20 s (aggregator/server.py), more often and it ends the stream.
// grpc.use_local_subchannel_pool: every channel its own subchannel, so its own connection.
const CHANNEL_OPTIONS = {
  'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ pick_first: { shuffleAddressList: true } }] }),
  'grpc.use_local_subchannel_pool': 1,
  'grpc.keepalive_time_ms': 30000,
  'grpc.keepalive_timeout_ms': 10000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.enable_retries': 0,
};
const BACKOFF_INITIAL_S = 0.5;  // vpp_common/backoff.py's Backoff(), the agent's DEFAULT_BACKOFF
const BACKOFF_MAX_S = 60.0;

// --- clock: epoch seconds with sub-ms resolution (Date.now() has whole ms) -----------------
// CLOCK_MONOTONIC is slewed as the wall clock is, so the two part only when the wall clock is
// stepped: re-anchor then.
let origin = performance.timeOrigin;
const epochMs = () => origin + performance.now();
setInterval(() => {
  if (Math.abs(Date.now() + 0.5 - epochMs()) > 2) origin = Date.now() + 0.5 - performance.now();
}, 10000).unref();
const monoS = () => performance.now() / 1000;

// --- encoding -------------------------------------------------------------------------------
const packageDef = protoLoader.loadSync('vpp/v1/fleet_service.proto', {
  includeDirs: [path.resolve(__dirname, '..', '..', 'proto')], keepCase: true, enums: Number, defaults: false,
});
const encodeRequest = packageDef['vpp.v1.FleetService'].Connect.requestSerialize;  // object -> Buffer

function ts(ms) {
  const s = Math.floor(ms / 1000);
  return { seconds: s, nanos: Math.floor((ms - s * 1000) * 1e6) };
}

function varint(n) {  // n < 2^53
  const out = [];
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80); }
  out.push(n);
  return Buffer.from(out);
}

function lengthDelimited(tag, body) {
  return Buffer.concat([Buffer.from([tag]), varint(body.length), body]);
}

// stream_agents.bench_hello(): an 11 kW / 4.6 kW house with a 5 kW / 10 kWh battery
const HELLO = encodeRequest({
  sequence: 1,
  hello: {
    agent_version: 'bench', limits: { max_import_w: 11000, max_export_w: 4600 },
    resources: [{ resource_id: 'battery', kind: 1 /* BATTERY */, control_type: 2 /* FRBC */, rated_power_w: 5000, capacity_wh: 10000 }],
  },
});

// stream_agents.bench_flexibility(): the battery at 50 %, 0-100 %, reserve 10 %, 10 kWh, +-5 kW
// (efficiencies 0.95, StorageFlexibility's defaults), valid from now; the payload, no sequence
function flexibilityBytes() {
  return encodeRequest({
    flexibility_update: {
      valid_from: ts(epochMs()),
      resources: [{
        resource_id: 'battery',
        frbc: {
          // zeros left out, as proto3 does in Python (protobufjs writes a 0 it is given)
          soc_pct: 50, soc_max_pct: 100, reserve_soc_pct: 10, capacity_wh: 10000,
          operation_modes: [{ id: 'charge', power_max_w: 5000 }, { id: 'idle' }, { id: 'discharge', power_min_w: -5000 }],
          charge_efficiency: 0.95, discharge_efficiency: 0.95,
        },
      }],
    },
  });
}

// stream_agents.telemetry_bytes(): a sample measured now (the payload, no sequence)
function telemetryBytes() {
  const now = ts(epochMs());
  const v = { value: 100, validity: 1 /* VALID */, measured_at: now };
  return encodeRequest({
    telemetry: {
      measured_at: now, grid_power_w: v, pv_power_w: v, battery_power_w: v,
      battery_soc_pct: { value: 50, validity: 1, measured_at: now }, load_power_w: v,
    },
  });
}

// ConnectRequest{plan_status: {plan_id, version, state: ACCEPTED, at: now}}, by hand: the id
// and the version's varint are copied as received (a uint64 may exceed a JS number)
function planStatusBytes(planId, versionVarint) {
  const at = ts(epochMs());
  const stamp = Buffer.concat([Buffer.from([0x08]), varint(at.seconds), Buffer.from([0x10]), varint(at.nanos)]);
  const status = Buffer.concat([
    lengthDelimited(0x0a, planId), Buffer.from([0x10]), versionVarint, Buffer.from([0x18, 0x01]),
    lengthDelimited(0x2a, stamp)]);
  return lengthDelimited(0x6a, status);  // field 13, length-delimited
}

// concatenated encodings merge: the sequence field, then the payload encoded once
const withSequence = (n, payload) => Buffer.concat([Buffer.from([0x08]), varint(n), payload]);

// --- decoding (ConnectResponse: only what the agents use) -------------------------------------
function readVarint(buf, pos) {  // [value as a number (exact below 2^53), next position]
  let v = 0; let mul = 1; let b;
  do {
    if (pos >= buf.length) throw new Error('truncated varint');
    b = buf[pos++];
    v += (b & 0x7f) * mul;
    mul *= 0x80;
  } while (b & 0x80);
  return [v, pos];
}

function* fields(buf, start, end) {  // [field, wire type, value start, value end]
  let pos = start;
  while (pos < end) {
    let key; [key, pos] = readVarint(buf, pos);
    const field = Math.floor(key / 8); const wt = key & 7; const from = pos;
    if (wt === 0) [, pos] = readVarint(buf, pos);
    else if (wt === 1) pos += 8;
    else if (wt === 5) pos += 4;
    else if (wt === 2) { let len; [len, pos] = readVarint(buf, pos); yield [field, wt, pos, pos + len]; pos += len; continue; }
    else throw new Error(`wire type ${wt}`);
    yield [field, wt, from, pos];
  }
}

const WELCOME = 10; const DISPATCH_PLAN = 11; const DRAIN = 13;

function payloadOf(buf) {  // [kind, start, end] of the oneof (the last one set wins)
  let out = [0, 0, 0];
  for (const [f, wt, a, b] of fields(buf, 0, buf.length)) if (f >= 10 && wt === 2) out = [f, a, b];
  return out;
}

function readPlan(buf, start, end) {  // {planId: Buffer, version: Buffer (varint), createdS}
  let planId = Buffer.alloc(0); let version = Buffer.from([0]); let createdS = 0;
  for (const [f, wt, a, b] of fields(buf, start, end)) {
    if (f === 1 && wt === 2) planId = buf.subarray(a, b);
    else if (f === 2 && wt === 0) version = buf.subarray(a, b);
    else if (f === 3 && wt === 2) {
      let s = 0; let n = 0;
      for (const [g, wt2, c] of fields(buf, a, b)) {
        if (g === 1 && wt2 === 0) [s] = readVarint(buf, c);
        else if (g === 2 && wt2 === 0) [n] = readVarint(buf, c);
      }
      createdS = s + n * 1e-9;
    }
  }
  return { planId, version, createdS };
}

// --- agents ---------------------------------------------------------------------------------
const ERRORS = {};  // status code -> streams of this process that ended with it
const REASONS = {};  // "CODE: details | ... " -> streams of this process that ended with it

function why(err, welcomed, ageS) {
  // stream_agents._why's shape; grpc-js has no core debug string: that part stays empty
  const b = Math.floor(ageS / 10) * 10;
  return `${grpc.status[err.code]}: ${err.details} |  | ${welcomed ? 'after' : 'before'} Welcome, stream age ${b}-${b + 10} s`;
}

class Agent {
  constructor(houseId, index, onPlan) {
    this.houseId = houseId; this.index = index; this.onPlan = onPlan;
    this.connected = false; this.hasPlan = false; this.streams = 0;
    this.attempt = 0; this.seq = 0; this.call = null;
  }

  send(payload) {  // a ConnectRequest's payload (the sequence is added here)
    if (this.connected) this.call.sendMessageWithContext(NO_CALLBACK, withSequence(++this.seq, payload));
  }

  run() {
    // grpc-js's channel-level call (what its Client wraps in interceptors and a Node Duplex
    // stream): Buffers in and out, one message per startRead(); about a quarter less CPU than through its Client
    this.streams += 1;
    const opened = monoS();
    const channel = new grpc.Channel(args.target, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    const call = channel.createCall(METHOD, Infinity, null, null, null);
    const md = new grpc.Metadata();
    md.set(HOUSE_ID_HEADER, this.houseId);
    let done = false;
    const end = (err) => {  // the stream's end, once: count it, close the channel, back off
      if (done) return;
      done = true;
      if (err) {
        ERRORS[grpc.status[err.code]] = (ERRORS[grpc.status[err.code]] || 0) + 1;
        const w = why(err, this.connected, monoS() - opened);
        REASONS[w] = (REASONS[w] || 0) + 1;
      }
      this.attempt = this.connected ? 0 : this.attempt + 1;  // as the agent: reset once a stream is accepted
      this.connected = false;
      this.call = null;
      call.cancelWithStatus(grpc.status.CANCELLED, 'stream ended');
      channel.close();
      const d = Math.min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** Math.min(this.attempt, 30));
      setTimeout(() => this.run(), (d / 2 + Math.random() * (d / 2)) * 1000);
    };
    call.start(md, {
      onReceiveMetadata() {},
      onReceiveMessage: (raw) => {
        if (done) return;
        const [kind, a, b] = payloadOf(raw);
        if (kind === DISPATCH_PLAN) {
          const plan = readPlan(raw, a, b);
          this.hasPlan = true;
          this.onPlan(this, epochMs() / 1000 - plan.createdS);
          this.send(planStatusBytes(plan.planId, plan.version));
        } else if (kind === WELCOME) {
          this.connected = true;
          this.send(FLEX);
        } else if (kind === DRAIN) {
          end(null);
          return;
        }
        call.startRead();
      },
      onReceiveStatus: (st) => end(st.code === grpc.status.OK ? null : st),
    });
    this.call = call;
    this.seq = 1;
    call.sendMessageWithContext(NO_CALLBACK, HELLO);
    call.startRead();
  }
}

const NO_CALLBACK = {};

// Each agent every periodS at its own phase, as agents started at different times send.  One
// sample is encoded per 20 ms tick and sent by the agents due in it (stream_agents.send_telemetry).
function sendTelemetry(agents, periodS = 5.0) {
  const tick = 0.02;
  const perTick = Math.max(1, pyRound(agents.length * tick / periodS));
  let nextAt = monoS(); let i = 0;
  const step = () => {
    const payload = telemetryBytes();
    for (const a of agents.slice(i, i + perTick)) a.send(payload);
    i += perTick;
    if (i >= agents.length) i = 0;
    nextAt += periodS * perTick / agents.length;
    setTimeout(step, Math.max(0, nextAt - monoS()) * 1000);
  };
  step();
}

function pyRound(x) {  // Python's round(): halves to even
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

const FLEX = flexibilityBytes();

if (ENCODINGS) {
  const hex = (b) => Buffer.from(b).toString('hex');
  process.stdout.write(`${JSON.stringify({
    hello: hex(HELLO), flexibility: hex(FLEX), telemetry: hex(telemetryBytes()),
    plan_status: hex(withSequence(5, planStatusBytes(Buffer.from('p-1'), varint(7)))),
  })}\n`);
  process.exit(0);
}

function main() {
  const latencies = [];
  const created = Array.from({ length: args.count }, () => []);  // created_at of each agent's plans while measuring
  let measuring = false;
  const onPlan = (agent, latencyS) => {
    if (measuring) {
      latencies.push(latencyS);
      created[agent.index].push(Math.round((epochMs() / 1000 - latencyS) * 1000) / 1000);
    }
  };
  const agents = [];
  for (let i = 0; i < args.count; i++) {
    agents.push(new Agent(`house-${String(args.first + i * args.stride).padStart(6, '0')}`, i, onPlan));
  }
  // at `rate` a second: a fleet's agents connect over time; all at once is a reconnect storm
  const t0 = monoS();
  let next = 0;
  const connect = () => {
    while (next < agents.length && monoS() - t0 >= next / args.rate) agents[next++].run();
    if (next < agents.length) setTimeout(connect, Math.max(0, t0 + next / args.rate - monoS()) * 1000);
  };
  connect();
  sendTelemetry(agents);

  const count = (key) => agents.reduce((n, a) => n + (a[key] ? 1 : 0), 0);
  const streams = () => agents.reduce((n, a) => n + a.streams, 0);
  const deadline = t0 + args.count / args.rate + 150;
  const waitReady = setInterval(() => {
    if (count('hasPlan') < args.count && monoS() < deadline) return;
    clearInterval(waitReady);
    const streamsAtReady = streams();
    fs.writeFileSync(args.readyFile, JSON.stringify({ connected: count('connected'), with_plan: count('hasPlan') }));
    measuring = true;
    const cpu0 = process.cpuUsage();
    const waitStop = setInterval(() => {
      if (!fs.existsSync(args.stopFile)) return;
      clearInterval(waitStop);
      const cpu = process.cpuUsage(cpu0);  // this process's user + system CPU, all its threads
      measuring = false;
      const line = JSON.stringify({
        latencies, connected: count('connected'), created, cpu_s: (cpu.user + cpu.system) / 1e6,
        reconnects: streamsAtReady - args.count, reconnects_measuring: streams() - streamsAtReady,
        errors: ERRORS, reasons: REASONS,
      });
      // done: leave at once, without closing thousands of streams one by one
      process.stdout.write(`${line}\n`, () => process.exit(0));
    }, 500);
  }, 200);
}

main();
