"""The benchmark suite behind `make bench`.

It answers two questions with numbers measured in one run on one machine: which work
model should be the default (the seed's criteria: memory and CPU at rest and under
load, start-up overhead, latency of a new chunk), and how the executor's throughput
compares with a bare app doing only the unavoidable part of the work on the same stack.
Absolute numbers depend on the machine and on what else runs on it, so every target is
stated as a ratio of two measurements taken in the same run, interleaved.

Scenarios (one module each): `work_models`, `http_load`, `in_process`, `memory`.
`python -m benchmarks` runs them and writes `benchmarks/results/`.
"""
