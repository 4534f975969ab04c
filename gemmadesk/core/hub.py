"""Talking to the Hugging Face Hub (or a mirror) through huggingface_hub, for the downloader.

Everything that depends on the user's environment is read at call time, not at import time:
huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once when it is imported, so a mirror or
offline switch set later (or by a test) would be ignored. We pass ``endpoint=`` explicitly and check
offline mode ourselves. The token is huggingface_hub's own lookup (``HF_TOKEN``, then the token that
``hf auth login`` stored). Proxies (``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``) and TLS verification come
from the HTTP client huggingface_hub shares (``get_session()``, ``trust_env`` on, ``verify`` on); we use
that same client for the byte transfer so both behave the same.

Integrity: the sha256 is the Hub's LFS object id. It arrives as ``X-Linked-Etag`` on the resolve
request; when it does not (a mirror that strips it, a non-LFS file), the model-info API with
``blobs=true`` is asked for the file's ``lfs.sha256``, and the catalog's value is the last fallback.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from typing import Any

import httpx2
from huggingface_hub import HfApi, get_hf_file_metadata, get_token, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from gemmadesk.core.catalog import ModelFile

DEFAULT_ENDPOINT = "https://huggingface.co"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_TRUE = {"1", "on", "yes", "true"}


class HubError(Exception):
    """A Hub problem explained for a person (the message is meant to be shown as is).

    ``transient``: worth retrying (network error, timeout, 408/429/5xx); ``unreachable``: no connection
    could be made at all (offline, DNS, refused); ``retry_after``: the server's ``Retry-After`` in seconds.
    """

    def __init__(self, message: str, *, transient: bool = False, unreachable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.unreachable = unreachable
        self.retry_after = retry_after


TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def is_tls_failure(exc: BaseException) -> bool:
    """The server's certificate did not verify (a retry will not change that)."""
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(chain):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def is_transient(exc: BaseException) -> bool:
    if is_tls_failure(exc):
        return False
    if isinstance(exc, httpx2.TransportError):
        return True
    return status_of(exc) in TRANSIENT_STATUS


def retry_after_seconds(headers: Any) -> float | None:
    """``Retry-After`` as seconds (the delay form; the HTTP-date form is ignored; so does huggingface_hub)."""
    value = str(headers.get("Retry-After", "")).strip()
    return float(value) if value.isdigit() else None


def retry_after_of(exc: BaseException) -> float | None:
    response: Any = getattr(exc, "response", None)
    return retry_after_seconds(response.headers) if response is not None else None


