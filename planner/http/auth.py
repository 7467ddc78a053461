"""Bearer authentication: a pluggable token verifier maps a token to a tenant.

Built in:

- :class:`StaticTokenVerifier`: a fixed ``token -> tenant`` table, in code or
  from ``PLANNER_API_TOKENS`` (``"token1=tenant-a,token2=tenant-b"``);
- :class:`JWTVerifier`: a JWT signed with a shared secret (HS256) or a private
  key whose public key you give (RS256, ES256 ...), via PyJWT; the tenant is a
  claim;
- :class:`AnyVerifier`: the first verifier that accepts the token wins.

A verifier is any object with ``async verify(token) -> Principal | None``.
Tokens never leave this module: :class:`Principal` holds the tenant and a
subject, and neither its ``repr`` nor an error message contains the token.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "AnyVerifier",
    "JWTVerifier",
    "Principal",
    "StaticTokenVerifier",
    "TokenVerifier",
    "parse_token_list",
    "verifier_from_env",
]


@dataclass(frozen=True)
class Principal:
    """Who made a request.

    Attributes:
        tenant: the organization the caller acts for; every execution it creates
            belongs to it, and it sees no other tenant's executions.
        subject: who the caller is within the tenant (a JWT ``sub``), if known.
    """

    tenant: str
    subject: str | None = None


@runtime_checkable
class TokenVerifier(Protocol):
    """Turns a bearer token into a :class:`Principal`, or refuses it."""

    async def verify(self, token: str) -> Principal | None:
        """Return who the token belongs to, or None when it is not valid."""
        ...


def parse_token_list(text: str) -> dict[str, str]:
    """Parse ``"token1=tenant-a,token2=tenant-b"`` into ``{token: tenant}``.

    Blank entries are skipped; whitespace around tokens and tenants is ignored.

    Raises:
        ValueError: an entry is not ``token=tenant`` (the message shows its
            position, never the token).
    """
    table: dict[str, str] = {}
    for position, entry in enumerate(text.split(","), 1):
        if not entry.strip():
            continue
        token, eq, tenant = entry.partition("=")
        if not (eq and token.strip() and tenant.strip()):
            raise ValueError(
                f"PLANNER_API_TOKENS entry {position} is not 'token=tenant' "
                "(expected comma-separated token=tenant pairs)"
            )
        table[token.strip()] = tenant.strip()
    return table


class StaticTokenVerifier:
    """Accepts a fixed set of tokens, each bound to a tenant.

    Tokens are compared in constant time.

    Args:
        tokens: ``{token: tenant}``.

    Raises:
        ValueError: a token or tenant is empty.
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        for token, tenant in tokens.items():
            if not token or not tenant:
                raise ValueError("tokens and tenants must not be empty")
        self._tokens = [(t.encode(), tenant) for t, tenant in tokens.items()]

    def __repr__(self) -> str:
        return f"StaticTokenVerifier({len(self._tokens)} token(s))"

    @classmethod
    def from_env(cls, variable: str = "PLANNER_API_TOKENS") -> StaticTokenVerifier | None:
        """Build one from an environment variable of ``token=tenant`` pairs.

        Returns:
            The verifier, or None when the variable is unset or empty.

        Raises:
            ValueError: the variable is malformed.
        """
        table = parse_token_list(os.environ.get(variable, ""))
        return cls(table) if table else None

    async def verify(self, token: str) -> Principal | None:
        """Return the token's tenant, or None for an unknown token."""
        given = token.encode()
        found: str | None = None
        for known, tenant in self._tokens:  # no early exit: same time for every token
            if hmac.compare_digest(known, given):
                found = tenant
        return Principal(tenant=found) if found is not None else None


