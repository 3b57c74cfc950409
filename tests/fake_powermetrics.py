"""A stand-in for macOS's ``powermetrics -f plist`` (the hardware edge), run as a subprocess.

Usage: ``python fake_powermetrics.py INTERVAL_MS CPU_MW GPU_MW ANE_MW``. Like the real tool it writes
one plist per interval, each followed by a NUL byte, with ``elapsed_ns`` the time since the last one
and each part's energy (mJ) and power (mW) over it; the layout follows
tests/data/powermetrics_m2_macos14.plist. ``FAKE_POWERMETRICS_DENY=1`` makes it refuse as the real
one does without root.
"""
import os
import plistlib
import sys
import time

if os.environ.get("FAKE_POWERMETRICS_DENY"):
    sys.stderr.write("powermetrics must be invoked as the superuser\n")
    sys.exit(1)
interval_ms, cpu, gpu, ane = (float(a) for a in sys.argv[1:5])
last = time.monotonic()
while True:
    time.sleep(interval_ms / 1000)
    now = time.monotonic()
    s, last = now - last, now
    proc = {"cpu_energy": cpu * s, "cpu_power": cpu, "gpu_energy": gpu * s, "gpu_power": gpu,
            "ane_energy": ane * s, "ane_power": ane, "combined_power": cpu + gpu + ane}
    doc = {"is_delta": True, "elapsed_ns": int(s * 1e9), "hw_model": "Mac14,2", "processor": proc,
           "gpu": {"freq_hz": 1398e6, "idle_ratio": 0.1, "gpu_energy": gpu * s}}
    sys.stdout.buffer.write(plistlib.dumps(doc) + b"\0")
    sys.stdout.buffer.flush()
