"""The claim check: a large document's bytes stored once, records carry a reference.

Above ``SWITCHYARD_BLOB_THRESHOLD_BYTES`` ingest puts a document's bytes in the deployment's
blob store and the task envelope carries a :class:`~switchyard.v1.BlobRef` (uri, sha256, size)
instead of the body, so Kafka records and PostgreSQL rows stay small. Every reader gets the
bytes through :func:`load_body`, which returns the inline body or fetches the blob and checks
its sha256 (a mismatch is :class:`BlobIntegrityError`, never silently wrong bytes).

Two stores, one protocol: :class:`PostgresBlobStore` (table ``blobs``, the embedded default)
and :class:`S3BlobStore` (any S3-compatible server through aiobotocore, the production option).
Both seal the bytes with the deployment's payload codec (:mod:`switchyard._payloads`, column
``blobs.body`` bound to the blob id), so encryption at rest applies to blobs exactly as to the
other payload columns; ``switchyard purge`` deletes a task's blobs with its payload.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from switchyard._payloads import BLOB_BODY, PayloadCodec, codec_for
from switchyard.v1 import BlobRef, Document, TaskEnvelope

if TYPE_CHECKING:
    import asyncpg

    from switchyard._settings import Settings

#: ``SWITCHYARD_BLOB_STORE`` values.
STORES = ("postgres", "s3")


class BlobError(Exception):
    """A blob cannot be read or written; names the uri, never the content."""


class BlobNotFound(BlobError):
    """No blob under that reference (never stored, or deleted by a purge)."""


class BlobIntegrityError(BlobError):
    """The stored bytes are not the ones the reference names (sha256 or size differ)."""


@runtime_checkable
class BlobStore(Protocol):
    """Where document bytes above the claim-check threshold live."""

    async def put(self, body: bytes, tenant_id: str, task_id: str) -> BlobRef:
        """Store ``body`` for a task; the reference records carry from now on."""
        ...

    async def get(self, ref: BlobRef) -> bytes:
        """The bytes of ``ref``, checked against its sha256 and size."""
        ...

    async def delete(self, ref: BlobRef) -> bool:
        """Remove the bytes; False when there was nothing to remove."""
        ...

    async def close(self) -> None:
        ...


def _ref(uri: str, body: bytes) -> BlobRef:
    return BlobRef(uri=uri, sha256=hashlib.sha256(body).hexdigest(), size_bytes=len(body))


def verified(ref: BlobRef, body: bytes) -> bytes:
    """``body`` when it is what ``ref`` names; BlobIntegrityError otherwise."""
    digest = hashlib.sha256(body).hexdigest()
    if digest != ref.sha256.lower() or len(body) != ref.size_bytes:
        raise BlobIntegrityError(
            f"blob {ref.uri} does not match its reference: sha256 {digest[:16]}… "
            f"({len(body)} bytes), expected {ref.sha256[:16]}… ({ref.size_bytes} bytes)")
    return body


class PostgresBlobStore:
    """Blobs in PostgreSQL's ``blobs`` table (migration 0020), sealed like every payload."""

    scheme = "pg:"

    def __init__(self, pool: asyncpg.Pool | asyncpg.Connection, codec: PayloadCodec) -> None:
        self.pool = pool
        self.codec = codec

    def _blob_id(self, ref: BlobRef) -> uuid.UUID:
        if not ref.uri.startswith(self.scheme):
            raise BlobError(f"blob {ref.uri!r} is not in PostgreSQL (expected pg:<id>)")
        try:
            return uuid.UUID(ref.uri[len(self.scheme):])
        except ValueError:
            raise BlobError(f"blob {ref.uri!r}: not a blob id") from None

    async def put(self, body: bytes, tenant_id: str, task_id: str) -> BlobRef:
        blob_id = uuid.uuid4()
        ref = _ref(f"{self.scheme}{blob_id}", body)
        await self.pool.execute(
            "INSERT INTO blobs (blob_id, tenant_id, task_id, sha256, size_bytes, body) "
            "VALUES ($1, $2, $3, $4, $5, $6)", blob_id, tenant_id, uuid.UUID(task_id),
            ref.sha256, ref.size_bytes, self.codec.seal(blob_id, body, BLOB_BODY))
        return ref

    async def get(self, ref: BlobRef) -> bytes:
        blob_id = self._blob_id(ref)
        stored = await self.pool.fetchval("SELECT body FROM blobs WHERE blob_id = $1", blob_id)
        if stored is None:
            raise BlobNotFound(f"blob {ref.uri} not found (never stored, or purged)")
        return verified(ref, self.codec.open(blob_id, stored, BLOB_BODY))

    async def delete(self, ref: BlobRef) -> bool:
        status = await self.pool.execute("DELETE FROM blobs WHERE blob_id = $1",
                                         self._blob_id(ref))
        return status != "DELETE 0"

    async def close(self) -> None:
        """The pool belongs to the caller."""


