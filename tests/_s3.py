"""A real S3 endpoint for tests: the moto server on 127.0.0.1 at a free port, one bucket.

Imported by ``tests/conftest.py`` for its fixtures; moto itself is imported only when a test
asks for the server.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

BUCKET = "atlas-test"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


class MotoS3:
    """A running moto server with one bucket; ``store(prefix)`` gives obstore S3Stores on it."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.boto3_client().create_bucket(Bucket=BUCKET)

    def options(self) -> dict[str, Any]:
        """The store options of the bucket (what ``Atlas.open("s3://...", **options)`` takes)."""
        return {"endpoint": self.endpoint, "region": "us-east-1",
                "virtual_hosted_style_request": False, "client_options": {"allow_http": True},
                **CREDENTIALS}

    def store(self, prefix: str | None = None):
        """An S3Store on a fresh (or the given) prefix of the bucket."""
        from obstore.store import S3Store

        return S3Store(BUCKET, prefix=prefix or self.new_prefix(), **self.options())

    @staticmethod
    def new_prefix() -> str:
        return f"t-{uuid.uuid4().hex[:12]}"

    def boto3_client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["access_key_id"],
                            aws_secret_access_key=CREDENTIALS["secret_access_key"])

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def moto_s3():
    """The moto S3 server, started once per test session and stopped after it."""
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def s3_store(moto_s3: MotoS3):
    """An obstore S3Store on a prefix of the moto bucket that no other test uses."""
    return moto_s3.store()
