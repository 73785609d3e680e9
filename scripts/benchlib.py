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
        "gpus": [torch.cuda.get_device_name(d) for d in (devices or []) if d.type == "cuda"],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "vapoursynth": vs_version,
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
    }


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
