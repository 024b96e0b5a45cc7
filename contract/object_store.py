"""The model repository on object storage (`s3://bucket/prefix`): where its objects live and a
small client over boto3, shared by the publisher (export) and the reader (service).

Layout, the same as a folder's: `<prefix>/<name>/<version>/<file>`. Object storage has no
rename, so a version is complete when its `manifest.json` is there and every file the manifest
lists is there too; publishers upload the files first and the manifest last. A publisher first
claims its version number by writing `<name>/<version>/.claim` only if it is absent (S3's
conditional write, `If-None-Match: *`): of two publishers racing for one number, one wins.

Credentials and endpoints are boto3's own: environment variables, `~/.aws/config` and
`~/.aws/credentials` (profiles), web identity (EKS, IRSA), instance and container roles, and
`AWS_ENDPOINT_URL` or `AWS_ENDPOINT_URL_S3` for S3-compatible stores (MinIO, Ceph, SeaweedFS).
boto3 is imported only when a repository is on object storage (`pip install rnnserve[s3]`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>[^\s]*))?$")
CLAIM_FILE = ".claim"


class StoreError(Exception):
    """The object store cannot be reached or refused a request; says which and why."""


class AlreadyExists(StoreError):
    """A conditional write found the object already there."""


def is_store_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith("s3://")


@dataclass(frozen=True)
class StoreUrl:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> StoreUrl:
        match = URL.match(url)
        if match is None:
            raise ValueError(f"{url!r} is not an object-store repository like s3://bucket/prefix")
        return cls(match["bucket"], (match["prefix"] or "").strip("/"))

    def key(self, *parts: str | int) -> str:
        return "/".join(str(p) for p in (self.prefix, *parts) if str(p))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the repository's prefix
    size: int
    etag: str


class ObjectStore:
    """The few S3 calls the repository needs, with errors turned into StoreError."""

    def __init__(self, url: str, client: Any = None) -> None:
        self.url = StoreUrl.parse(url)
        self.client = client if client is not None else _client()

    def list(self, under: str = "") -> Iterator[StoredObject]:
        """Every object below the prefix (and `under`, relative to it)."""
        start = self.url.key(under)
        start = f"{start}/" if start else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.url.bucket, Prefix=start
        )
        strip = len(self.url.prefix) + 1 if self.url.prefix else 0
        with self._errors("list"):
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][strip:]
                    yield StoredObject(key, item["Size"], item["ETag"].strip('"'))

    def folders(self, under: str) -> list[str]:
        """The names of the "folders" directly below `under`."""
        start = self.url.key(under) + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.url.bucket, Prefix=start, Delimiter="/"
        )
        with self._errors("list"):
            return [
                common["Prefix"][len(start) :].rstrip("/")
                for page in pages
                for common in page.get("CommonPrefixes", [])
            ]

    def read(self, key: str) -> bytes:
        with self._errors(f"read {key}"):
            answer = self.client.get_object(Bucket=self.url.bucket, Key=self.url.key(key))
            return answer["Body"].read()

    def download(self, key: str, target: Path) -> str:
        """Stream one object into `target`; its sha256."""
        digest = hashlib.sha256()
        with self._errors(f"download {key}"), target.open("wb") as out:
            answer = self.client.get_object(Bucket=self.url.bucket, Key=self.url.key(key))
            for chunk in answer["Body"].iter_chunks(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    def write(self, key: str, body: bytes | BinaryIO, only_if_absent: bool = False) -> None:
        """Put one object; with `only_if_absent`, raise AlreadyExists if it is there."""
        condition = {"IfNoneMatch": "*"} if only_if_absent else {}
        with self._errors(f"write {key}"):
            self.client.put_object(
                Bucket=self.url.bucket, Key=self.url.key(key), Body=body, **condition
            )

    def delete(self, key: str) -> None:
        with self._errors(f"delete {key}"):
            self.client.delete_object(Bucket=self.url.bucket, Key=self.url.key(key))

    def _errors(self, action: str) -> _Errors:
        return _Errors(f"{action} in {self.url}")


class _Errors:
    """Turns botocore's exceptions into StoreError (a conflict into AlreadyExists)."""

    def __init__(self, action: str) -> None:
        self.action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, tb: object) -> bool:
        if error is None or isinstance(error, StoreError):
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
                raise AlreadyExists(f"could not {self.action}: it exists already") from error
            raise StoreError(f"could not {self.action}: {code or status}: {error}") from error
        if isinstance(error, BotoCoreError | OSError):
            raise StoreError(f"could not {self.action}: {error}") from error
        return False


def _client() -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as error:  # the optional extra is not installed
        raise StoreError(
            "a repository on object storage needs boto3: pip install 'rnnserve[s3]'"
        ) from error
    # Few, quick retries: a poll that fails is tried again at the next poll anyway.
    config = Config(
        connect_timeout=3, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )
    return boto3.session.Session().client("s3", config=config)
