"""The paper's derived metrics for discriminative models (Sánchez-Mompó et al. 2025, §6.1.3, Table 3).

One definition each, shared by the Lightning callback and the analysis. The paper defines them in
words only; each docstring quotes those words and says how we read them where they leave room.

Every function returns a float, or None when an input is missing, not a finite number, outside its
domain (a negative count, a utilisation above 1) or a denominator is zero: never a silent 0 or NaN.

Units and conventions used throughout:

* ``macs`` are for ONE sample (as :func:`green_mlops.metrics.model_stats.model_stats` counts them).
* ``samples`` is the number of samples processed in the window whose energy and time are given.
* Power is the mean power over that window, in W (energy in J over duration in s).
* ``accuracy`` and ``utilisation`` are fractions in [0, 1] (divide a percentage by 100).
* "parameters" means trainable parameters, as the paper's own ``parameters`` metric does.
"""
from __future__ import annotations

from green_mlops.metrics.numbers import finite, nonneg, number, positive, ratio

__all__ = [
    "PAPER_METRICS",
    "derived_metrics",
    "energy_per_sample",
    "energy_scaling_factor",
    "gpu_energy_scaling_factor",
    "macs_param",
    "model_size_to_ram",
    "overall_efficiency",
    "parameters",
    "work_done",
    "work_per_unit_power",
]

#: Table 3's metric names, in the paper's order of definition.
PAPER_METRICS: tuple[str, ...] = (
    "macs_param", "work_done", "overall_efficiency", "energy_per_sample", "parameters",
    "work_per_unit_power", "energy_scaling_factor", "gpu_energy_scaling_factor", "model_size_to_ram",
)


def _fraction(v: object, *, zero_ok: bool) -> float | None:
    f = number(v)
    if f is None or f > 1 or f < 0 or (f == 0 and not zero_ok):
        return None
    return f


def energy_per_sample(energy_J: float | None, samples: float | None) -> float | None:
    """Joules per sample: ``energy_J / samples``.

    Paper: "energy_per_sample: Represents the total average energy consumption for one sample of
    inference." Table 3 is computed over inference; the same ratio serves training (energy of the
    training window over the samples it processed). ``energy_J`` may be gross or net of idle (Eq. 4/5);
    net energy can be slightly negative on a near-idle run and is passed through as measured.
    """
    return ratio(energy_J, samples)


def macs_param(macs: float | None, trainable_params: float | None) -> float | None:
    """MACs of one sample per trainable parameter: ``macs / trainable_params``.

    Paper: "macs_param: Calculated as the ratio of MACs to trainable parameters – evaluates the
    computational efficiency of the model architecture". MACs are per sample (the paper computes them
    once, "when the model is loaded onto the GPU"), so the unit is multiply-accumulates per parameter
    per sample: how many times each weight is used in one forward pass (≈1 for an MLP, ≫1 for a CNN).
    """
    return ratio(macs, trainable_params, negative_ok=False)


def work_done(trainable_params: float | None, samples: float | None, duration_s: float | None) -> float | None:
    """Parameter-samples per second: ``trainable_params × samples / duration_s``.

    Paper: "work_done: Defined as the trainable parameters processed per second – assesses
    computational throughput and resource utilisation". The paper gives no formula. Read literally,
    parameters per second would be ``trainable_params / duration_s``, but then a run twice as long over
    twice the samples would score half the "throughput". We read "processed" as each sample passing
    through every trainable parameter, so the unit is parameter-samples per second — a throughput
    (samples/s) weighted by model size, which is what "computational throughput" asks for.
    """
    p, n, t = positive(trainable_params), positive(samples), positive(duration_s)
    return None if p is None or n is None or t is None else finite(p * n / t)


def overall_efficiency(accuracy: float | None, work: float | None, utilisation: float | None) -> float | None:
    """``accuracy × work_done / utilisation``, in parameter-samples per second per unit of utilisation.

    Paper: "overall_efficiency: The ratio of the accuracy multiplied by the work_done over the
    system's utilisation" (§7: "the ratio of accuracy, throughput, and system utilisation").
    ``accuracy`` and ``utilisation`` are fractions in [0, 1]; utilisation is the mean utilisation of
    the devices doing the work over the same window (the GPUs' where there are any, else the CPUs').
    A utilisation of 0 or above 1 (a percentage passed by mistake) gives None, not a number 100× off.
    """
    a, w, u = _fraction(accuracy, zero_ok=True), nonneg(work), _fraction(utilisation, zero_ok=False)
    return None if a is None or w is None or u is None else finite(a * w / u)


