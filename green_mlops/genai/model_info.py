"""The served model's size, for the paper's Table 6 model metrics: parameters, flops, model_size_to_ram.

The client cannot ask an OpenAI-compatible server how big its model is. Where the model name is a
local folder of ``*.safetensors`` files (as ``transformers serve PATH`` serves), parameters and bytes
are read from the files' headers; otherwise the user states them (``--model-parameters``,
``--model-bytes``). ``flops`` is the forward pass of one token, estimated as 2 × parameters (one
multiply and one add per weight), and said to be estimated.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from green_mlops.metrics.paper import model_size_to_ram, parameters

FLOPS_METHOD = "estimated: 2 x parameters per token (forward pass)"
_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}


def local_model_size(model: str) -> tuple[int, int] | None:
    """(parameters, bytes) of the tensors in a local folder's ``*.safetensors`` files; None when there are none."""
    folder = Path(model)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    count = size = 0
    for path in files:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            n = math.prod(tensor["shape"])
            count += n
            size += n * _DTYPE_BYTES.get(tensor["dtype"], 0)
    return count, size


def accelerator_memory_bytes() -> tuple[int, str] | None:
    """Total memory of this machine's NVIDIA GPUs (NVML), else of the host (the model is then in RAM)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            total = sum(int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).total)
                        for i in range(count))
        finally:
            pynvml.nvmlShutdown()
        if count:
            return total, f"memory of {count} GPU(s)"
    except Exception:  # no driver, no GPU: fall back to the host's RAM
        pass
    import psutil

    return int(psutil.virtual_memory().total), "host RAM (no GPU)"


def model_metrics(params: float | None, model_bytes: float | None, memory_bytes: float | None) -> dict[str, float]:
    """The paper's model metrics that the inputs allow: ``parameters``, ``flops``, ``model_size_to_ram``."""
    out: dict[str, float] = {}
    p = parameters(params)
    if p is not None:
        out["parameters"] = p
        out["flops"] = 2.0 * p
    ratio = model_size_to_ram(model_bytes, memory_bytes)
    if ratio is not None:
        out["model_size_to_ram"] = ratio
    return out
