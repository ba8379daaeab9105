// BullMQ on jobchain's workloads, on a Redis of its own (started by ../run):
//   W1 drain: enqueue N of jobchain's reference no-op jobs (../reference.cjs: ~100-byte
//             payload, priorities 0–9 — BullMQ's priority 0 means none, so 1–10), with
//             addBulk, 1,000 per call; then drain them with one worker at each concurrency;
//   flows:    N/5 flows of 5 sequential no-op steps (a FlowProducer chain: each step the
//             child of the next), steps per second until every last step completed.
// Prints one JSON object per result (medians over --runs, with min and max).
import { FlowProducer, Queue, Worker } from "bullmq";
import IORedis from "ioredis";
import reference from "../reference.cjs";
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";

function parseArgs(argv) {
  const args = { jobs: 20000, runs: 3, port: 6390, concurrency: "10,50" };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const key = flag.replace(/^--/, "");
    if (flag === "--help" || flag === "-h" || !(key in args) || value === undefined) {
      console.error("bench.mjs [--jobs 20000] [--runs 3] [--concurrency 10,50] [--port 6390]");
      process.exit(flag === "--help" || flag === "-h" ? 0 : 2);
    }
    args[key] = value;
  }
  for (const key of ["jobs", "runs", "port"]) {
    args[key] = Number(args[key]);
    if (!(Number.isInteger(args[key]) && args[key] > 0)) {
      console.error(`--${key} takes a whole number above 0`);
      process.exit(2);
    }
  }
  args.concurrency = String(args.concurrency).split(",").map(Number);
  if (!args.concurrency.every((c) => Number.isInteger(c) && c > 0)) {
    console.error("--concurrency takes whole numbers above 0, comma-separated");
    process.exit(2);
  }
  return args;
}

let queueCount = 0;

// Runs `body(queueName)` and removes the queue's keys afterwards.
async function withQueue(connection, body) {
  const name = `jobchain-peer-${process.pid}-${queueCount++}`;
  try {
    return await body(name);
  } finally {
    const queue = new Queue(name, { connection });
    await queue.obliterate({ force: true });
    await queue.close();
  }
}

// Resolves when `worker` has completed `count` jobs accepted by `counts`.
function completions(worker, count, counts = () => true) {
  let done = 0;
  return new Promise((resolve, reject) => {
    worker.on("completed", (job) => {
      if (counts(job) && ++done === count) resolve();
    });
    worker.on("failed", (job, err) => reject(new Error(`job ${job?.id} failed: ${err}`)));
  });
}

async function drain(args, connection, concurrency) {
  return withQueue(connection, async (name) => {
    const queue = new Queue(name, { connection });
    const started = performance.now();
    for (let i = 0; i < args.jobs; i += 1000) {
      const batch = [];
      for (let j = i; j < Math.min(i + 1000, args.jobs); j++) {
        batch.push({
          name: "noop",
          data: reference.payload(j),
          opts: { removeOnComplete: true, priority: reference.priority(j) + 1 },
        });
      }
      await queue.addBulk(batch);
    }
    const enqueueS = (performance.now() - started) / 1000;
    const drainStarted = performance.now();
    const worker = new Worker(name, async () => {}, { connection, concurrency });
    await completions(worker, args.jobs);
    const drainS = (performance.now() - drainStarted) / 1000;
    await worker.close();
    await queue.close();
    return { enqueue: args.jobs / enqueueS, drain: args.jobs / drainS };
  });
}

const STEPS = 5;

async function flows(args, connection, concurrency) {
  return withQueue(connection, async (name) => {
    const flowsCount = Math.max(1, Math.floor(args.jobs / STEPS));
    const producer = new FlowProducer({ connection });
    const worker = new Worker(name, async () => {}, { connection, concurrency });
    const lastSteps = completions(worker, flowsCount, (job) => job.name === `step${STEPS}`);
    const started = performance.now();
    for (let f = 0; f < flowsCount; f += 100) {
      const adds = [];
      for (let g = f; g < Math.min(f + 100, flowsCount); g++) {
        // The first step is the innermost child: BullMQ runs children before parents.
        let flow = { name: "step1", queueName: name, data: { flow: g } };
        for (let s = 2; s <= STEPS; s++) {
          flow = { name: `step${s}`, queueName: name, data: { flow: g }, children: [flow] };
        }
        adds.push(producer.add(flow));
      }
      await Promise.all(adds);
    }
    await lastSteps;
    const seconds = (performance.now() - started) / 1000;
    await worker.close();
    await producer.close();
    return { steps: (flowsCount * STEPS) / seconds, flows: flowsCount / seconds };
  });
}

function summary(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median: Math.round(median), min_max: [Math.round(sorted[0]), Math.round(sorted.at(-1))] };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  // One client shared by the queues and producers; each worker makes its own duplicate.
  const connection = new IORedis({ host: "127.0.0.1", port: args.port, maxRetriesPerRequest: null });
  const version = JSON.parse(
    readFileSync(new URL("./node_modules/bullmq/package.json", import.meta.url))
  ).version;
  const rounds = new Map();
  for (let r = 1; r <= args.runs; r++) {
    for (const c of args.concurrency) {
      const d = await drain(args, connection, c);
      const f = await flows(args, connection, c);
      if (!rounds.has(c)) rounds.set(c, []);
      rounds.get(c).push({ ...d, ...f });
      console.error(`bullmq c${c}: round ${r}: drain ${Math.round(d.drain)} jobs/s`);
    }
  }
  for (const [c, results] of rounds) {
    const base = { peer: "bullmq", version, preset: `concurrency ${c}` };
    const settings = { jobs: args.jobs, runs: args.runs, concurrency: c };
    const d = summary(results.map((x) => x.drain));
    console.log(
      JSON.stringify({
        ...base,
        workload: "W1",
        settings,
        drain_jobs_per_s: d.median,
        drain_min_max: d.min_max,
        enqueue_jobs_per_s: summary(results.map((x) => x.enqueue)).median,
      })
    );
    const s = summary(results.map((x) => x.steps));
    console.log(
      JSON.stringify({
        ...base,
        workload: "flows",
        settings: { ...settings, steps: STEPS },
        steps_per_s: s.median,
        steps_min_max: s.min_max,
        flows_per_s: summary(results.map((x) => x.flows)).median,
      })
    );
  }
  await connection.quit();
}

main().catch((e) => {
  console.error(`bullmq bench failed: ${e.stack || e}`);
  process.exit(1);
});
