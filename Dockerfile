# syntax=docker/dockerfile:1
# The splitee image every role runs (deploy/helm/splitee): entry point `splitee`, non-root.
#   docker build -t splitee:0.1.0 .                                  # CPU (edge, cameras, ...)
#   docker build --build-arg VARIANT=cuda -t splitee:0.1.0-cuda .    # CUDA (cloud workers)
# The CPU variant installs PyTorch's CPU-only wheels; the CUDA variant PyPI's default wheels,
# which bring the CUDA runtime libraries along (the node needs NVIDIA's driver and device
# plugin, nothing else). The repo is installed in place (editable): the settings find the
# shipped checkpoint and frames under <repo>/assets.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN case "$VARIANT" in cpu|cuda) ;; *) echo "VARIANT must be cpu or cuda" >&2; exit 1 ;; esac \
 && groupadd --gid 10001 splitee \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/splitee --create-home \
      --shell /usr/sbin/nologin splitee

WORKDIR /app
# Dependencies first (a layer that survives source edits): PyTorch of the variant, then the
# project's own dependencies from pyproject.toml.
COPY pyproject.toml README.md ./
RUN if [ "$VARIANT" = cpu ]; then \
      pip install --index-url "$TORCH_CPU_INDEX" "torch>=2.4,<3"; \
    else \
      pip install "torch>=2.4,<3"; \
    fi \
 && python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY splitee ./splitee
COPY policy_store ./policy_store
COPY producers ./producers
COPY edge_workers ./edge_workers
COPY cloud_workers ./cloud_workers
COPY assets ./assets
COPY deploy/grafana ./deploy/grafana
RUN pip install --no-deps -e . && splitee --help > /dev/null

USER 10001:10001
ENV HOME=/var/lib/splitee SPLITEE_VAR_DIR=/var/lib/splitee
ENTRYPOINT ["splitee"]
CMD ["--help"]
