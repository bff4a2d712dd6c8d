# A sweep worker: `docker compose up` runs several of these against one Optuna storage.
FROM python:3.11-slim
WORKDIR /app
# the CPU build of torch (PyPI's default wheel is a multi-GB CUDA build)
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src ./src
# a plain install: the configs travel as package data (docs/configs.md); a sweep of your own goes
# in /app/sweeps/ or /app/conf/sweep/ (COPY or mount it), the working folder of the worker
RUN pip install --no-cache-dir . && rm -rf src build
ENTRYPOINT ["imbsweep"]
