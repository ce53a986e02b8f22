"""The benchmarks behind `patrol bench`: throughput against the alternatives, where the time goes,
cameras per box, motion gating and batching, and the GPU run. Each writes JSON and a PNG plot."""
