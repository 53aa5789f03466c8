"""Google access tokens: the service account's signed JWT grant and the refresh-token grant."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.google_auth import JWT_GRANT, TOKEN_URL, GoogleToken, ServiceAccount
from triage.http import AuthError, make_client, send

SCOPE = "https://www.googleapis.com/auth/androidpublisher"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_json(key: rsa.RSAPrivateKey) -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "kestrel-play",
            "private_key_id": "abc123",
            "private_key": pem,
            "client_email": "triage@kestrel-play.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": TOKEN_URL,
        }
    )


def _send(client: httpx.Client):
    return lambda request: send(client, request, sleep=lambda _s: None)


@respx.mock
def test_service_account_grant_sends_a_signed_assertion_and_reuses_the_token(rsa_key):
    route = respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(200, json={"access_token": "ya29.a", "expires_in": 3599})
    )
    account = ServiceAccount.from_json(_key_json(rsa_key), where="service_account_json")
    token = GoogleToken.service_account(account, SCOPE, where="service_account_json")
    with make_client() as client:
        assert token.get(_send(client), client) == "ya29.a"
        assert token.get(_send(client), client) == "ya29.a"
    assert route.call_count == 1
    form = parse_qs(route.calls[0].request.content.decode())
    assert form["grant_type"] == [JWT_GRANT]
    claims = jwt.decode(
        form["assertion"][0], rsa_key.public_key(), algorithms=["RS256"], audience=TOKEN_URL
    )
    assert claims["iss"] == "triage@kestrel-play.iam.gserviceaccount.com"
    assert claims["scope"] == SCOPE
    assert claims["exp"] - claims["iat"] == 3600


@respx.mock
def test_refresh_token_grant_is_renewed_after_forget():
    route = respx.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json={"access_token": "t1", "expires_in": 3599}),
            httpx.Response(200, json={"access_token": "t2", "expires_in": 3599}),
        ]
    )
    token = GoogleToken.refresh_token("cid", "secret", "1//rt", where="credentials.refresh_token")
    with make_client() as client:
        assert token.get(_send(client), client) == "t1"
        token.forget()
        assert token.get(_send(client), client) == "t2"
    form = parse_qs(route.calls[0].request.content.decode())
    assert form == {
        "grant_type": ["refresh_token"],
        "client_id": ["cid"],
        "client_secret": ["secret"],
        "refresh_token": ["1//rt"],
    }


@respx.mock
def test_a_revoked_refresh_token_is_an_auth_error_naming_the_credential():
    respx.post(TOKEN_URL).mock(
        return_value=httpx.Response(
            400, json={"error": "invalid_grant", "error_description": "Token has been revoked."}
        )
    )
    token = GoogleToken.refresh_token("cid", "secret", "1//rt", where="credentials.refresh_token")
    with make_client() as client, pytest.raises(AuthError, match=r"credentials\.refresh_token"):
        token.get(_send(client), client)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not a service-account JSON key"),
        ("[]", "not an object"),
        ('{"client_email": "a@b"}', "has no private_key"),
    ],
)
def test_bad_service_account_json_says_what_is_wrong(text: str, problem: str):
    with pytest.raises(AuthError, match=problem):
        ServiceAccount.from_json(text, where="connectors[play].credentials.service_account_json")
