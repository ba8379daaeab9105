// graphile-worker on jobchain's workloads, on the same PostgreSQL:
//   W1 drain: enqueue N of jobchain's reference no-op jobs (../reference.cjs: ~100-byte
//             payload, priorities 0–9; addJobs, 1,000 per call), then drain them, with its
//             default options and with its fastest preset (local queue, batched completion);
//   W2 latency: jobs added one at a time at a fixed rate while a worker runs (default
//             options): from addJob's return to the task's start, p50/p90/p99 in ms.
// Each run uses a schema of its own, dropped afterwards. Prints one JSON object per
// result (medians over --runs, with min and max). Run it through ../run.
"use strict";
const { run, makeWorkerUtils } = require("graphile-worker");
const { performance } = require("node:perf_hooks");
const reference = require("../reference.cjs");

function parseArgs(argv) {
  const args = {
    jobs: 20000,
    runs: 3,
    latency: 200,
    rate: 200,
    database: process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const key = flag.replace(/^--/, "");
    if (flag === "--help" || flag === "-h" || !(key in args) || value === undefined) {
      console.error(
        "bench.js [--jobs 20000] [--runs 3] [--latency 200 jobs] [--rate 200/s] [--database URL]"
      );
      process.exit(flag === "--help" || flag === "-h" ? 0 : 2);
    }
    args[key] = key === "database" ? value : Number(value);
    if (key !== "database" && !(Number.isInteger(args[key]) && args[key] > 0)) {
      console.error(`${flag} takes a whole number above 0, not \`${value}\``);
      process.exit(2);
    }
  }
  return args;
}

const PRESETS = {
  default: { concurrentJobs: 10 },
  fastest: {
    concurrentJobs: 24,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
    maxPoolSize: 12,
  },
};

let schemaCount = 0;
async function withSchema(database, body) {
  const schema = `jobchain_peer_gw_${process.pid}_${schemaCount++}`;
  const utils = await makeWorkerUtils({ connectionString: database, schema });
  try {
    await utils.migrate();
    return await body(utils, schema);
  } finally {
    await utils.withPgClient((c) => c.query(`drop schema if exists "${schema}" cascade`));
    await utils.release();
  }
}

// W1: the drain of `jobs` no-op jobs with one preset; seconds to enqueue and to drain.
async function drain(args, presetName) {
  return withSchema(args.database, async (utils, schema) => {
    const started = performance.now();
    for (let i = 0; i < args.jobs; i += 1000) {
      const specs = [];
      for (let j = i; j < Math.min(i + 1000, args.jobs); j++) {
        specs.push({
          identifier: "noop",
          payload: reference.payload(j),
          priority: reference.priority(j),
        });
      }
      await utils.addJobs(specs);
    }
    const enqueueS = (performance.now() - started) / 1000;
    let done = 0;
    let allDone;
    const finished = new Promise((resolve) => (allDone = resolve));
    const drainStarted = performance.now();
    const runner = await run({
      preset: { worker: { connectionString: args.database, schema, ...PRESETS[presetName] } },
      noHandleSignals: true,
      logger: quietLogger(),
      taskList: {
        noop: async () => {
          if (++done === args.jobs) allDone();
        },
      },
    });
    await finished;
    await runner.stop(); // writes the batched completions
    // Completed jobs are deleted: the drain ends when no job is left.
    const left = () =>
      utils
        .withPgClient((c) => c.query(`select count(*)::int as n from "${schema}"._private_jobs`))
        .then((r) => r.rows[0].n);
    const deadline = performance.now() + 30000;
    let n;
    while ((n = await left()) !== 0) {
      if (performance.now() > deadline) {
        throw new Error(`${n} of ${args.jobs} jobs were not completed 30 s after the last start`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    const drainS = (performance.now() - drainStarted) / 1000;
    return { enqueueS, drainS };
  });
}

// W2: enqueue→start latency of jobs added one at a time at `rate` per second.
async function latency(args) {
  return withSchema(args.database, async (utils, schema) => {
    const addedAt = new Map();
    const samples = [];
    let allStarted;
    const started = new Promise((resolve) => (allStarted = resolve));
    const runner = await run({
      preset: { worker: { connectionString: args.database, schema, ...PRESETS.default } },
      noHandleSignals: true,
      logger: quietLogger(),
      taskList: {
        ping: async (payload) => {
          const now = performance.now();
          // A job may start before addJob returns: wait for its timestamp.
          while (!addedAt.has(payload.seq)) await new Promise((r) => setImmediate(r));
          samples.push(Math.max(0, now - addedAt.get(payload.seq)));
          if (samples.length === args.latency) allStarted();
        },
      },
    });
    const interval = 1000 / args.rate;
    const t0 = performance.now();
    for (let seq = 0; seq < args.latency; seq++) {
      const due = t0 + seq * interval;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await utils.addJob("ping", { seq });
      addedAt.set(seq, performance.now());
    }
    await started;
    await runner.stop();
    samples.sort((a, b) => a - b);
    const q = (p) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))];
    return { p50: q(0.5), p90: q(0.9), p99: q(0.99) };
  });
}

function quietLogger() {
  const { Logger } = require("graphile-worker");
  return new Logger(() => (level, message) => {
    if (level === "error") console.error(message);
  });
}

function summary(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

const round = (x, places = 0) => Math.round(x * 10 ** places) / 10 ** places;

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const version = require("graphile-worker/package.json").version;
  const rounds = { default: [], fastest: [] };
  for (let r = 1; r <= args.runs; r++) {
    for (const preset of Object.keys(PRESETS)) {
      const { enqueueS, drainS } = await drain(args, preset);
      rounds[preset].push({ enqueue: args.jobs / enqueueS, drain: args.jobs / drainS });
      console.error(
        `graphile-worker ${preset}: round ${r}: drain ${round(args.jobs / drainS)} jobs/s`
      );
    }
  }
  for (const [preset, results] of Object.entries(rounds)) {
    const d = summary(results.map((x) => x.drain));
    const e = summary(results.map((x) => x.enqueue));
    console.log(
      JSON.stringify({
        peer: "graphile-worker",
        version,
        workload: "W1",
        preset,
        settings: { jobs: args.jobs, runs: args.runs, ...PRESETS[preset] },
        drain_jobs_per_s: round(d.median),
        drain_min_max: [round(d.min), round(d.max)],
        enqueue_jobs_per_s: round(e.median),
      })
    );
  }
  const l = await latency(args);
  console.log(
    JSON.stringify({
      peer: "graphile-worker",
      version,
      workload: "W2",
      preset: "default",
      settings: { jobs: args.latency, rate_per_s: args.rate },
      p50_ms: round(l.p50, 2),
      p90_ms: round(l.p90, 2),
      p99_ms: round(l.p99, 2),
    })
  );
}

main().catch((e) => {
  console.error(`graphile-worker bench failed: ${e.stack || e}`);
  process.exit(1);
});
