// The reference no-op job of jobchain's W1 and storage limit (`reference_payload` and
// `reference_priority` in crates/jobchain-cli/src/bench/mod.rs), so that the peers write
// the same jobs: a payload of about 100 bytes and priorities spread over 0–9, both a
// function of the job's number (SplitMix64, as there).
"use strict";
const MASK = (1n << 64n) - 1n;

function mix(i) {
  let z = (BigInt(i) + 0x9e3779b97f4a7c15n) & MASK;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return z ^ (z >> 31n);
}

function payload(i) {
  return {
    action: "noop",
    meta: { attempt: 0, source: "jobchain-bench" },
    seq: i,
    tags: ["bench", "noop"],
    user_id: Number(mix(i) % 1000000n),
  };
}

function priority(i) {
  return Number((mix(i) >> 32n) % 10n);
}

module.exports = { payload, priority };
