"""The light client must not pull the heavy stack into a web backend."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "faiss", "sklearn", "setfit", "sentence_transformers", "transformers", "onnxruntime"]


def test_api_client_never_imports_heavy_libraries() -> None:
    code = (
        "import sys, json\n"
        "import api_client\n"
        "from api_client import EmbedQ, Job\n"
        "from api_client import client, routing, schemas, errors, postprocess, pgcopy, celery_conf\n"
        "from api_client.store import jobs, embeddings, models, workers\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
