"""``green-mlops hardware``: what this machine can measure, per component, and how."""
from __future__ import annotations

import argparse
import textwrap

from green_mlops.meter import Settings, discover, machine_facts, memory_total_bytes
from green_mlops.outputs import add_json_option, print_json


def add_arguments(h: argparse.ArgumentParser) -> None:
    """Options of ``green-mlops hardware``."""
    add_json_option(h, "the machine, the findings and the power sources")


def _wrap_table(rows: list[list[str]], head: list[str], last_width: int = 70) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    indent = sum(widths) + 2 * len(widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head[:-1], widths)) + "  " + head[-1]]
    out.append("-" * (indent + min(last_width, max(len(r[-1]) for r in [head, *rows]))))
    for r in rows:
        lines = textwrap.wrap(r[-1], last_width) or [""]
        out.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + lines[0])
        out.extend(" " * indent + line for line in lines[1:])
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """Say, per component, whether it is measured or estimated here, how, and why."""
    found = discover(Settings.from_env())
    facts = machine_facts()
    if args.json:
        print_json({"machine": facts, "findings": [f.as_dict() for f in found.findings],
                    "sources": [s.info.as_dict() for s in found.sources]})
        return 0
    vm = "yes" if facts["virtual_machine"] == "true" else "no"
    gpus = facts.get("gpu_names", "none")
    ram_gib = memory_total_bytes() / 2**30  # GiB, as the DRAM model counts it: one unit in this output
    print(f"machine: {facts['cpu_model']}, {facts['cpu_count']} usable CPUs, {ram_gib:.1f} GiB RAM, "
          f"virtual machine: {vm}, GPUs: {facts['gpu_count']} ({gpus})"
          + (f", driver {facts['gpu_driver']}" if "gpu_driver" in facts else ""))
    print()
    rows = [[f.component, f.status, f.method, f.reason] for f in found.findings]
    print(_wrap_table(rows, ["component", "status", "method", "how / why"]))
    estimated = sorted({s.info.domain for s in found.sources if s.info.provenance == "estimated"})
    if estimated:
        print(f"\n{', '.join(estimated).upper()} energy here is estimated by a model, not measured; "
              "results say so in their provenance.")
    return 0
