"""Every name green_mlops writes to MLflow or disk, and reads back: the one home of the naming contract.

Writers (the metered-run core, the integrations, the sweep, ``genai``) and readers (``analysis``,
``green-mlops report``) both import from here, so they cannot drift apart. A test fails when one of these
names is spelled as a literal anywhere else in the package.

Namespaces (README, "Names green_mlops logs"):

* per-step metrics keep their short names: ``power/{device}_W``, ``power/total_W``,
  ``energy/{gpu,cpu,dram,total}_J``, ``energy/net_J``; per epoch ``energy/{loop}_epoch_J``; per stage
  ``energy/{stage}_J``, ``co2e/{stage}_g``, ``time/{stage}_s``. No user names a metric ``power/...``.
* params green_mlops logs live under ``green_mlops.`` (``green_mlops.total_params``), and end-of-run
  figures that a user might log too under ``green_mlops/`` (``green_mlops/energy_per_sample_train_J``,
  ``green_mlops/overall_efficiency``), so a LightningModule with ``total_params`` among its
  hyperparameters never collides with them.
* tags: ``green_mlops.hw.*``, ``green_mlops.method.*``, ``green_mlops.provenance.*``, ``green_mlops.sweep.*``.
"""
from __future__ import annotations

PARAM_PREFIX = "green_mlops."
METRIC_PREFIX = "green_mlops/"

# -- per step (DESIGN's contract, unchanged) -------------------------------------------------------------
POWER_PREFIX = "power/"
ENERGY_PREFIX = "energy/"
POWER_TOTAL = "power/total_W"
ENERGY_TOTAL = "energy/total_J"
ENERGY_NET = "energy/net_J"


def power(device: str) -> str:
    """``power/{device}_W``: ``gpu0``, ``cpu``, ``dram`` or ``total``."""
    return f"{POWER_PREFIX}{device}_W"


def energy(what: str) -> str:
    """``energy/{what}_J``: a domain (cumulative per step), a stage (``fit``, ``test``) or ``run_gpu``."""
    return f"{ENERGY_PREFIX}{what}_J"


def co2e(what: str) -> str:
    """``co2e/{what}_g``: emissions of a stage or an epoch."""
    return f"co2e/{what}_g"


def duration(stage: str) -> str:
    """``time/{stage}_s``: wall time of a stage."""
    return f"time/{stage}_s"


def stage_energy(stage: str, domain: str | None = None, net: bool = False) -> str:
    """A stage's end-of-run energy: ``energy/fit_J``, ``energy/fit_gpu_J``, ``energy/predict_gpu_net_J``, …"""
    return energy(stage + (f"_{domain}" if domain else "") + ("_net" if net else ""))


def idle_power(domain: str = "total") -> str:
    """``power/idle_{domain}_W``: idle power measured before a run, per device or in total."""
    return power(f"idle_{domain}")


def epoch_energy(loop: str) -> str:
    """``energy/{loop}_epoch_J`` (``train``, ``val``, ``test``, ``predict``)."""
    return energy(f"{loop}_epoch")


def epoch_co2e(loop: str) -> str:
    """``co2e/{loop}_epoch_g``."""
    return co2e(f"{loop}_epoch")


def samples(stage: str) -> str:
    """``samples/{stage}``: samples a stage processed, when logged."""
    return f"samples/{stage}"


def label(key: str) -> str:
    """``power/gpu0_W`` → ``gpu0``, ``energy/total_J`` → ``total``: the device or domain of a per-step key."""
    return key.split("/", 1)[-1].rsplit("_", 1)[0]


# -- end of run: bare names (run-table columns) and their namespaced MLflow keys ---------------------------
ENERGY_PER_SAMPLE_TRAIN = "energy_per_sample_train_J"
ENERGY_PER_SAMPLE_INFERENCE = "energy_per_sample_inference_J"
#: A param (``green_mlops.batch_sizes_tried``) of a Hugging Face run whose ``auto_find_batch_size`` retried after
#: running out of memory: the per-device batch sizes of its attempts, comma-separated, the one that finished last.
BATCH_SIZES_TRIED = "batch_sizes_tried"


def metric(name: str) -> str:
    """The MLflow key of an end-of-run figure: ``green_mlops/{name}``."""
    return METRIC_PREFIX + name


def param(name: str) -> str:
    """The MLflow key of a param green_mlops logs: ``green_mlops.{name}``."""
    return PARAM_PREFIX + name


def bare(key: str) -> str:
    """A logged key without green_mlops' namespace (``green_mlops/x`` and ``green_mlops.x`` → ``x``)."""
    for prefix in (METRIC_PREFIX, PARAM_PREFIX):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


