"""Media benchmarks: WHEP fan-out CPU, HLS per stage, latency, time to first frame, memory.

``python -m tests.bench.media --help`` lists the sub-benchmarks and their flags;
``docs/benchmarks-media.md`` explains what each measures and records the figures.
"""