class S3BlobStore:
    """Blobs as objects ``<tenant>/<task>/<blob id>`` in an S3-compatible bucket.

    The bytes are sealed client-side with the payload codec before they leave the process
    (bound to column ``blobs.body`` and the blob id), so the object store never holds a
    plaintext document when ``SWITCHYARD_ENCRYPTION_KEYS`` is set.
    """

    def __init__(self, codec: PayloadCodec, bucket: str, *, endpoint_url: str = "",
                 region: str = "", access_key_id: str = "", secret_access_key: str = ""
                 ) -> None:
        if not bucket:
            raise BlobError("SWITCHYARD_S3_BUCKET is required with SWITCHYARD_BLOB_STORE=s3")
        self.codec = codec
        self.bucket = bucket
        self._config = {k: v for k, v in (
            ("endpoint_url", endpoint_url), ("region_name", region),
            ("aws_access_key_id", access_key_id),
            ("aws_secret_access_key", secret_access_key)) if v}
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    async def _s3(self) -> Any:
        if self._client is None:
            from aiobotocore.session import get_session

            stack = contextlib.AsyncExitStack()
            self._client = await stack.enter_async_context(
                get_session().create_client("s3", **self._config))
            self._stack = stack
        return self._client

    def _key(self, ref: BlobRef) -> tuple[str, uuid.UUID]:
        prefix = f"s3://{self.bucket}/"
        if not ref.uri.startswith(prefix):
            raise BlobError(f"blob {ref.uri!r} is not in bucket {self.bucket!r}")
        key = ref.uri[len(prefix):]
        try:
            return key, uuid.UUID(key.rsplit("/", 1)[-1])
        except ValueError:
            raise BlobError(f"blob {ref.uri!r}: not a blob key") from None

    async def put(self, body: bytes, tenant_id: str, task_id: str) -> BlobRef:
        blob_id = uuid.uuid4()
        key = f"{tenant_id}/{task_id}/{blob_id}"
        ref = _ref(f"s3://{self.bucket}/{key}", body)
        client = await self._s3()
        await client.put_object(Bucket=self.bucket, Key=key,
                                Body=self.codec.seal(blob_id, body, BLOB_BODY))
        return ref

    async def get(self, ref: BlobRef) -> bytes:
        key, blob_id = self._key(ref)
        client = await self._s3()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=key)
        except client.exceptions.NoSuchKey:
            raise BlobNotFound(f"blob {ref.uri} not found (never stored, or purged)") from None
        async with response["Body"] as stream:
            stored = await stream.read()
        return verified(ref, self.codec.open(blob_id, stored, BLOB_BODY))

    async def delete(self, ref: BlobRef) -> bool:
        key, _ = self._key(ref)
        client = await self._s3()
        try:
            await client.head_object(Bucket=self.bucket, Key=key)
        except client.exceptions.ClientError:
            return False
        await client.delete_object(Bucket=self.bucket, Key=key)
        return True

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._client = None


def blob_store_for(settings: Settings, pool: asyncpg.Pool | None = None) -> BlobStore:
    """The deployment's blob store (``SWITCHYARD_BLOB_STORE``); PostgreSQL needs ``pool``."""
    codec = codec_for(settings)
    if settings.blob_store == "s3":
        return S3BlobStore(codec, settings.s3_bucket, endpoint_url=settings.s3_endpoint_url,
                           region=settings.s3_region,
                           access_key_id=settings.s3_access_key_id,
                           secret_access_key=settings.s3_secret_access_key)
    if pool is None:
        raise BlobError("the PostgreSQL blob store needs a connection pool")
    return PostgresBlobStore(pool, codec)


async def check_in(envelope: TaskEnvelope, store: BlobStore, threshold_bytes: int
                   ) -> BlobRef | None:
    """The claim check, in place: a body above ``threshold_bytes`` goes to ``store`` and the
    envelope keeps only its reference. Returns the new reference (None when the body stays
    inline), so a caller whose task turns out not to be new can delete it again."""
    document = envelope.document
    if len(document.body) <= threshold_bytes:
        return None
    ref = await store.put(document.body, envelope.tenant_id, envelope.task_id)
    document.blob.CopyFrom(ref)
    document.ClearField("body")
    return ref


async def load_body(document: Document, store: BlobStore | None) -> bytes:
    """A document's bytes, wherever they are: the inline body, or its blob (checked)."""
    if document.HasField("blob") and document.blob.uri:
        if store is None:
            raise BlobError(f"document is in blob {document.blob.uri} but no blob store "
                            "was given")
        return await store.get(document.blob)
    return document.body


__all__ = ["STORES", "BlobError", "BlobIntegrityError", "BlobNotFound", "BlobStore",
           "PostgresBlobStore", "S3BlobStore", "blob_store_for", "check_in", "load_body", "verified"]
