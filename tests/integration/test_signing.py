"""Message signing (``EMBEDQ_SIGNING_*``): a signing client's jobs run; a worker that signs accepts nothing else.

The key pairs are made here (RSA, self-signed). The worker trusts one
certificate; a plain JSON message and a message signed by a stranger's key
carry a canary text, and neither ever becomes a job.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from celery import Celery
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from api_client import EmbedQ
from api_client.errors import NotConfigured
from api_client.settings import get_settings
from embedq.worker.stack import stop_worker
from tests import helpers


def key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """An RSA key and its self-signed certificate, as ``folder/name.key`` and ``folder/name.pem``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = folder / f"{name}.key", folder / f"{name}.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


STRANGER = """
import sys
from celery import Celery
from celery.security.serialization import register_auth
key, cert, broker, text = sys.argv[1:5]
register_auth(open(key).read(), None, open(cert).read(), cert, "sha256", serializer="json")
app = Celery("stranger", broker=broker)
app.conf.update(task_serializer="auth", accept_content=["auth"])
app.send_task("embedq.encode", kwargs={"request": {"texts": [text]}}, queue="embedq.cpu.interactive")
app.close()
"""


def test_a_signing_worker_runs_signed_jobs_and_discards_unsigned_and_strangers_messages(
    isolated_database: str, broker_url: str, tmp_path: Path
) -> None:
    trusted = tmp_path / "trusted"
    key, cert = key_pair(trusted, "embedq")
    stranger_key, stranger_cert = key_pair(tmp_path / "stranger", "stranger")
    redis_url = helpers.other_redis_db(broker_url)
    env = helpers.worker_env(
        redis_url,
        isolated_database,
        EMBEDQ_SIGNING_KEY=str(key),
        EMBEDQ_SIGNING_CERT=str(cert),
        EMBEDQ_SIGNING_CERTS=str(trusted / "*.pem"),
    )
    log = tmp_path / "worker.log"
    worker = helpers.start_worker(env, isolated_database, f"signing-{uuid.uuid4().hex[:6]}@%h", log)
    eq = EmbedQ(get_settings(env, env_file=False))
    plain = Celery("plain", broker=redis_url)
    try:
        assert eq.encode(["a signed job"]).result(timeout=120).shape == (1, 384)

        unsigned, forged = f"unsigned canary {uuid.uuid4()}", f"stranger canary {uuid.uuid4()}"
        plain.send_task("embedq.encode", kwargs={"request": {"texts": [unsigned]}}, queue="embedq.cpu.interactive")
        subprocess.run(
            [sys.executable, "-c", STRANGER, str(stranger_key), str(stranger_cert), redis_url, forged],
            check=True,
            timeout=60,
        )
        helpers.wait_until(lambda: log.read_text().count("discarded a message") >= 2, timeout=60, what="both refused")
        assert eq.encode(["signed again, after both"]).result(timeout=120).shape == (1, 384)
        with eq._pool.connection() as conn:
            canaries = conn.execute("SELECT count(*) FROM jobs WHERE request::text LIKE '%%canary%%'").fetchone()[0]
        assert canaries == 0
        assert worker.poll() is None
        text = log.read_text()
        assert "Refusing to deserialize untrusted content of type json" in text
        assert "Unknown certificate: b'stranger" in text
        assert "Traceback" not in text
    finally:
        plain.close()
        eq.close()
        stop_worker(worker, timeout=30)


def test_signing_settings_come_together_and_a_missing_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="EMBEDQ_SIGNING_CERT, EMBEDQ_SIGNING_CERTS not set"):
        get_settings({"EMBEDQ_SIGNING_KEY": "k.pem"}, env_file=False)
    env = {
        "EMBEDQ_BROKER_URL": "redis://127.0.0.1:1/0",
        "EMBEDQ_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "EMBEDQ_SIGNING_KEY": str(tmp_path / "missing.key"),
        "EMBEDQ_SIGNING_CERT": str(tmp_path / "missing.pem"),
        "EMBEDQ_SIGNING_CERTS": str(tmp_path / "*.pem"),
    }
    from api_client.celery_conf import producer_app

    with pytest.raises(NotConfigured, match="message signing: cannot load the key or certificates"):
        producer_app(get_settings(env, env_file=False))
