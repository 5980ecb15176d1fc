// W1 on Graphile Worker (npm `graphile-worker`), for the side-by-side with
// sluice's PostgreSQL backend (docs/benchmarks.md, "W1 on PostgreSQL").
//
// The same workload as runtime/benches/w1.rs on the same database: 128 B JSON
// payloads, a task that parses them (Graphile hands tasks parsed JSON) and
// hashes the email with 32-bit FNV-1a. Phases:
//   (a) enqueue: N/10 one per call from 1 client, N one per call from 16
//       concurrent clients, N in batches of 500 (`addJobs`) from 4 clients,
//       each to a task no worker runs (as sluice's paused handlers);
//   (b) drain with 1, 2, 3 worker processes: N jobs inserted in one
//       transaction while the workers wait, timed from its COMMIT until no
//       such job is left (Graphile deletes a job once it completed);
//   (c) latency at RATE/s for SECONDS s with one worker process, from the
//       job's `created_at` (the database's clock at its insert, ms) until the
//       worker's `job:complete` event ("the result has been written back to
//       the database"), as sluice's is from its enqueue transaction's time.
// Prints one `SYSTEM=graphile-worker ...` line per drain and a summary.
//
// Run: scripts/bench-graphile.sh postgres://user@host:port/db (installs the
// package under target/). Environment: W1_N (20000), W1_CONCURRENCY (64 jobs
// at once per worker process), W1_RATE (500), W1_SECONDS (10), GW_RUNNERS
// ("1,2,3"), GW_BATCHED (1: the batching of Graphile's performance guide,
// `localQueue.size` 500 and completions batched with delay 0; 0: defaults).
"use strict";

const path = require("path");
const { fork } = require("child_process");
const { performance } = require("perf_hooks");

const modules = process.env.GW_MODULES;
if (!modules) throw new Error("GW_MODULES must name the node_modules holding graphile-worker");
const { run, makeWorkerUtils } = require(path.join(modules, "graphile-worker"));
const { Pool } = require(path.join(modules, "pg"));

const num = (name, d) => (process.env[name] ? Number(process.env[name]) : d);
const N = num("W1_N", 20000);
const CONCURRENCY = num("W1_CONCURRENCY", 64);
const RATE = num("W1_RATE", 500);
const SECONDS = num("W1_SECONDS", 10);
const BATCHED = num("GW_BATCHED", 1) === 1;
const RUNNERS = (process.env.GW_RUNNERS || "1,2,3").split(",").map(Number);
const now = () => performance.timeOrigin + performance.now();

function payload(i) {
  let p = `{"user_id":${i},"email":"user${i}@example.com","seq":${i},"pad":"`;
  while (p.length < 126) p += "x";
  return JSON.parse(p + '"}');
}

