"""An S3 server that checks credentials: moto in its own process, with IAM authorization on.

The suite's shared S3 server (tests/conftest.py) accepts any key, so it cannot show whose
credentials a request used. This one has two tenants, each an IAM user whose policy reaches only
its own bucket, and a third user standing for the operator's own (platform) credential that
reaches tenant-b only, so a request made with the wrong identity is refused (403) and a test can
tell which identity the operator used. It runs as a separate process because moto keeps its
authorization switch in process-wide settings.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

BUCKETS = {"alice": "tenant-a", "bob": "tenant-b"}


@dataclass(frozen=True)
class Keys:
    key_id: str
    secret: str

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret}

    @property
    def options(self) -> dict[str, str]:
        return {"key": self.key_id, "secret": self.secret}


@dataclass(frozen=True)
class TenantS3:
    endpoint: str
    keys: dict[str, Keys]  # user -> keys: alice (tenant-a), bob (tenant-b), platform (tenant-b)

    def objects(self, user: str, bucket: str, prefix: str = "") -> list[str]:
        """Keys under `prefix` in `bucket`, listed as `user`."""
        import boto3

        k = self.keys[user]
        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=k.key_id,
            aws_secret_access_key=k.secret,
            region_name="us-east-1",
        )
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents") or []]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _policy(bucket: str) -> str:
    arns = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": arns}],
        }
    )


@pytest.fixture(scope="module")
def tenant_s3() -> Iterator[TenantS3]:
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        setup = {
            "endpoint_url": endpoint,
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
            "region_name": "us-east-1",
        }
        s3, iam = boto3.client("s3", **setup), boto3.client("iam", **setup)
        keys = {}
        for user, bucket in [*BUCKETS.items(), ("platform", "tenant-b")]:
            if user in BUCKETS:
                s3.create_bucket(Bucket=bucket)
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="own", PolicyDocument=_policy(bucket))
            made = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = Keys(made["AccessKeyId"], made["SecretAccessKey"])
        # From now on every request is authenticated and authorized against the IAM policies.
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=10).read()
        yield TenantS3(endpoint, keys)
    finally:
        proc.terminate()
        proc.wait(10)
