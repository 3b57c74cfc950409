# Source on the GPU machine: installs the carried wheels (.whl, from ../shared/gpu/prepare_wheels.py) and
# this package without touching the machine's own torch/lightning.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ${WHL:-.whl}/*.whl \
  2>&1 | grep -v -i "warning" || true
export PYTHONPATH=/tmp/site:$PWD
export PATH=/tmp/site/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv,noheader
