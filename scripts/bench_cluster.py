"""vsrife video --cluster on this machine: a batch on 1 and 2 Ray workers, and what chunking costs.

    python scripts/bench_cluster.py [--frames 40] [--chunk-seconds 0.5] [--json bench-results/cluster.json]

A batch of two real clips (the first FRAMES frames of bikes.mp4 and of bigbuckbunny, 2x, lossless x264)
is run four ways, wall time each, after one warm-up run that fetches and loads everything:

- one piece: ``vsrife.video.interpolate_video`` file after file in this process, torch on 1 thread (what
  one CPU task runs) and on every core;
- the cluster: ``vsrife.cluster.run_batch`` on a local Ray instance with 1 and with 2 CPU workers (one
  torch thread each), chunks of CHUNK_SECONDS; Ray's start-up is timed apart and left out.

Chunking's own cost is timed directly: the driver's index pass (``index_source``, one decode of each
source) and the join (``join_chunks``, a copy of packets) against the one-piece run on 1 thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import torch

from vsrife import Interpolator
from vsrife.cluster import EngineOptions, chunk_starts, run_batch
from vsrife.video import VideoJob, index_source, interpolate_chunk, interpolate_video, join_chunks, plan_chunks
from vsrife.weights import fetch_sample

from benchlib import machine_info, write_results

JOB = VideoJob(multi=Fraction(2), codec="libx264", encoder_options={"qp": "0"}, preset="ultrafast", progress=False)


def write_clip(source: Path, dest: Path, count: int) -> None:
    with av.open(str(source)) as c, av.open(str(dest), "w") as out:
        vin = c.streams.video[0]
        v = out.add_stream("libx264", rate=vin.average_rate)
        v.width, v.height, v.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        v.options = {"qp": "0", "g": "12"}  # keyframes every 12 frames, as streaming encodes have them
        for k, frame in enumerate(c.decode(vin)):
            if k == count:
                break
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = k, 1 / vin.average_rate
            out.mux(v.encode(frame))
        out.mux(v.encode(None))


def one_piece(clips: list[Path], folder: Path, threads: int) -> float:
    torch.set_num_threads(threads)
    it = Interpolator("4.0", device="cpu")
    start = time.perf_counter()
    for clip in clips:
        interpolate_video(clip, folder / f"{clip.stem}-{threads}.mkv", it, dataclasses.replace(JOB, overwrite=True))
    return time.perf_counter() - start


def chunking_parts(clips: list[Path], folder: Path, chunk_seconds: float) -> dict:
    """The driver's share, timed apart: the index pass and the join (chunks made here, untimed)."""
    torch.set_num_threads(1)
    it = Interpolator("4.0", device="cpu")
    index_s = join_s = 0.0
    chunks = 0
    for clip in clips:
        t = time.perf_counter()
        index = index_source(clip, JOB)
        index_s += time.perf_counter() - t
        length = max(1, round(chunk_seconds * float(index.count / (index.end - index.times[0]))))
        parts = []
        for c in plan_chunks(index, chunk_starts(index.count, index.keyframes, index.cuts, length), JOB):
            path = folder / f"{clip.stem}-chunk{c.index}.mkv"
            interpolate_chunk(clip, path, it, JOB, c)
            parts.append((c, path))
        chunks += len(parts)
        t = time.perf_counter()
        join_chunks(clip, folder / f"{clip.stem}-joined.mkv", parts, dataclasses.replace(JOB, overwrite=True))
        join_s += time.perf_counter() - t
    return {"index_s": index_s, "join_s": join_s, "chunks": chunks}