class JWTVerifier:
    """Accepts JSON Web Tokens signed with a shared secret or a key pair (PyJWT).

    Args:
        key: the HMAC secret, or the PEM public key for RS*/ES*/PS*/EdDSA.
        algorithms: the accepted algorithms (default ``["HS256"]``); never ``none``.
        tenant_claim: the claim holding the tenant (default ``organization_id``).
        audience, issuer: when given, the token's ``aud`` / ``iss`` must match.
        leeway: seconds of clock skew allowed for ``exp`` and ``nbf``.

    Raises:
        MissingExtraError: PyJWT is not installed.
        ValueError: no algorithm, or ``none`` among them.
    """

    def __init__(
        self,
        key: str | bytes,
        *,
        algorithms: Sequence[str] = ("HS256",),
        tenant_claim: str = "organization_id",
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        try:
            import jwt
        except ImportError:  # pragma: no cover - the http extra installs it
            from planner.errors import MissingExtraError

            raise MissingExtraError("JWTVerifier", "http", "PyJWT") from None
        if not algorithms or any(a.lower() == "none" for a in algorithms):
            raise ValueError("JWTVerifier needs signing algorithms, and never 'none'")
        self._jwt = jwt
        self._key = key
        self.algorithms = list(algorithms)
        self.tenant_claim = tenant_claim
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

    def __repr__(self) -> str:
        return f"JWTVerifier(algorithms={self.algorithms}, tenant_claim={self.tenant_claim!r})"

    async def verify(self, token: str) -> Principal | None:
        """Return the tenant claim of a valid token, or None (bad signature, expired ...)."""
        try:
            claims = self._jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
            )
        except self._jwt.PyJWTError:
            return None
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            return None
        subject = claims.get("sub")
        return Principal(tenant=tenant, subject=subject if isinstance(subject, str) else None)


class AnyVerifier:
    """Tries verifiers in order; the first that accepts the token wins.

    Args:
        verifiers: the verifiers to try.
    """

    def __init__(self, verifiers: Iterable[TokenVerifier]) -> None:
        self.verifiers = list(verifiers)

    def __repr__(self) -> str:
        return f"AnyVerifier({self.verifiers!r})"

    async def verify(self, token: str) -> Principal | None:
        """Return the first verifier's principal, or None when all refuse."""
        for verifier in self.verifiers:
            principal = await verifier.verify(token)
            if principal is not None:
                return principal
        return None


def verifier_from_env(environ: Mapping[str, str] | None = None) -> TokenVerifier | None:
    """Build the verifier that ``planner serve`` uses from the environment.

    - ``PLANNER_API_TOKENS``: ``token=tenant`` pairs, comma-separated;
    - ``PLANNER_JWT_SECRET``: accept HS256 JWTs signed with this secret;
    - ``PLANNER_JWT_PUBLIC_KEY``: accept JWTs signed by this PEM key's private key
      (``PLANNER_JWT_ALGORITHMS`` lists the algorithms, default ``RS256``);
    - ``PLANNER_JWT_TENANT_CLAIM``: the tenant claim (default ``organization_id``);
    - ``PLANNER_JWT_AUDIENCE``, ``PLANNER_JWT_ISSUER``: required ``aud`` / ``iss``.

    Returns:
        The verifier (several combined with :class:`AnyVerifier`), or None when
        none is configured.

    Raises:
        ValueError: a malformed variable.
    """
    env = os.environ if environ is None else environ
    verifiers: list[TokenVerifier] = []
    table = parse_token_list(env.get("PLANNER_API_TOKENS", ""))
    if table:
        verifiers.append(StaticTokenVerifier(table))
    common: dict[str, Any] = {
        "tenant_claim": env.get("PLANNER_JWT_TENANT_CLAIM") or "organization_id",
        "audience": env.get("PLANNER_JWT_AUDIENCE") or None,
        "issuer": env.get("PLANNER_JWT_ISSUER") or None,
    }
    if env.get("PLANNER_JWT_SECRET"):
        verifiers.append(JWTVerifier(env["PLANNER_JWT_SECRET"], algorithms=["HS256"], **common))
    if env.get("PLANNER_JWT_PUBLIC_KEY"):
        algorithms = [a.strip() for a in (env.get("PLANNER_JWT_ALGORITHMS") or "RS256").split(",")]
        algorithms = [a for a in algorithms if a]
        verifiers.append(
            JWTVerifier(env["PLANNER_JWT_PUBLIC_KEY"], algorithms=algorithms, **common)
        )
    if not verifiers:
        return None
    return verifiers[0] if len(verifiers) == 1 else AnyVerifier(verifiers)


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
