"""``green-mlops genai``: energy per request and per output token of an LLM server across request rates.

Two forms::

    green-mlops genai --endpoint URL --model NAME [--rps 1,2,5] [--warmup S] [--duration S | --requests N] ...
    green-mlops genai --from DIR --server-trace FILE [--clock-offset S]     # join a remote server's trace

Bad input (URL, prompt file, rates, lengths) is refused with exit code 2 before any request is sent.
Only the options are defined at import time; the load generator's modules load when it runs.
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from green_mlops.argtypes import (
    finite,
    fraction,
    interval,
    nonneg_int,
    nonneg_seconds,
    number,
    parse,
    positive_int,
    positive_seconds,
    seconds,
    whole,
)
from green_mlops.genai.config import (
    DEFAULT_EXPERIMENT,
    PAPER_SAMPLING,
    RATE_GRID,
    STEADY_LATENCY_FACTOR,
    STEADY_MIN_S,
    WARMUP_LATENCY_FACTOR,
    WARMUP_MIN_S,
    ConfigError,
    SweepConfig,
)
from green_mlops.outputs import add_json_option, frame_records, json_stdout, print_json

if TYPE_CHECKING:
    from green_mlops.genai.sweep import SweepResult

GRID = ",".join(f"{r:g}" for r in RATE_GRID)
#: How each sampling option is checked on the command line (top_k -1 = off, as vLLM takes it).
SAMPLING_TYPES = {"temperature": number(positive=False, example="0.7"), "top_p": fraction(open_low=True, example="0.9"),
                  "top_k": whole(-1, "40"), "min_p": fraction(example="0.05")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``genai`` subcommand's options."""
    load = parser.add_argument_group("load (a sweep)")
    load.add_argument("--endpoint", metavar="URL", help="OpenAI-compatible server: http://host:port, .../v1, or the "
                      "full .../v1/chat/completions or .../v1/completions URL")
    load.add_argument("--model", metavar="NAME", help="model name the server serves (for `transformers serve "
                      "PATH`, the PATH)")
    load.add_argument("--rps", metavar="LIST", default=GRID,
                      help=f"request rates per second, comma-separated (default {GRID}, the grid every model shares)")
    load.add_argument("--warmup", type=nonneg_seconds, default=None, metavar="S",
                      help="seconds of warm-up load per level, excluded from the measure (default: until "
                           f"max({WARMUP_MIN_S:g} s, {WARMUP_LATENCY_FACTOR:g} × median latency answered); 0: none)")
    length = load.add_mutually_exclusive_group()
    length.add_argument("--duration", type=positive_seconds, metavar="S",
                        help="seconds of steady window per level, the measure (default: max(--steady-min, "
                             f"{STEADY_LATENCY_FACTOR:g} × the warm-up's median latency))")
    length.add_argument("--requests", type=positive_int, metavar="N",
                        help="steady window of N / rate seconds (N arrivals expected) instead of a duration")
    load.add_argument("--steady-min", type=positive_seconds, default=STEADY_MIN_S, metavar="S",
                      help=f"shortest automatic steady window (default {STEADY_MIN_S:g})")
    load.add_argument("--prompts", metavar="FILE", help="JSONL prompts ({\"prompt\": ...}, {\"messages\": [...]}, "
                      "Chatbot-Arena conversations); default: the set shipped with green_mlops")
    load.add_argument("--arrival", choices=("poisson", "constant"), default="poisson",
                      help="arrival process (default poisson)")
    load.add_argument("--max-tokens", type=positive_int, default=256, metavar="N",
                      help="output tokens per request (default 256)")
    load.add_argument("--model-parameters", type=number(positive=True, example="1.2e9"), default=None, metavar="N",
                      help="the model's parameter count, for the paper's parameters/flops metrics (read from a "
                           "local model folder's safetensors when left out)")
    load.add_argument("--model-bytes", type=number(positive=True, example="2.5e9"), default=None, metavar="B",
                      help="the model's size in bytes, for model_size_to_ram (same default)")
    load.add_argument("--api", choices=("chat", "completions"), default=None, help="API to call (default chat)")
    load.add_argument("--idle-seconds", type=nonneg_seconds, default=10.0, metavar="S",
                      help="idle baseline before the first level (default 10; 0 for gross energy only)")
    load.add_argument("--cooldown", type=nonneg_seconds, default=2.0, metavar="S", help="pause between levels (default 2)")
    load.add_argument("--timeout", type=seconds(positive=True, example="120"), default=None, metavar="S", help="per-request timeout (default 120; "
                      "given, it also bounds the first probing request, which otherwise waits up to 180 s)")
    load.add_argument("--seed", type=nonneg_int, default=0, help="seed of arrivals and prompt order (default 0)")
    load.add_argument("--interval", type=interval, default=0.1, metavar="S", help="meter sampling interval (default 0.1)")
    load.add_argument("--meter", choices=("local", "none"), default="local",
                      help="local: meter this machine (the server runs here); none: the server is remote, join "
                           "its trace afterwards with --from/--server-trace")
    sampling = parser.add_argument_group("sampling (defaults: the paper's Table 4)")
    for name, value in PAPER_SAMPLING.items():
        sampling.add_argument(f"--{name.replace('_', '-')}", type=SAMPLING_TYPES[name], default=value,
                              dest=f"sampling_{name}",
                              metavar="X", help=f"default {value:g}")
    join = parser.add_argument_group("remote server: join a trace by time")
    join.add_argument("--from", dest="from_dir", metavar="DIR", help="output folder of an earlier `--meter none` sweep")
    join.add_argument("--server-trace", metavar="FILE", help="trace written on the server host by "
                      "`green-mlops measure --trace FILE -- sleep N` while the sweep ran")
    join.add_argument("--clock-offset", type=finite("-0.35"), default=0.0, metavar="S",
                      help="server clock minus client clock, seconds (default 0: clocks synced by NTP)")
    out = parser.add_argument_group("output")
    out.add_argument("--output", metavar="DIR", default=None, help="folder for tables, figures and the trace "
                     "(default genai_results; with --from, that folder)")
    out.add_argument("--experiment", default=DEFAULT_EXPERIMENT, metavar="NAME",
                     help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")
    out.add_argument("--tracking-uri", default=None, metavar="URI", help="MLflow tracking URI (default: MLflow's own)")
    out.add_argument("--no-mlflow", action="store_true", help="write files only, log nothing to MLflow")
    add_json_option(out, "the levels, the saturation finding, the files and the MLflow run")


def run(args: argparse.Namespace) -> int:
    """Run a sweep, or join a server trace to one; 2 for bad input, 130 when interrupted."""
    experiment = None if args.no_mlflow else args.experiment
    with json_stdout(args.json) as out:
        code = _run(args, experiment)
        if args.json and not isinstance(code, int):
            print_json(result_json(code), out)
    return code if isinstance(code, int) else 130 if _interrupted(code) else 0


def _run(args: argparse.Namespace, experiment: str | None) -> int | SweepResult:
    """The sweep or the join; 2 for bad input (said on stderr)."""
    from green_mlops.genai.energy import TraceError
    from green_mlops.genai.probe import EndpointError
    from green_mlops.genai.prompts import PromptError, load_prompts
    from green_mlops.genai.record import RecordError
    from green_mlops.genai.sweep import join_server_trace, run_sweep
    from green_mlops.meter import SettingsError

    try:
        if args.from_dir or args.server_trace:
            if not (args.from_dir and args.server_trace):
                raise ConfigError("joining a server trace needs both --from DIR and --server-trace FILE")
            if args.endpoint:
                raise ConfigError("--from/--server-trace join a finished sweep; leave out --endpoint")
            result = join_server_trace(args.from_dir, args.server_trace, clock_offset_s=args.clock_offset,
                                       output=args.output, experiment=experiment, tracking_uri=args.tracking_uri)
        else:
            missing = [f"--{n}" for n in ("endpoint", "model", "rps") if not getattr(args, n)]
            if missing:
                raise ConfigError(f"missing {', '.join(missing)}; e.g. green-mlops genai --endpoint "
                                  "http://127.0.0.1:8000 --model MODEL --rps 1,2,5")
            config = SweepConfig(endpoint=args.endpoint, model=args.model, rates=args.rps, duration_s=args.duration,
                                 requests=args.requests, warmup_s=args.warmup, steady_min_s=args.steady_min,
                                 arrival=args.arrival, max_tokens=args.max_tokens,
                                 api=args.api, idle_s=args.idle_seconds, cooldown_s=args.cooldown,
                                 timeout_s=120.0 if args.timeout is None else args.timeout,
                                 probe_timeout_s=args.timeout, seed=args.seed, interval_s=args.interval,
                                 sampling={k: getattr(args, f"sampling_{k}") for k in PAPER_SAMPLING},
                                 model_parameters=args.model_parameters, model_bytes=args.model_bytes)
            prompts = load_prompts(args.prompts)
            result = run_sweep(config, prompts, output=args.output or "genai_results", meter=args.meter == "local",
                               experiment=experiment, tracking_uri=args.tracking_uri)
    except (ConfigError, PromptError, RecordError, TraceError, EndpointError, SettingsError) as exc:
        print(f"green-mlops genai: {exc}", file=sys.stderr)
        return 2
    return result


def _interrupted(result: SweepResult) -> bool:
    return any(n.startswith("interrupted") for n in result.record.notes)


def result_json(result: SweepResult) -> dict[str, Any]:
    """What ``genai --json`` prints: one row per rate level, the saturation finding, the files and the MLflow run."""
    return {"model": result.record.params.get("model"), "energy_source": result.energy_description,
            "saturation": result.analysis.saturation.as_dict(), "levels": frame_records(result.analysis.levels),
            "devices": frame_records(result.analysis.devices), "notes": result.record.notes,
            "interrupted": _interrupted(result), "params": result.record.params,
            "files": [str(f) for f in result.files], "mlflow_run_id": result.run_id}


def main(argv: list[str] | None = None) -> int:
    """Run ``genai`` on its own (``python -m green_mlops.commands.genai``), before it is wired into ``green-mlops``."""
    parser = argparse.ArgumentParser(prog="green-mlops genai", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parse(parser, argv)
    return args if isinstance(args, int) else run(args)


if __name__ == "__main__":
    sys.exit(main())
