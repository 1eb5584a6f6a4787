"""Registry authentication: anonymous, HTTP Basic and the Docker bearer-token flow.

The flow is the one every registry client follows (distribution's
``docs/spec/auth/token.md``): a request answered ``401`` carries a
``WWW-Authenticate`` challenge; ``Basic`` is answered with the user's
credentials, ``Bearer realm=...,service=...,scope=...`` with a token fetched
from ``realm`` (sending the credentials, if any, as Basic auth). The request
is then retried once with the new ``Authorization`` header.

Credentials come from ``--creds USER:PASS`` first, then from ``--authfile``
(a Docker ``config.json``: ``{"auths": {"HOST": {"auth": base64("USER:PASS")}}}``).
Without either, requests are anonymous.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from trimcage.image.interface import TransportError, TransportOptions

# Docker Hub is keyed by this URL in config.json, whatever host the API uses.
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class AuthError(TransportError):
    """Credentials are malformed, missing where required, or refused."""


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: ``scheme`` lower-cased, params as given."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*,?')
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into challenges, in order.

    ``Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"``
    gives one ``Challenge("bearer", {...})``. Unparseable tails are ignored;
    an empty or garbage header gives ``[]``.
    """
    out: list[Challenge] = []
    pos = 0
    text = header or ""
    while pos < len(text):
        while pos < len(text) and text[pos] in " ,":
            pos += 1
        m = _SCHEME.match(text, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while True:
            pm = _PARAM.match(text, pos)
            if not pm:
                break
            # A "token=" directly after a scheme-like word belongs to the next challenge only
            # if it has no "="; _PARAM requires "=", so this is a parameter of this challenge.
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = pm.end()
        out.append(Challenge(scheme, params))
    return out


def _split_creds(creds: str, source: str) -> tuple[str, str]:
    user, sep, password = creds.partition(":")
    if not sep or not user:
        raise AuthError(f"{source}: credentials must be USER:PASS")
    return user, password


def _authfile_key_host(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``; ``host`` -> ``host``."""
    k = re.sub(r"^[a-z]+://", "", key.strip())
    return k.split("/", 1)[0].lower()


def credentials_from_authfile(path: str, host: str) -> tuple[str, str] | None:
    """Look ``host`` up in a Docker ``config.json``; None if it has no entry.

    Keys may be bare hosts or URLs (``https://index.docker.io/v1/``); Docker
    Hub hosts all match each other. Raise ``AuthError`` naming the file if it
    cannot be read or an entry is malformed.
    """
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(1 << 20))
    except (OSError, ValueError) as e:
        raise AuthError(f"authfile {path}: cannot read: {e}") from e
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    want = {host.lower()} | (set(DOCKER_HUB_HOSTS) if host.lower() in DOCKER_HUB_HOSTS else set())
    for key, entry in auths.items():
        if not isinstance(key, str) or _authfile_key_host(key) not in want:
            continue
        if not isinstance(entry, dict):
            raise AuthError(f"authfile {path}: entry {key!r} is not an object")
        if entry.get("auth"):
            try:
                raw = base64.b64decode(str(entry["auth"]), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as e:
                raise AuthError(f"authfile {path}: entry {key!r}: 'auth' is not base64 of USER:PASS") from e
            return _split_creds(raw, f"authfile {path}: entry {key!r}")
        if entry.get("username"):
            return str(entry["username"]), str(entry.get("password", ""))
    return None


def resolve_credentials(host: str, opts: TransportOptions) -> tuple[str, str] | None:
    """The credentials to use for ``host``: ``opts.creds``, else ``opts.authfile``, else None."""
    if opts.creds:
        return _split_creds(opts.creds, "--creds")
    if opts.authfile:
        return credentials_from_authfile(opts.authfile, host)
    return None


class RegistryAuth:
    """Per-registry authorization state: remembers tokens per scope and Basic auth.

    ``headers(scope)`` gives the headers for a request needing ``scope``
    (``repository:NAME:pull`` or ``...:pull,push``); after a 401,
    ``on_unauthorized(response, scope)`` fetches new authorization and returns
    True if retrying makes sense, False if there is nothing new to try.
    """

    def __init__(self, session: Any, where: str, creds: tuple[str, str] | None, *, timeout: Any = (10, 60),
                 verify: bool = True):
        self.session = session
        self.where = where
        self.creds = creds
        self.timeout = timeout
        self.verify = verify
        self._basic = False
        self._tokens: dict[str, str] = {}

    def headers(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self.creds:
            raw = f"{self.creds[0]}:{self.creds[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def on_unauthorized(self, response: Any, scope: str) -> bool:
        """Handle a 401: obtain a token or switch to Basic; False if no new attempt is possible."""
        challenges = parse_www_authenticate(response.headers.get("WWW-Authenticate", ""))
        for ch in challenges:
            if ch.scheme == "bearer" and ch.params.get("realm"):
                # A token we hold that lacks access will not gain it by asking again; an
                # expired or invalid one is replaced (callers bound the number of retries).
                if scope in self._tokens and ch.params.get("error") == "insufficient_scope":
                    return False
                self._tokens[scope] = self._fetch_token(ch, scope)
                return True
        for ch in challenges:
            if ch.scheme == "basic":
                if self._basic or not self.creds:
                    return False
                self._basic = True
                return True
        return False

    def _fetch_token(self, ch: Challenge, scope: str) -> str:
        import requests

        realm = ch.params["realm"]
        params: dict[str, str] = {}
        if ch.params.get("service"):
            params["service"] = ch.params["service"]
        params["scope"] = scope
        auth = self.creds if self.creds else None
        try:
            r = self.session.get(realm, params=params, auth=auth, timeout=self.timeout, verify=self.verify)
        except requests.RequestException as e:
            raise AuthError(f"{self.where}: token server {realm}: {e}") from e
        if r.status_code in (401, 403):
            raise AuthError(f"{self.where}: token server {realm} refused the credentials for {scope} "
                            f"(HTTP {r.status_code})")
        if r.status_code != 200:
            raise AuthError(f"{self.where}: token server {realm}: HTTP {r.status_code} for {scope}")
        try:
            doc = r.json()
        except ValueError as e:
            raise AuthError(f"{self.where}: token server {realm} did not answer JSON") from e
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"{self.where}: token server {realm} answered without a token")
        return token