# -- the sweep's figures per trial -------------------------------------------------------------------------
TRAINING_J = energy("training")
INFERENCE_J = energy("inference")
INFERENCE_J_PER_SAMPLE = "energy/inference_J_per_sample"
LIFECYCLE_J = energy("lifecycle")
PREDICTED_TRAINING_J = energy("predicted_training")
# the search's cost proxy for an untrained architecture (metrics.model_stats.activation_elements)
ACTIVATION_ELEMENTS = "activation_elements"

# -- GenAI (``green-mlops genai``): a rate level's figures, as levels.csv columns and its MLflow run's metrics ---
RATE = "rate_rps"  # the level's offered request rate: a param and a metric of the level's run
SATURATION_RATE = "saturation_rps"  # on the sweep's parent run: the highest sustained rate before saturation
ENERGY_PER_REQUEST = "energy_per_request_J"  # over requests served in the steady window
ENERGY_PER_OK_REQUEST = "energy_per_ok_request_J"
ENERGY_PER_COMPLETED_REQUEST = "energy_per_completed_request_J"
ENERGY_PER_OUTPUT_TOKEN = "energy_per_output_token_J"
ENERGY_PER_SECOND = "energy_per_s_W"  # the window's mean power
SERVER_ENERGY_PER_REQUEST = "server_energy_per_request_J"  # the load generator's CPU share taken off


def device_energy_per_request(domain: str) -> str:
    """``{domain}_energy_per_request_J``: one domain's (gpu, cpu, dram) energy per served request."""
    return f"{domain}_energy_per_request_J"


#: Level metrics also logged under the paper's Table 6 names (:data:`green_mlops.metrics.genai.GENAI_METRICS`).
GENAI_PAPER_NAMES = {ENERGY_PER_REQUEST: "energy_per_sample", ENERGY_PER_OUTPUT_TOKEN: "energy_per_output_token",
                     RATE: "request_rate", "cache_hit_rate": "cache_hit_rate",
                     "average_output_token_length": "average_output_token_length"}
GENAI_ARTIFACT_DIR = "genai"  # a GenAI sweep's tables and figures in its parent run

# -- tags --------------------------------------------------------------------------------------------------
TAG_PREFIX = "green_mlops."
HW_TAG_PREFIX = "green_mlops.hw."
METHOD_TAG_PREFIX = "green_mlops.method."
PROVENANCE_TAG_PREFIX = "green_mlops.provenance."
GENAI_TAG_PREFIX = "green_mlops.genai."
SWEEP_ROLE = "green_mlops.sweep.role"  # "parent" (one per study) or "trial"
SWEEP_STUDY = "green_mlops.sweep.study"
SWEEP_TRIAL = "green_mlops.sweep.trial"
SWEEP_FEASIBLE = "green_mlops.sweep.feasible"
SWEEP_ERROR = "green_mlops.sweep.error"
SWEEP_PRUNED = "green_mlops.sweep.pruned"  # why the energy-aware pruner stopped a trial
SWEEP_PROJECT_RUN = "green_mlops.sweep.project_run"  # on the parent: the `mlflow run` run that started the sweep
SWEEP_EXPERIMENT = "green_mlops.sweep.experiment"  # on that project run: where the sweep's runs are
SWEEP_PARENT_RUN = "green_mlops.sweep.parent_run"
ANALYSIS_ROLE = "green_mlops.analysis.role"  # "report" on the runs that hold a report


def hw_tag(name: str) -> str:
    """``green_mlops.hw.{name}`` (cpu_model, ram_gb, gpu_names, ...)."""
    return HW_TAG_PREFIX + name


def genai_tag(name: str) -> str:
    """``green_mlops.genai.{name}``: how a GenAI sweep's or level's figures were obtained."""
    return GENAI_TAG_PREFIX + name


def method_tag(domain: str) -> str:
    """``green_mlops.method.{domain}``: how a domain's energy was obtained."""
    return METHOD_TAG_PREFIX + domain


def provenance_tag(domain: str) -> str:
    """``green_mlops.provenance.{domain}``: measured or estimated."""
    return PROVENANCE_TAG_PREFIX + domain


# -- artifacts ---------------------------------------------------------------------------------------------
ARTIFACT_DIR = "green_mlops"  # in the MLflow run, and the folder for loggers without artifacts


def summary_file(stage: str) -> str:
    """``{stage}_summary.json``: energy per device, duration, provenance and the end-of-run figures."""
    return f"{stage}_summary.json"


def trace_file(stage: str) -> str:
    """``{stage}_trace.parquet``: the power trace."""
    return f"{stage}_trace.parquet"


def plot_file(stage: str) -> str:
    """``{stage}_energy.png``: power and cumulative energy by step."""
    return f"{stage}_energy.png"
