"""Opens study storages when told: ``python -m tests.storage_worker READY GO_PREFIX URL...``.

It imports everything, touches READY, then for each URL i waits for the file GO_PREFIX<i> and opens the
storage exactly as ``green-mlops sweep`` does, printing ``ok i`` or the error. Several of them released
together race on empty PostgreSQL databases (tests/test_search_workers.py).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from green_mlops.search.storage import open_storage

if __name__ == "__main__":
    ready, go, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
    Path(ready).touch()
    for i, url in enumerate(urls):
        while not Path(f"{go}{i}").exists():
            time.sleep(0.001)
        try:
            open_storage(url)
            print(f"ok {i}", flush=True)
        except Exception as exc:  # the test reads what went wrong
            print(f"error {i}: {type(exc).__name__}: {exc}", flush=True)