// The w1 handler's work: FNV-1a of the email.
function w1(p) {
  let h = 0x811c9dc5;
  for (let i = 0; i < p.email.length; i++) {
    h ^= p.email.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  if (h === 0xffffffff) throw new Error("unlikely");
}

function preset(url, schema) {
  const worker = {
    connectionString: url,
    schema,
    concurrentJobs: CONCURRENCY,
    maxPoolSize: CONCURRENCY + 2,
    pollInterval: 1000,
  };
  if (BATCHED) {
    worker.localQueue = { size: 500 };
    worker.completeJobBatchDelay = 0;
    worker.failJobBatchDelay = 0;
  }
  return { worker };
}

// A worker process: runs w1 and w1_latency, reports latencies on request.
async function workerMain(url, schema) {
  const latencies = [];
  const runner = await run({
    preset: preset(url, schema),
    noHandleSignals: true,
    taskList: { w1: async (p) => w1(p), w1_latency: async (p) => w1(p) },
  });
  runner.events.on("job:complete", ({ job, error }) => {
    if (job.task_identifier === "w1_latency" && !error)
      latencies.push(now() - new Date(job.created_at).getTime());
  });
  process.on("message", async (m) => {
    if (m === "latencies") process.send({ latencies });
    if (m === "stop") {
      await runner.stop();
      process.exit(0);
    }
  });
  process.send("ready");
}

function startWorkers(n, url, schema) {
  return Promise.all(
    Array.from({ length: n }, () => {
      const child = fork(__filename, ["--worker", url, schema], {
        env: process.env,
        stdio: ["ignore", "ignore", "inherit", "ipc"],
      });
      return new Promise((resolve, reject) => {
        child.once("message", (m) => (m === "ready" ? resolve(child) : reject(m)));
        child.once("exit", (c) => reject(new Error(`worker exited ${c}`)));
      });
    }),
  );
}

function ask(child, what) {
  return new Promise((resolve) => {
    child.once("message", resolve);
    child.send(what);
  });
}

async function stopWorkers(children) {
  await Promise.all(
    children.map(
      (c) =>
        new Promise((resolve) => {
          c.removeAllListeners("exit");
          c.once("exit", resolve);
          c.send("stop");
        }),
    ),
  );
}

async function pool(n, total, f) {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      for (let i = next++; i < total; i = next++) await f(i);
    }),
  );
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function main(url) {
  const schema = `graphile_w1_${process.pid}`;
  const pgPool = new Pool({ connectionString: url, max: 20 });
  const utils = await makeWorkerUtils({ pgPool, schema });
  await utils.migrate();
  const q = (sql, args) => pgPool.query(sql.replaceAll("$S", `"${schema}"`), args);
  const lines = [];
  try {
    const log = (s) => process.env.GW_DEBUG && console.error(`${(now() / 1000).toFixed(3)} ${s}`);
    log("enqueue");
    // (a) enqueue.
    let t = now();
    await pool(1, N / 10, (i) => utils.addJob("w1_single", payload(i)));
    const sequential = N / 10 / ((now() - t) / 1000);
    t = now();
    await pool(16, N, (i) => utils.addJob("w1_single", payload(i)));
    const single16 = N / ((now() - t) / 1000);
    const batches = [];
    for (let from = 0; from < N; from += 500) {
      const specs = [];
      for (let i = from; i < Math.min(from + 500, N); i++)
        specs.push({ identifier: "w1_batch", payload: payload(i) });
      batches.push(specs);
    }
    t = now();
    await pool(4, batches.length, (i) => utils.addJobs(batches[i]));
    const batch = N / ((now() - t) / 1000);
    log("drain");
    // (b) drain with 1, 2, 3 worker processes.
    const drains = {};
    const all = JSON.stringify(Array.from({ length: N }, (_, i) => payload(i)));
    for (const r of RUNNERS) {
      const client = await pgPool.connect();
      await client.query("BEGIN");
      await client
        .query(
        `SELECT $S.add_job('w1', p::json) FROM jsonb_array_elements($1::jsonb) p`.replaceAll(
          "$S",
          `"${schema}"`,
        ),
          [all],
        )
        .catch((e) => {
          client.release(e);
          throw e;
        });
      log(`starting ${r} workers`);
      const children = await startWorkers(r, url, schema);
      log("started");
      await client.query("COMMIT");
      t = now();
      client.release();
      for (;;) {
        const { rows } = await q(
          `SELECT EXISTS (SELECT 1 FROM $S._private_jobs j JOIN $S._private_tasks k
             ON k.id = j.task_id WHERE k.identifier = 'w1') AS left`,
        );
        if (!rows[0].left) break;
        await new Promise((res) => setTimeout(res, 2));
      }
      drains[r] = N / ((now() - t) / 1000);
      await stopWorkers(children);
    }
    log("latency");
    // (c) latency with one worker process.
    const [child] = await startWorkers(1, url, schema);
    const total = RATE * SECONDS;
    const start = now();
    const sent = [];
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / RATE;
      const wait = due - now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      sent.push(utils.addJob("w1_latency", payload(i)));
    }
    await Promise.all(sent);
    let lat = [];
    for (let tries = 0; tries < 3000; tries++) {
      lat = (await ask(child, "latencies")).latencies;
      if (lat.length >= total) break;
      await new Promise((res) => setTimeout(res, 10));
    }
    await stopWorkers([child]);
    lat.sort((a, b) => a - b);
    const p50 = quantile(lat, 0.5);
    const p99 = quantile(lat, 0.99);
    const settings = `n=${N} concurrency=${CONCURRENCY} batched=${BATCHED} localQueue=${BATCHED ? 500 : "off"} completeJobBatchDelay=${BATCHED ? 0 : "off"} batch=500 clients=16 rate=${RATE}/s for ${SECONDS}s node=${process.version}`;
    for (const r of RUNNERS)
      lines.push(
        `SYSTEM=graphile-worker runners=${r} enqueue_single_jps=${single16.toFixed(0)} enqueue_batch_jps=${batch.toFixed(0)} drain_jps=${drains[r].toFixed(0)} p50_ms=${p50.toFixed(2)} p99_ms=${p99.toFixed(2)} settings="${settings}"`,
      );
    console.log(lines.join("\n"));
    console.log(
      `\nW1 on Graphile Worker: ${N} jobs of ~128 B.\n` +
        `enqueue, 1 client, 1 per call:   ${sequential.toFixed(0)} jobs/s\n` +
        `enqueue, 16 clients, 1 per call: ${single16.toFixed(0)} jobs/s\n` +
        `enqueue, batches of 500:         ${batch.toFixed(0)} jobs/s\n` +
        RUNNERS.map((r) => `drain, ${r} worker process(es):   ${drains[r].toFixed(0)} jobs/s\n`).join("") +
        `latency at ${RATE}/s (1 process): p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms (${lat.length} of ${total} seen)`,
    );
  } finally {
    await utils.release();
    await pgPool.query(`DROP SCHEMA "${schema}" CASCADE`);
    await pgPool.end();
  }
}

if (process.argv[2] === "--worker") {
  workerMain(process.argv[3], process.argv[4]).catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  if (!process.argv[2]) {
    console.error("usage: graphile-w1.cjs postgres://user@host:port/db");
    process.exit(2);
  }
  main(process.argv[2]).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
