"""One typed settings object, built from the environment by ``get_settings()``.

Every field can be set as ``EMBEDQ_<FIELD>`` (upper case), in the environment
or in an env file of ``KEY=value`` lines: the path in ``EMBEDQ_ENV_FILE``,
else ``<EMBEDQ_DATA_DIR>/env`` (``.embedq/env`` by default), which
``embedq up`` writes with the two server URLs once its worker is consuming.
The environment wins over the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api_client.backends import Backend
from api_client.errors import NotConfigured
from api_client.routing import CHARS_PER_TOKEN, INTERACTIVE_MAX_ITEMS, INTERACTIVE_MAX_TOKENS

ENV_PREFIX = "EMBEDQ_"


class Settings(BaseModel):
    """Service settings; see docs/configuration.md for each field."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    broker_url: str | None = None
    database_url: str | None = None
    data_dir: Path = Path(".embedq")
    env_file: Path | None = None

    # Limits, checked by the client before queueing and again by the worker.
    max_texts_per_job: int = Field(100_000, ge=1)
    max_chars_per_text: int = Field(50_000, ge=1)
    max_batch_size: int = Field(1024, ge=1)
    max_similarity_cells: int = Field(25_000_000, ge=1)
    max_pairs: int = Field(1_000_000, ge=1)
    max_queries: int = Field(1000, ge=1)
    max_k: int = Field(1000, ge=1)
    max_request_chars: int = Field(50_000_000, ge=1)

    # Jobs of more items than this are split into chunk jobs that any worker takes.
    chunk_size: int = Field(1000, ge=1)

    # Seconds a client waits for a database connection before DatabaseUnavailable.
    connect_timeout: float = Field(10.0, gt=0)

    # Job lifecycle.
    lease_seconds: float = Field(60.0, gt=0)
    progress_interval: float = Field(1.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    flush_every: int = Field(2048, ge=1)

    # Tokens in one forward pass (texts times the longest one's tokens, padding included): a batch
    # over it is split. 0: the hardware class's measured default (embedq/worker/cache.py: TOKEN_BUDGETS).
    token_budget: int = Field(0, ge=0)

    # Celery: soft < hard time limit < broker visibility timeout. The hard
    # limit stays under RabbitMQ's default 30-minute consumer_timeout.
    soft_time_limit: int = Field(1500, ge=1)
    time_limit: int = Field(1560, ge=1)
    visibility_timeout: int = Field(7200, ge=1)

    # Message signing (Celery's auth serializer), all three or none: every message is signed with this
    # RSA key and its certificate, and a worker accepts only messages signed by a certificate found
    # by signing_certs (a folder's glob, e.g. /etc/embedq/certs/*.pem).
    signing_key: Path | None = None
    signing_cert: Path | None = None
    signing_certs: str | None = None

    # Sweeper and worker heartbeat.
    sweep_interval: float = Field(10.0, gt=0)
    resend_after: float = Field(30.0, gt=0)
    worker_heartbeat: float = Field(5.0, gt=0)
    worker_alive: float = Field(30.0, gt=0)

    # Collections: where index artifacts live (default DATA_DIR/artifacts; every worker must
    # read the same files), loaded indexes kept per worker process, and the most documents a
    # filtered search scores exactly in PostgreSQL before it over-fetches from the index.
    artifact_root: Path | None = None
    index_cache: int = Field(4, ge=1)
    filter_exact_max: int = Field(20_000, ge=0)

    # The worker process (set by `embedq worker` flags): hardware class, processes,
    # torch intra-op threads per process (0: the usable cores / concurrency),
    # whether it sweeps, and the model each process loads at start.
    hardware: Literal["cpu", "gpu"] = "cpu"
    concurrency: int = Field(1, ge=1)
    torch_threads: int = Field(0, ge=0)
    sweeper: bool = True
    preload: str | None = None

    # Backends (api_client/backends.py). Requests that name none get the backend promoted for
    # the model version fleet-wide (embedq models promote), torch while none is. `backend` is
    # what `embedq up` / `embedq worker` do at start when the preload model has no promotion
    # yet: auto gates this CPU's backends and promotes the fastest that passed, a backend name
    # gates and promotes that one, torch gates nothing.
    # The gate (embedq/cores/gate.py): STS dev Spearman within gate_tolerance of torch fp32's, batch
    # invariance, paraphrase pairs and top-10 search against torch. The sizes of its data
    # (0: all of it: 1,500 pairs, 2,000 paraphrase texts, 20,000 documents, 1,000 queries)
    # are smaller only to make tests short.
    backend: Backend = "auto"
    # Seconds a worker reuses a model name's resolved version and backend: how soon a promotion
    # (or a re-registered model) reaches running workers.
    model_recheck: float = Field(5.0, ge=0)

    # Watching it run: where an `embedq worker` serves Prometheus metrics (port 0: any free one,
    # published with its heartbeat). `embedq up` writes the URLs of its metrics and its dashboard
    # into its env file (EMBEDQ_METRICS_URL, EMBEDQ_DASHBOARD_URL).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_url: str | None = None
    dashboard_url: str | None = None
    # Celery task events (what Flower shows); `embedq up --flower` turns them on.
    task_events: bool = False

    @property
    def result_backend(self) -> str | None:
        """The Celery result backend URL of the workers' outcomes (``db+postgresql+psycopg://...``): what a plain
        Celery client passes as ``backend=`` to read them with ``AsyncResult.get()``."""
        from api_client.db import sqlalchemy_url

        return f"db+{sqlalchemy_url(self.database_url)}" if self.database_url else None

    gate_tolerance: float = Field(0.005, ge=0)
    gate_pairs: int = Field(0, ge=0)
    gate_paraphrase_texts: int = Field(0, ge=0)
    gate_documents: int = Field(0, ge=0)
    gate_queries: int = Field(0, ge=0)

    # Routing thresholds (see api_client/routing.py): characters stand for tokens, 4 to a token.
    interactive_max_items: int = Field(INTERACTIVE_MAX_ITEMS, ge=1)
    interactive_max_chars: int = Field(INTERACTIVE_MAX_TOKENS * CHARS_PER_TOKEN, ge=1)

    @model_validator(mode="after")
    def _limits_are_ordered(self) -> Settings:
        if not self.soft_time_limit < self.time_limit < self.visibility_timeout:
            raise ValueError(
                "time limits must satisfy soft_time_limit < time_limit < visibility_timeout, got "
                f"{self.soft_time_limit} / {self.time_limit} / {self.visibility_timeout}: a visibility "
                "timeout shorter than the hard limit makes Redis re-deliver jobs that are still running"
            )
        if self.lease_seconds <= 2 * self.progress_interval:
            raise ValueError("lease_seconds must be more than twice progress_interval")
        if self.worker_alive <= 2 * self.worker_heartbeat:
            raise ValueError("worker_alive must be more than twice worker_heartbeat")
        signing = {
            "signing_key": self.signing_key,
            "signing_cert": self.signing_cert,
            "signing_certs": self.signing_certs,
        }
        if any(signing.values()) and not all(signing.values()):
            unset = ", ".join(f"EMBEDQ_{key.upper()}" for key, value in signing.items() if not value)
            raise ValueError(f"message signing needs EMBEDQ_SIGNING_KEY, _CERT and _CERTS together; {unset} not set")
        return self

    @property
    def signs(self) -> bool:
        """Whether messages are signed (and only signed ones accepted)."""
        return self.signing_key is not None

    @property
    def artifacts(self) -> Path:
        """The artifact root: ``artifact_root``, else ``data_dir/artifacts``, absolute."""
        return (self.artifact_root or self.data_dir / "artifacts").absolute()

    def require_urls(self) -> tuple[str, str]:
        """Both server URLs, or ``NotConfigured`` that says how to get them."""
        missing = [
            name
            for name, value in (("EMBEDQ_BROKER_URL", self.broker_url), ("EMBEDQ_DATABASE_URL", self.database_url))
            if not value
        ]
        if not self.broker_url or not self.database_url:
            raise self._not_configured(missing)
        return self.broker_url, self.database_url

    def require_database(self) -> str:
        """The database URL, or ``NotConfigured`` that says how to get it."""
        if not self.database_url:
            raise self._not_configured(["EMBEDQ_DATABASE_URL"])
        return self.database_url

    def _not_configured(self, missing: list[str]) -> NotConfigured:
        path = (self.env_file or self.data_dir / "env").absolute()
        where = f"the env file {path}" if path.is_file() else f"{path} (no such file)"
        down = "" if path.is_file() else "embedq is not running (`embedq up` writes its env file while it runs): "
        return NotConfigured(
            f"{down}{' and '.join(missing)} not set, neither in the environment nor in {where}: set "
            f"{'them' if len(missing) > 1 else 'it'}, point EMBEDQ_ENV_FILE at the env file `embedq up` writes, "
            "or run `embedq up`",
            detail={"missing": missing, "env_file": str(path)},
        )


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of an env file, read as python-dotenv reads them (the reader pydantic-settings
    uses): quotes, escapes, ``export`` and comments as a shell writes them; a key without a value is left out."""
    from dotenv import dotenv_values

    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def get_settings(environ: Mapping[str, str] | None = None, *, env_file: bool = True) -> Settings:
    """Build ``Settings`` from ``environ`` (default ``os.environ``) and, unless ``env_file=False``, the env file."""
    env = dict(os.environ if environ is None else environ)
    data_dir = Path(env.get(f"{ENV_PREFIX}DATA_DIR", ".embedq"))
    path = Path(env.get(f"{ENV_PREFIX}ENV_FILE", data_dir / "env"))
    if env_file and path.is_file():
        for key, value in read_env_file(path).items():
            env.setdefault(key, value)
    env.setdefault(f"{ENV_PREFIX}ENV_FILE", str(path))
    fields = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in Settings.model_fields
    }
    return Settings.model_validate(fields)
