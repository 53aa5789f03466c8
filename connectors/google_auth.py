"""Google OAuth 2.0 access tokens: a service account's signed JWT grant, or a refresh token.

Google Play (service account) and Google Business Profile and YouTube replies (a user's refresh
token) trade these for a one-hour access token at https://oauth2.googleapis.com/token. A token
is reused until a minute before it expires.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from triage.clock import utcnow
from triage.http import AuthError, PayloadError

TOKEN_URL = "https://oauth2.googleapis.com/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Renew this many seconds before the token's stated expiry.
EARLY_RENEWAL = 60.0


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The fields of a service-account key file that the JWT grant needs."""

    client_email: str
    private_key: str
    token_uri: str = TOKEN_URL

    @classmethod
    def from_json(cls, text: str, *, where: str) -> ServiceAccount:
        """Parse a key file's JSON; `where` names the credential in error messages."""
        try:
            info = json.loads(text)
        except ValueError as exc:
            raise AuthError(f"{where}: not a service-account JSON key ({exc})") from exc
        if not isinstance(info, Mapping):
            raise AuthError(f"{where}: not a service-account JSON key (not an object)")
        missing = [key for key in ("client_email", "private_key") if not info.get(key)]
        if missing:
            raise AuthError(f"{where}: the JSON key has no {', '.join(missing)}")
        return cls(
            client_email=str(info["client_email"]),
            private_key=str(info["private_key"]),
            token_uri=str(info.get("token_uri") or TOKEN_URL),
        )

    def assertion(self, scope: str) -> str:
        """The RS256-signed JWT that asks for `scope`, valid for an hour."""
        now = int(utcnow().timestamp())
        claims = {
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        }
        try:
            return jwt.encode(claims, self.private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise AuthError(f"the service account's private_key cannot sign ({exc})") from exc


class GoogleToken:
    """A cached access token, fetched with `grant` (a form body) when missing or expiring."""

    def __init__(
        self,
        grant: Callable[[], Mapping[str, str]],
        *,
        token_url: str = TOKEN_URL,
        where: str,
    ):
        self._grant = grant
        self._token_url = token_url
        self._where = where
        self._token: str | None = None
        self._expires_at = 0.0

    @classmethod
    def service_account(cls, account: ServiceAccount, scope: str, *, where: str) -> GoogleToken:
        return cls(
            lambda: {"grant_type": JWT_GRANT, "assertion": account.assertion(scope)},
            token_url=account.token_uri,
            where=where,
        )

    @classmethod
    def refresh_token(
        cls, client_id: str, client_secret: str, refresh_token: str, *, where: str
    ) -> GoogleToken:
        return cls(
            lambda: {
                "grant_type": "refresh_token",
                "client_id": client_id,
                "client_secret": client_secret,
                "refresh_token": refresh_token,
            },
            where=where,
        )

    def get(self, send: Callable[[httpx.Request], httpx.Response], client: httpx.Client) -> str:
        """A valid access token, asking Google for a new one when needed."""
        if self._token and utcnow().timestamp() < self._expires_at:
            return self._token
        request = client.build_request("POST", self._token_url, data=dict(self._grant()))
        try:
            response = send(request)
        except AuthError as exc:
            raise AuthError(
                f"{exc}; Google refused {self._where}: check that it is current and allowed "
                "the scope this connector needs",
                status=exc.status,
                body=exc.body,
            ) from exc
        except Exception as exc:
            # Google answers a bad grant with 400 invalid_grant, which is a credentials fault.
            body = getattr(exc, "body", None) or ""
            if getattr(exc, "status", None) == 400 and "invalid_grant" in body:
                raise AuthError(
                    f"{exc}; Google refused {self._where} (invalid_grant: revoked, expired or "
                    "for another client)",
                    status=400,
                    body=body,
                ) from exc
            raise
        token = _json(response).get("access_token")
        if not isinstance(token, str) or not token:
            raise PayloadError(f"{self._token_url} returned no access_token")
        lifetime = _json(response).get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        self._token = token
        self._expires_at = utcnow().timestamp() + max(0.0, seconds - EARLY_RENEWAL)
        return token

    def forget(self) -> None:
        """Drop the cached token (after the API refused it)."""
        self._token = None
        self._expires_at = 0.0


class GoogleCaller:
    """Calls a Google API as one identity; a refused (401) token is renewed and sent once more.

    A 401 means Google did nothing, so the second try is safe even for a reply.
    """

    def __init__(
        self,
        token: GoogleToken,
        client: httpx.Client,
        send: Callable[..., httpx.Response],
    ):
        self.token = token
        self._client = client
        self._send = send  # Connector.send_plain: (request, *, idempotent) -> response

    @classmethod
    def with_refresh_token(cls, connector: Any) -> GoogleCaller:
        """A caller as the Google account whose refresh token a connector is configured with."""
        credentials = connector.credentials
        token = GoogleToken.refresh_token(
            credentials["client_id"],
            credentials["client_secret"],
            credentials["refresh_token"],
            where=f"connectors[{connector.name}].credentials.refresh_token",
        )
        return cls(token, connector.client, connector.send_plain)

    def call(self, method: str, url: str, *, once: bool = False, **kwargs: Any) -> httpx.Response:
        """Send `method url` with a bearer token; `once` for requests that must not repeat."""
        extra = kwargs.pop("headers", None) or {}
        for attempt in (1, 2):
            access = self.token.get(self._send, self._client)
            headers = {**extra, "Authorization": f"Bearer {access}"}
            request = self._client.build_request(method, url, headers=headers, **kwargs)
            try:
                return self._send(request, idempotent=not once)
            except AuthError as exc:
                if exc.status != 401 or attempt == 2:
                    raise
                self.token.forget()
        raise AuthError(f"Google refused a fresh access token for {url}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise PayloadError(f"{response.url} did not return JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise PayloadError(f"{response.url} returned a {type(body).__name__}, not an object")
    return body
