"""Token pairs at rest, as both services write them: one cipher from the key setting, one sealed form, one
grant id, and a pair stored by one service read by the other."""

from __future__ import annotations

import time

import pytest
import redis
from cryptography.fernet import Fernet, InvalidToken

from eventstore.grants import GrantStore
from eventstore.keys import KeySpace
from eventstore.tokens_at_rest import (
    REFRESH_TOKEN_SECONDS,
    TokenKeyError,
    cipher_of,
    grant_id_for,
    key_problem,
    seal,
    store_pair,
    unseal,
)
from workers.tokens import TokenStore


def test_the_first_key_seals_and_every_key_opens() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_by_old = seal(cipher_of(old), "access-1", "refresh-1")
    rotated = cipher_of(f" {new} , {old} ")
    assert unseal(rotated, sealed_by_old.encode()).access_token == "access-1"
    sealed_by_new = seal(rotated, "access-2", "refresh-2")
    assert unseal(cipher_of(new), sealed_by_new.encode()).refresh_token == "refresh-2"
    with pytest.raises(InvalidToken):
        unseal(cipher_of(old), sealed_by_new.encode())
    assert "access-2" not in sealed_by_new
    assert repr(unseal(rotated, sealed_by_new.encode())) == (
        "TokenPair(access_token=[hidden], refresh_token=[hidden])"
    )


@pytest.mark.parametrize(
    ("setting", "problem"),
    [("", "is empty"), (" , ", "is empty"), ("not-a-key-but-secret", "key #1"), ("{good},nope", "key #2")],
)
def test_a_bad_key_setting_is_named_by_position_never_echoed(setting: str, problem: str) -> None:
    setting = setting.replace("{good}", Fernet.generate_key().decode())
    message = key_problem(setting)
    assert message is not None
    assert problem in message
    assert "nope" not in message
    assert "secret" not in message
    with pytest.raises(TokenKeyError, match=problem):
        cipher_of(setting)
    assert key_problem(Fernet.generate_key().decode()) is None


def test_the_grant_id_is_the_owner_and_the_set_of_vehicles() -> None:
    assert grant_id_for(["b", "a", "a"], "u1") == grant_id_for(["a", "b"], "u1")
    assert grant_id_for(["a"], "u1") != grant_id_for(["a", "b"], "u1")
    assert grant_id_for(["a"], None).startswith("no-user:")


def test_a_pair_stored_here_is_what_the_workers_read(client: redis.Redis, keys: KeySpace) -> None:
    key = Fernet.generate_key().decode()
    now = time.time()
    grant = store_pair(
        GrantStore(client, keys),
        cipher_of(key),
        vehicle_ids=["v1", "v2", "v1"],
        access_token="access-token",
        refresh_token="refresh-token",
        expires_at=now + 7200,
        refresh_expires_at=None,
        user_id="u1",
        now=now,
    )
    assert grant == grant_id_for(["v1", "v2"], "u1")
    tokens = TokenStore(client, cipher_of(key), keys=keys)
    assert tokens.access_token("v2").token == "access-token"
    info = tokens.info(grant)
    assert info is not None
    assert info.vehicles == ["v1", "v2"]
    assert info.refresh_expires_at == pytest.approx(now + REFRESH_TOKEN_SECONDS)
    assert b"access-token" not in b"".join(client.hvals(keys.grant(grant)))  # type: ignore[arg-type] # - sync


@pytest.mark.parametrize(("vehicles", "problem"), [([], "at least one vehicle"), (["a,b"], "comma")])
def test_a_pair_needs_vehicles_with_plain_ids(
    client: redis.Redis, keys: KeySpace, vehicles: list[str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        store_pair(
            GrantStore(client, keys),
            cipher_of(Fernet.generate_key().decode()),
            vehicle_ids=vehicles,
            access_token="a",
            refresh_token="r",
            expires_at=0.0,
            refresh_expires_at=0.0,
            user_id=None,
            now=0.0,
        )
