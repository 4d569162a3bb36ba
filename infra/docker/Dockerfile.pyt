# TAO pyt image (train, evaluate, export, quantize, inference) plus tao-flows.
#   docker build -f infra/docker/Dockerfile.pyt -t REGISTRY/tao-flows:6.0.0-pyt .       (from the repo root)
# Use it as the tao-a100 pool image, the kubernetes/docker launcher's `pyt` image, and the controller image.
#
# tao-flows and Prefect live in their own virtualenv (/opt/tao-flows/.venv) so pip never upgrades a package
# TAO's interpreter imports. The venv sees TAO's site-packages (--system-site-packages) and comes first on PATH,
# so `python -m taoflow.launchers.local` and `prefect` work; TAO's own entry points (`rtdetr`, `centerpose`, ...)
# keep their absolute interpreter lines and run on TAO's Python.
ARG TAO_IMAGE=nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt
FROM ${TAO_IMAGE}

ENV TAOFLOW_HOME=/workspace/taoflow \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/tao-flows
RUN python3 -m venv --system-site-packages /opt/tao-flows/.venv
COPY pyproject.toml README.md ./
COPY taoflow ./taoflow
COPY tasks ./tasks
COPY flows ./flows
COPY skills ./skills
COPY prefect.yaml ./
RUN /opt/tao-flows/.venv/bin/pip install "/opt/tao-flows[kubernetes]" \
    && /opt/tao-flows/.venv/bin/python -c "import taoflow.launchers.local, flows.action"
ENV PATH=/opt/tao-flows/.venv/bin:${PATH} \
    TAOFLOW_SKILLS_DIR=/opt/tao-flows/skills

# Results and scratch are written as whatever UID the pod or `docker run --user` chooses.
RUN mkdir -p /workspace/taoflow && chmod 1777 /workspace/taoflow
