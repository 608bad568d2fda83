# syntax=docker/dockerfile:1
# The splitee images (deploy/helm/splitee): entry point `splitee`, non-root.
#   docker build -t splitee:0.1.0 .                                  # CPU (every role)
#   docker build --build-arg VARIANT=cuda -t splitee:0.1.0-cuda .    # CUDA (cloud workers)
#   docker build --target edge -t splitee:0.1.0-edge .               # the torch-free edge
# The CPU variant installs PyTorch's CPU-only wheels; the CUDA variant PyPI's default wheels,
# which bring the CUDA runtime libraries along (the node needs NVIDIA's driver and device
# plugin, nothing else). The repo is installed in place (editable): the settings find the
# shipped checkpoint and frames under <repo>/assets.
# The edge target has no PyTorch: the project's core dependencies and its `edge` extra (ONNX
# Runtime), and the graphs `splitee export` wrote in the `export` stage (MODEL, BOTTLENECK:
# paths in the repo), run with edge.runtime = onnxruntime (docs/onnx.md).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 splitee \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/splitee --create-home \
      --shell /usr/sbin/nologin splitee
WORKDIR /app
COPY pyproject.toml README.md ./
# pyproject.toml's dependency lists, for installs that leave the sources for a later layer
RUN python - <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = p["optional-dependencies"]
open("/tmp/core.txt", "w").write("\n".join(p["dependencies"]))
open("/tmp/edge.txt", "w").write("\n".join(extras["edge"]))
open("/tmp/full.txt", "w").write("\n".join(d for d in extras["full"] if not d.startswith("torch")))
open("/tmp/export.txt", "w").write("\n".join(d for d in extras["export"] if not d.startswith("splitee")))
PY

# ------------------------------------------------------------------ full: every role, PyTorch
FROM base AS full
ARG VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
# Dependencies first (a layer that survives source edits): PyTorch of the variant, then the
# project's own dependencies from pyproject.toml.
RUN case "$VARIANT" in cpu|cuda) ;; *) echo "VARIANT must be cpu or cuda" >&2; exit 1 ;; esac \
 && if [ "$VARIANT" = cpu ]; then \
      pip install --index-url "$TORCH_CPU_INDEX" "torch>=2.4,<3"; \
    else \
      pip install "torch>=2.4,<3"; \
    fi
RUN pip install -r /tmp/core.txt -r /tmp/full.txt

COPY splitee ./splitee
COPY policy_store ./policy_store
COPY producers ./producers
COPY edge_workers ./edge_workers
COPY cloud_workers ./cloud_workers
COPY assets ./assets
COPY deploy/grafana ./deploy/grafana
RUN pip install --no-deps -e . && splitee --help > /dev/null

# ------------------------------------------------------------------ export: the edge's graphs
FROM full AS export
ARG MODEL=assets/resnet56-multiexit.safetensors
ARG BOTTLENECK=
RUN pip install -r /tmp/edge.txt -r /tmp/export.txt \
 && splitee export --model "$MODEL" --out /export ${BOTTLENECK:+--bottleneck "$BOTTLENECK"}

# ------------------------------------------------------------------ edge: no PyTorch
FROM base AS edge
RUN pip install -r /tmp/core.txt -r /tmp/edge.txt
COPY splitee ./splitee
COPY policy_store ./policy_store
COPY producers ./producers
COPY edge_workers ./edge_workers
COPY cloud_workers ./cloud_workers
COPY --from=export /export /app/export
RUN pip install --no-deps -e . \
 && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
 && splitee --help > /dev/null
USER 10001:10001
ENV HOME=/var/lib/splitee SPLITEE_VAR_DIR=/var/lib/splitee \
    SPLITEE_EDGE__RUNTIME=onnxruntime SPLITEE_EDGE__ONNX_DIR=/app/export
ENTRYPOINT ["splitee"]
CMD ["edge"]

# ------------------------------------------------------------------ the default image: full
FROM full
USER 10001:10001
ENV HOME=/var/lib/splitee SPLITEE_VAR_DIR=/var/lib/splitee
ENTRYPOINT ["splitee"]
CMD ["--help"]