def on_cluster(clips: list[Path], folder: Path, workers: int, chunk_seconds: float) -> dict:
    import ray

    t = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, object_store_memory=200 * 2**20,
             log_to_driver=False, configure_logging=False)  # fmt: skip
    startup = time.perf_counter() - t
    try:
        out = folder / f"ray{workers}"
        out.mkdir()
        job = dataclasses.replace(JOB, overwrite=True)
        warm = [(clips[0], out / "warm.mkv")]  # every worker loads torch and the network once
        run_batch(warm * workers, job, EngineOptions(model="4.0"), chunk_seconds=chunk_seconds)
        t = time.perf_counter()
        results = run_batch([(c, out / f"{c.stem}.mkv") for c in clips], job, EngineOptions(model="4.0"),
                            chunk_seconds=chunk_seconds)  # fmt: skip
        wall = time.perf_counter() - t
        assert all(r.error is None for r in results), [r.error for r in results]
        return {"startup_s": startup, "wall_s": wall, "chunks": sum(r.chunks for r in results)}
    finally:
        ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--chunk-seconds", type=float, default=0.5)
    p.add_argument("--json", type=Path, default=Path("bench-results/cluster.json"))
    args = p.parse_args()
    info = machine_info()
    cores = info["cores_available"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = []
        for name in ("bikes", "bigbuckbunny"):
            clips.append(folder / f"{name}.mp4")
            write_clip(fetch_sample(name, progress=False), clips[-1], args.frames)
        one_piece(clips[:1], folder, 1)  # warm-up: weights, caches
        one_1 = one_piece(clips, folder, 1)
        one_all = one_piece(clips, folder, cores)
        parts = chunking_parts(clips, folder, args.chunk_seconds)
        ray1 = on_cluster(clips, folder, 1, args.chunk_seconds)
        ray2 = on_cluster(clips, folder, 2, args.chunk_seconds)
    output_frames = 2 * 2 * args.frames
    driver = parts["index_s"] + parts["join_s"]
    result = {
        "machine": info,
        "frames_per_clip": args.frames,
        "output_frames": output_frames,
        "chunk_seconds": args.chunk_seconds,
        "one_piece_1_thread_s": one_1,
        f"one_piece_{cores}_threads_s": one_all,
        "index_s": parts["index_s"],
        "join_s": parts["join_s"],
        "chunks": parts["chunks"],
        "ray_1_worker": ray1,
        "ray_2_workers": ray2,
        "speedup_2_over_1_worker": ray1["wall_s"] / ray2["wall_s"],
        "chunking_overhead_vs_one_piece": driver / one_1,
        "cluster_1_worker_vs_one_piece": ray1["wall_s"] / one_1,
    }
    md = "\n".join([
        f"Machine: {info['cpu']}, {cores} cores, no GPU, torch {info['torch']}; a batch of 2 clips x "
        f"{args.frames} frames (bikes 640x272, bigbuckbunny), 2x, RIFE 4.0, lossless x264; "
        f"{parts['chunks']} chunks of {args.chunk_seconds} s.",
        "",
        "| run | wall s | output fps |",
        "|---|---:|---:|",
        f"| one piece, 1 thread | {one_1:.1f} | {output_frames / one_1:.2f} |",
        f"| one piece, {cores} threads | {one_all:.1f} | {output_frames / one_all:.2f} |",
        f"| --cluster, 1 worker | {ray1['wall_s']:.1f} | {output_frames / ray1['wall_s']:.2f} |",
        f"| --cluster, 2 workers | {ray2['wall_s']:.1f} | {output_frames / ray2['wall_s']:.2f} |",
        "",
        f"2 workers / 1 worker: {result['speedup_2_over_1_worker']:.2f}x. Index pass {parts['index_s']:.2f} s + "
        f"join {parts['join_s']:.2f} s = {100 * result['chunking_overhead_vs_one_piece']:.1f}% of the one-piece "
        f"run; 1 worker / one piece: {result['cluster_1_worker_vs_one_piece']:.2f}x. Ray start-up "
        f"{ray1['startup_s']:.1f} s (left out).",
    ])  # fmt: skip
    write_results(result, args.json, md)


if __name__ == "__main__":
    sys.exit(main())