def work_per_unit_power(work: float | None, power_W: float | None) -> float | None:
    """``work_done / power_W``: parameter-samples per second per watt, i.e. parameter-samples per joule.

    Paper: "work_per_unit_power: Calculated as work_done divided by the observed power for a given
    batch of samples, quantifying energy efficiency". The observed power is the mean total power
    (CPU + GPU + DRAM, Eq. 3) over the window work_done was measured on; since work_done is per second,
    this equals ``trainable_params × samples / energy_J`` over that window.
    """
    return ratio(work, power_W, negative_ok=False)


def energy_scaling_factor(total_power_W: float | None, trainable_params: float | None) -> float | None:
    """Mean total power per trainable parameter: ``total_power_W / trainable_params``, in W per parameter.

    Paper: "energy_scaling_factor: The ratio of the total power (CPU, GPU and RAM) to model
    parameters". Despite "energy" in its name the paper defines it with power, and explains it as
    showing that "the absolute power consumption and, to that extent, the total energy consumed does
    not scale with the number of parameters"; we follow the definition (power, W). "Model parameters"
    is read as the paper's ``parameters`` metric, the trainable ones.
    """
    return ratio(total_power_W, trainable_params, negative_ok=False)


def gpu_energy_scaling_factor(gpu_power_W: float | None, trainable_params: float | None) -> float | None:
    """Mean GPU power (all GPUs summed) per trainable parameter: ``gpu_power_W / trainable_params``.

    Paper: "gpu_energy_scaling_factor: Similar to energy_scaling_factor but focused on just the GPU's
    absolute power consumption, – both show how energy consumption scales with model complexity".
    Same reading as :func:`energy_scaling_factor`: W per trainable parameter.
    """
    return ratio(gpu_power_W, trainable_params, negative_ok=False)


def parameters(trainable_params: float | None) -> float | None:
    """The number of trainable parameters, as a float.

    Paper: "parameters: The total trainable parameters, a key indicator of model complexity and
    context for other metrics". Zero is a real count here (a fully frozen model), so it is returned.
    """
    return nonneg(trainable_params)


def model_size_to_ram(model_size_bytes: float | None, ram_bytes: float | None) -> float | None:
    """Model bytes (parameters + buffers) over the total memory of the device holding it (unitless).

    Paper: "model_size_to_ram: Compares model size to memory usage, aiding in optimising memory
    efficiency for resource-limited systems". "Memory usage" leaves the denominator open; the paper's
    discussion reads it as "the model size compared to the total VRAM available" and its GenAI
    definition as "the on-GPU size of the model to the total VRAM available", so ``ram_bytes`` is the
    total memory available to the model: the GPU's VRAM when it runs on a GPU, else the host's RAM.
    """
    return ratio(model_size_bytes, ram_bytes, negative_ok=False)


def derived_metrics(*, energy_J: float | None = None, samples: float | None = None,
                    duration_s: float | None = None, accuracy: float | None = None,
                    macs: float | None = None, trainable_params: float | None = None,
                    total_params: float | None = None, model_size_bytes: float | None = None,
                    gpu_energy_J: float | None = None, utilisation: float | None = None,
                    ram_bytes: float | None = None, power_W: float | None = None,
                    gpu_power_W: float | None = None) -> dict[str, float]:
    """Every metric of Table 3 that the given inputs allow, keyed by the paper's names.

    Inputs describe one window (a training run or an inference pass): ``energy_J`` (total, CPU + GPU +
    DRAM) and ``gpu_energy_J`` over ``duration_s`` seconds in which ``samples`` samples were processed;
    ``macs`` per sample; ``accuracy`` and ``utilisation`` as fractions; ``ram_bytes`` the total memory of
    the device holding the model. ``power_W`` / ``gpu_power_W`` override the mean powers otherwise
    derived as energy over duration (pass them to use gross, "observed" power when ``energy_J`` is net of
    idle). ``total_params`` is accepted so a caller can pass all model characteristics, but Table 3
    uses trainable parameters only. Metrics whose inputs are missing or invalid are left out.
    """
    _ = total_params  # accepted, unused: the paper's "parameters" are the trainable ones
    power = number(power_W) if power_W is not None else ratio(energy_J, duration_s)
    gpu_power = number(gpu_power_W) if gpu_power_W is not None else ratio(gpu_energy_J, duration_s)
    work = work_done(trainable_params, samples, duration_s)
    values = {
        "energy_per_sample": energy_per_sample(energy_J, samples),
        "macs_param": macs_param(macs, trainable_params),
        "work_done": work,
        "overall_efficiency": overall_efficiency(accuracy, work, utilisation),
        "work_per_unit_power": work_per_unit_power(work, power),
        "energy_scaling_factor": energy_scaling_factor(power, trainable_params),
        "gpu_energy_scaling_factor": gpu_energy_scaling_factor(gpu_power, trainable_params),
        "parameters": parameters(trainable_params),
        "model_size_to_ram": model_size_to_ram(model_size_bytes, ram_bytes),
    }
    return {k: v for k, v in values.items() if v is not None}
