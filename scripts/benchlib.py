"""What the benchmark scripts share: a description of the machine, and writing their results."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from vsrife.engine import default_dtype


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info(devices: list[torch.device] | None = None) -> dict:
    """CPU, cores, RAM, GPUs, versions, date and command line, for a results file."""
    mem = _proc_field("/proc/meminfo", "MemTotal")
    try:
        import vapoursynth as vs

        vs_version = str(vs.core.core_version)
    except Exception:  # noqa: BLE001 - absent or broken core: recorded as None
        vs_version = None
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(int(mem.split()[0]) / 2**20, 1) if mem else None,
        "cpu_native_bf16": default_dtype(torch.device("cpu")) == torch.bfloat16,
        "cpu_flags": sorted(f for f in (_proc_field("/proc/cpuinfo", "flags") or "").split()
                            if f.startswith(("avx", "amx")) or f == "fma"),  # fmt: skip
        # a run that limits the instruction sets (as a CPU without bf16 would have) says so
        "isa_limits": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ},
        "gpus": [torch.cuda.get_device_name(d) for d in (devices or []) if d.type == "cuda"],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "vapoursynth": vs_version,
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
    }


def cpu_kind(machine: dict) -> str:
    """Which kind of CPU a result is from, in words: native bf16 or not, and the instruction-set limit a
    run set on a CPU that has more (so an emulated AVX2 figure never reads as a real AVX2 CPU's)."""
    kind = "CPU with native bf16" if machine.get("cpu_native_bf16") else "CPU without native bf16 (AVX2)"
    limits = machine.get("isa_limits") or {}
    if limits:
        has = "native bf16" if "avx512_bf16" in (machine.get("cpu_flags") or []) else "more"
        kind += f", as {' '.join(f'{k}={v}' for k, v in sorted(limits.items()))} makes a CPU with {has}"
    return kind


def write_results(result: dict, json_path: Path, markdown: str, markdown_path: Path | None = None) -> None:
    """The JSON to ``json_path``; the Markdown to ``markdown_path``, or to stdout. Notes go to stderr."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {json_path}", file=sys.stderr)
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(markdown)
        print(f"wrote {markdown_path}", file=sys.stderr)
    else:
        sys.stdout.write(markdown)


def flops_per_frame(model: str, width: int = 1280, height: int = 720) -> dict:
    """Floating-point operations of one interpolated frame of ``model`` at ``width`` x ``height``, counted
    by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of its network (random weights:
    the count does not depend on them) with frames padded as the engine pads them; 2 per multiply-add, as
    torch counts, for convolutions, transposed convolutions and matrix products (warps, resizes and
    activations are not counted). RIFE 4.0/4.1 run their data-dependent coarser re-run of large motion only
    on some pairs; it is left out (the training forward, ``trace``, is the same pass without it)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vsrife.catalogue import get_release
    from vsrife.networks import build_network

    release = get_release(model)
    net = build_network(release)
    multiple = release.padding_multiple(1.0)
    padded = (-(-height // multiple) * multiple, -(-width // multiple) * multiple)
    gen = torch.Generator().manual_seed(0)
    img0, img1 = (torch.rand(1, 3, *padded, generator=gen) for _ in range(2))
    t = torch.full((1, 1, 1, 1), 0.5)
    run = net.trace if hasattr(net, "trace") else net
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        run(img0, img1, t)
    return {"model": model, "family": release.family, "width": width, "height": height,
            "padded": [padded[1], padded[0]], "gflops": counter.get_total_flops() / 1e9,
            "params_m": sum(p.numel() for p in net.parameters()) / 1e6}  # fmt: skip