@dataclass(frozen=True)
class HubConfig:
    endpoint: str
    token: str | None
    offline: bool

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> HubConfig:
        environ = os.environ if env is None else env
        endpoint = (environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        flags = (environ.get("HF_HUB_OFFLINE", ""), environ.get("TRANSFORMERS_OFFLINE", ""))
        offline = any(flag.strip().lower() in _TRUE for flag in flags)
        token = environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN")
        if not token and not offline:  # the stored login; get_token() may refresh it over the network
            try:
                token = get_token()
            except Exception:  # a broken token file must not stop a download that needs no token
                token = None
        return cls(endpoint=endpoint, token=token or None, offline=offline)


@dataclass(frozen=True)
class RemoteFile:
    """What the Hub says about one file at one revision: where to fetch it and what it must hash to."""

    repo_id: str
    filename: str
    revision: str
    commit: str | None
    url: str  # the resolve URL
    location: str  # where the bytes are (the resolve URL, or a CDN URL it redirected to)
    size: int
    sha256: str | None
    sha256_source: str  # "hub" | "catalog" | "none"
    etag: str | None


def auth_headers(cfg: HubConfig) -> dict[str, str]:
    return {"authorization": f"Bearer {cfg.token}"} if cfg.token else {}


def resolve(
    mf: ModelFile, cfg: HubConfig, *, revision: str | None = None, timeout: float = 30.0
) -> RemoteFile:
    """HEAD the file's resolve URL (and the model-info API when needed). Raises :class:`HubError`.

    No retries here: the caller retries transient errors with its own policy (and can be cancelled).
    """
    if cfg.offline:
        raise HubError(
            f"Offline mode is on (HF_HUB_OFFLINE), so {mf.filename} cannot be downloaded. "
            "Unset HF_HUB_OFFLINE to download, or import a GGUF you already have."
        )
    rev = revision or mf.revision
    url = hf_hub_url(mf.repo_id, mf.filename, revision=rev, endpoint=cfg.endpoint)
    try:
        meta = get_hf_file_metadata(url, token=cfg.token or False, timeout=timeout, endpoint=cfg.endpoint)
    except Exception as exc:
        message = explain(exc, cfg, mf.repo_id, mf.filename)
        raise HubError(message, transient=is_transient(exc), unreachable=isinstance(exc, httpx2.ConnectError),
                       retry_after=retry_after_of(exc)) from exc
    if meta.size is None:
        raise HubError(f"{cfg.endpoint} did not say how large {mf.filename} is; cannot download it.")
    etag = (meta.etag or "").lower() or None
    sha, source = (etag, "hub") if etag and SHA256_RE.match(etag) else (None, "none")
    if sha is None:
        sha = _lfs_sha256(mf, rev, cfg, timeout)
        source = "hub" if sha else "none"
    if sha is None and mf.sha256 and meta.size == mf.size_bytes:
        sha, source = mf.sha256.lower(), "catalog"
    return RemoteFile(
        repo_id=mf.repo_id,
        filename=mf.filename,
        revision=rev,
        commit=meta.commit_hash,
        url=url,
        location=meta.location,
        size=meta.size,
        sha256=sha,
        sha256_source=source,
        etag=etag,
    )


def _lfs_sha256(mf: ModelFile, revision: str, cfg: HubConfig, timeout: float) -> str | None:
    """The file's LFS sha256 from the model-info API (``?blobs=true``), or None if it has none."""
    try:
        info = HfApi(endpoint=cfg.endpoint, token=cfg.token or False).model_info(
            mf.repo_id, revision=revision, files_metadata=True, timeout=timeout
        )
    except (HfHubHTTPError, httpx2.HTTPError, ValueError, KeyError):
        return None
    for sibling in info.siblings or []:
        if sibling.rfilename == mf.filename and sibling.lfs is not None:
            sha = str(sibling.lfs.sha256).lower()
            return sha if SHA256_RE.match(sha) else None
    return None


def explain(exc: BaseException, cfg: HubConfig, repo_id: str, filename: str) -> str:
    """Turn a huggingface_hub/httpx2 exception into a message that says what to do."""
    page = f"{DEFAULT_ENDPOINT}/{repo_id}"
    if isinstance(exc, OfflineModeIsEnabled):
        return f"Offline mode is on (HF_HUB_OFFLINE); {filename} cannot be downloaded."
    if isinstance(exc, GatedRepoError):
        if cfg.token:
            return (
                f"{repo_id} is a gated repository and your Hugging Face token has no access to it yet. "
                f"Accept the licence on {page} with the same account, then try again."
            )
        return (
            f"{repo_id} is a gated repository: accept its licence on {page}, then give GemmaDesk a "
            "Hugging Face token (set HF_TOKEN, or run `hf auth login`)."
        )
    if isinstance(exc, RevisionNotFoundError):
        return f"{repo_id} has no revision like the one requested ({exc.server_message or 'not found'})."
    if isinstance(exc, RemoteEntryNotFoundError):
        return f"{repo_id} has no file {filename} at that revision."
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"{repo_id} was not found on {cfg.endpoint}, or it is private and your token cannot see it."
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        if status == 401:
            return f"{cfg.endpoint} refused the Hugging Face token (HTTP 401): check HF_TOKEN or log in."
        if status == 403:
            return f"{cfg.endpoint} refused access to {repo_id}/{filename} (HTTP 403)."
        return f"{cfg.endpoint} answered HTTP {status} for {repo_id}/{filename}."
    if is_tls_failure(exc):
        return (
            f"The secure connection to {cfg.endpoint} could not be verified ({exc}). GemmaDesk keeps TLS "
            "verification on. If your network uses its own certificate authority (a company proxy), set "
            "SSL_CERT_FILE to that certificate."
        )
    if isinstance(exc, httpx2.ProxyError):
        return f"The proxy refused the connection to {cfg.endpoint}: {exc}. Check HTTPS_PROXY/ALL_PROXY."
    if isinstance(exc, httpx2.ConnectError):
        return (
            f"Cannot reach {cfg.endpoint} ({exc}). Check the network connection, a proxy (HTTPS_PROXY) "
            "or the mirror set in HF_ENDPOINT."
        )
    if isinstance(exc, httpx2.TimeoutException):
        return f"{cfg.endpoint} did not answer in time; the network may be slow or down."
    return f"Could not get {repo_id}/{filename} from {cfg.endpoint}: {exc}"


def status_of(exc: BaseException) -> int | None:
    response: Any = getattr(exc, "response", None)
    return int(response.status_code) if response is not None else None
