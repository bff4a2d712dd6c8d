# A sweep worker: `docker compose up` runs several of these against one Optuna storage.
FROM python:3.11-slim
WORKDIR /app
# the CPU build of torch (PyPI's default wheel is a multi-GB CUDA build)
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src ./src
COPY conf ./conf
COPY sweeps ./sweeps
RUN rm -f conf/sweep && ln -s ../sweeps conf/sweep && pip install --no-cache-dir -e .
ENTRYPOINT ["imbsweep"]
