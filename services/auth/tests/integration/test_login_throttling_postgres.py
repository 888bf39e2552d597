"""Login throttling on real PostgreSQL, through the public API: failures count per (email, client
address), a burst of guesses is counted exactly across two replicas, an unknown email is treated like a
known one, and the password is checked with no connection, no transaction and no lock held."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg2
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from auth import login as login_module
from auth.app import create_app
from auth.models import LoginFailure
from auth.passwords import Passwords
from auth.service import Security
from shopkit.testing import ServerThread, local_http

pytestmark = pytest.mark.integration

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.10"
WRONG = "not-the-password"


def _login(api: Any, email: str, password: str, address: str) -> httpx.Response:
    response: httpx.Response = api.client.post(
        "/api/auth/login", json={"email": email, "password": password}, headers={"X-Forwarded-For": address}
    )
    return response


def _failures(api: Any, email: str, address: str | None = None) -> int:
    query = select(func.count()).select_from(LoginFailure).where(LoginFailure.email == email)
    if address is not None:
        query = query.where(LoginFailure.client_address == address)
    with api.runtime.uow() as uow:
        return int(uow.session.scalar(query) or 0)


def _security(api: Any) -> Security:
    security: Security = api.client.app.state.security
    return security


def _replace_security(api: Any, **changes: Any) -> None:
    api.client.app.state.security = dataclasses.replace(_security(api), **changes)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(pg_api: Any) -> Clock:
    clock = Clock()
    _replace_security(pg_api, clock=clock)
    return clock


@pytest.fixture
def cheap_hashes(pg_api: Any) -> Any:
    """pg_api hashing with cheap argon2 parameters, for tests that log in dozens of times to see what the
    throttle does, not what a hash costs."""
    _replace_security(pg_api, passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)))
    return pg_api


@pytest.fixture
def quiet_pool(pg_api: Any) -> Any:
    """pg_api with its outbox relay (auth emits no events) and its background tasks (periodic jobs, the
    dead-letter watcher, which reads the database at start-up and every 15 s) stopped: every connection
    checked out of the pool from now on is a request's."""

    async def quiet(runtime: Any) -> None:
        await runtime.relay.stop()
        for task in runtime._tasks:
            task.cancel()
        await asyncio.gather(*runtime._tasks, return_exceptions=True)

    pg_api.client.portal.call(quiet, pg_api.runtime)
    return pg_api


def test_failures_from_another_address_never_lock_the_owner_out(pg_api: Any) -> None:
    pg_api.register("owner@example.com")
    statuses = [_login(pg_api, "owner@example.com", WRONG, ATTACKER).status_code for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3

    assert _login(pg_api, "owner@example.com", pg_api.password, OWNER).status_code == 200
    # The owner's own typos count for the owner's address alone, from zero.
    assert [_login(pg_api, "owner@example.com", WRONG, OWNER).status_code for _ in range(4)] == [401] * 4
    assert _login(pg_api, "owner@example.com", pg_api.password, OWNER).status_code == 200
    # ... and the attacker's address stays locked.
    assert _login(pg_api, "owner@example.com", pg_api.password, ATTACKER).status_code == 429


def test_the_sixth_attempt_from_the_attacking_address_is_429_even_with_the_right_password(
    pg_api: Any, clock: Clock
) -> None:
    pg_api.register("victim@example.com")
    pg_api.register("neighbour@example.com")
    for _ in range(5):
        assert _login(pg_api, "victim@example.com", WRONG, ATTACKER).status_code == 401

    locked = _login(pg_api, "victim@example.com", pg_api.password, ATTACKER)
    assert locked.status_code == 429
    assert locked.headers["content-type"] == "application/problem+json"
    assert locked.json()["status"] == 429
    assert locked.headers["Retry-After"] == "900"  # the clock stood still: the whole window
    assert _login(pg_api, " VICTIM@example.com", pg_api.password, ATTACKER).status_code == 429
    # Refused attempts are not failures: the pair's count stays at five.
    assert _failures(pg_api, "victim@example.com", ATTACKER) == 5
    # Another account from the same address is unaffected.
    assert _login(pg_api, "neighbour@example.com", pg_api.password, ATTACKER).status_code == 200


def test_a_locked_pair_opens_as_its_failures_leave_the_window(pg_api: Any, clock: Clock) -> None:
    pg_api.register("patient@example.com")
    for _ in range(5):  # one failure a minute
        assert _login(pg_api, "patient@example.com", WRONG, ATTACKER).status_code == 401
        clock.advance(minutes=1)
    locked = _login(pg_api, "patient@example.com", pg_api.password, ATTACKER)
    assert (locked.status_code, locked.headers["Retry-After"]) == (429, str(10 * 60))

    clock.advance(minutes=10, seconds=-1)  # a second before the first failure is 15 minutes old
    locked = _login(pg_api, "patient@example.com", pg_api.password, ATTACKER)
    assert (locked.status_code, locked.headers["Retry-After"]) == (429, "1")

    clock.advance(seconds=1)
    assert _login(pg_api, "patient@example.com", pg_api.password, ATTACKER).status_code == 200
    # A success starts the pair afresh: five more tries before the lock.
    assert [_login(pg_api, "patient@example.com", WRONG, ATTACKER).status_code for _ in range(6)] == [401] * 5 + [429]


def test_concurrent_failures_are_counted_exactly_across_two_replicas(
    pg_api: Any, make_settings: Any, pg_url: str
) -> None:
    pg_api.register("burst@example.com")
    first, second = "203.0.113.1", "203.0.113.2"
    body = {"email": "burst@example.com", "password": WRONG}
    with ServerThread(create_app(make_settings(database_url=pg_url))) as replica:

        def attempt(job: tuple[int, str]) -> tuple[str, int]:
            n, address = job
            headers = {"X-Forwarded-For": address}
            if n % 2:
                return address, local_http.post(
                    f"{replica.url}/api/auth/login", json=body, headers=headers, timeout=60
                ).status_code
            return address, pg_api.client.post("/api/auth/login", json=body, headers=headers).status_code

        jobs = [(n, first if n % 4 < 2 else second) for n in range(24)]
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(attempt, jobs))
    for address in (first, second):
        assert sorted(status for a, status in answers if a == address) == [401] * 5 + [429] * 7
        assert _failures(pg_api, "burst@example.com", address) == 5


def test_concurrent_right_logins_of_one_pair_all_get_in(pg_api: Any, make_settings: Any, pg_url: str) -> None:
    """Checks in flight hold the pair's tries, but none of them failed: the ones beyond five wait their
    turn instead of being told that the account is locked."""
    pg_api.register("busy-bee@example.com")
    body = {"email": "busy-bee@example.com", "password": pg_api.password}
    headers = {"X-Forwarded-For": OWNER}
    with ServerThread(create_app(make_settings(database_url=pg_url))) as replica:

        def attempt(n: int) -> int:
            if n % 2:
                return local_http.post(
                    f"{replica.url}/api/auth/login", json=body, headers=headers, timeout=60
                ).status_code
            return pg_api.client.post("/api/auth/login", json=body, headers=headers).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(attempt, range(12)))
    assert statuses == [200] * 12
    assert _failures(pg_api, "busy-bee@example.com") == 0


def test_checks_cut_short_by_a_crash_count_as_failures(pg_api: Any, clock: Clock) -> None:
    pg_api.register("crashed@example.com")
    with pg_api.runtime.uow() as uow:  # five checks begun by a replica that then died
        for _ in range(5):
            uow.session.add(
                LoginFailure(
                    email="crashed@example.com",
                    client_address=ATTACKER,
                    failed_at=clock.now - timedelta(minutes=2),
                    checking=True,
                )
            )
        uow.commit()
    locked = _login(pg_api, "crashed@example.com", pg_api.password, ATTACKER)
    assert (locked.status_code, locked.headers["Retry-After"]) == (429, str(13 * 60))
    assert _login(pg_api, "crashed@example.com", pg_api.password, OWNER).status_code == 200


def test_an_unknown_email_gets_the_same_answer_work_and_throttle(
    pg_api: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_api.register("known@example.com")
    verified: list[str] = []
    original = PasswordHasher.verify

    def counting_verify(self: PasswordHasher, stored: str | bytes, password: str | bytes) -> bool:
        verified.append(str(stored))
        return original(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    for attempt in range(6):
        known = _login(pg_api, "known@example.com", WRONG, ATTACKER)
        unknown = _login(pg_api, "nobody@example.com", WRONG, ATTACKER)
        assert known.status_code == unknown.status_code == (401 if attempt < 5 else 429)
        assert known.json() == unknown.json()
        assert _comparable_headers(known) == _comparable_headers(unknown)
    assert _failures(pg_api, "known@example.com") == _failures(pg_api, "nobody@example.com") == 5
    # One argon2 verify per unlocked attempt, with the same parameters for the decoy as for the real hash.
    assert len(verified) == 10
    assert {stored.split("$")[3] for stored in verified} == {verified[0].split("$")[3]}


def _comparable_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in {"x-request-id", "date"}}


def _advisory_locks(pg_url: str) -> int:
    with psycopg2.connect(pg_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        (count,) = cursor.fetchone()  # type: ignore[misc]
    connection.close()
    return int(count)


def _observing(api: Any, pg_url: str, seen: list[tuple[int, int]], work: Callable[..., Any]) -> Callable[..., Any]:
    def observed(*args: Any) -> Any:
        seen.append((api.runtime.db.engine.pool.checkedout(), _advisory_locks(pg_url)))
        return work(*args)

    return observed


def test_passwords_are_hashed_and_checked_with_no_connection_and_no_lock_held(
    quiet_pool: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_api = quiet_pool
    passwords = _security(pg_api).passwords
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(passwords, "hash", _observing(pg_api, pg_url, seen, passwords.hash))
    monkeypatch.setattr(passwords, "verify", _observing(pg_api, pg_url, seen, passwords.verify))
    pg_api.register("calm@example.com")
    assert _login(pg_api, "calm@example.com", WRONG, OWNER).status_code == 401
    assert _login(pg_api, "calm@example.com", pg_api.password, OWNER).status_code == 200
    assert _login(pg_api, "stranger@example.com", WRONG, OWNER).status_code == 401
    assert seen == [(0, 0)] * 4


def test_failures_elsewhere_slow_the_owner_down_a_capped_amount_holding_no_connection(
    quiet_pool: Any, cheap_hashes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_api = quiet_pool
    pg_api.register("sprayed@example.com")
    pauses: list[tuple[float, int]] = []
    in_line: list[int] = []
    queue = _security(pg_api).hashing

    async def recorded(seconds: float) -> None:
        pauses.append((seconds, pg_api.runtime.db.engine.pool.checkedout()))
        in_line.append(queue.waiting)

    monkeypatch.setattr(login_module, "slow_down", recorded)
    for n in range(7):  # one guess each from seven addresses: none of them is locked
        assert _login(pg_api, "sprayed@example.com", WRONG, f"198.51.100.{100 + n}").status_code == 401
    assert [seconds for seconds, _ in pauses] == [0.05, 0.1]  # the 6th and 7th saw 5 and 6 elsewhere
    pauses.clear()

    assert _login(pg_api, "sprayed@example.com", pg_api.password, OWNER).status_code == 200
    assert pauses == [(0.2, 0)]  # seven failures elsewhere; no connection held while it waits
    assert set(in_line) == {0}  # ... and no place in the hashing line
    pauses.clear()

    for n in range(30):
        assert _login(pg_api, "sprayed@example.com", WRONG, f"192.0.2.{n}").status_code == 401
    assert _login(pg_api, "sprayed@example.com", pg_api.password, OWNER).status_code == 200
    assert max(seconds for seconds, _ in pauses) == pauses[-1][0] == 1.0


def test_a_burst_of_logins_takes_only_a_few_of_the_pools_threads_and_connections(
    cheap_hashes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_api = cheap_hashes
    pg_api.register("crowd@example.com")
    turns = 2 * pg_api.settings.password_hash_concurrency
    inside = 0
    most = 0
    lock = threading.Lock()
    original = login_module.begin_check

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            time.sleep(0.02)  # long enough for the others to pile up, were they let in
            return original(*args, **kwargs)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(login_module, "begin_check", counted)
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(
            pool.map(
                lambda n: _login(pg_api, "crowd@example.com", pg_api.password, f"192.0.2.{n}").status_code, range(16)
            )
        )
    assert statuses == [200] * 16
    assert 1 <= most <= turns


class HeldHash:
    """Wraps a Passwords method so that its first call blocks until the test releases it."""

    def __init__(self, work: Callable[..., Any]) -> None:
        self.work = work
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.started.set()
            assert self.release.wait(60)
        return self.work(*args)


def test_saturated_hashing_answers_503_with_retry_after_at_once_and_counts_nothing(
    make_settings: Any, pg_url: str, bus_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        database_url=pg_url,
        bus_namespace=bus_namespace,
        password_hash_concurrency=1,
        password_hash_queue=1,
        password_hash_max_wait=0.3,
    )
    with TestClient(create_app(settings)) as client:
        api = _Api(client)
        api.register("queued@example.com")
        token = api.login("queued@example.com", OWNER).json()["access_token"]
        passwords = client.app.state.security.passwords  # type: ignore[attr-defined]
        held = HeldHash(passwords.verify)
        monkeypatch.setattr(passwords, "verify", held)
        queue = client.app.state.security.hashing  # type: ignore[attr-defined]
        with ThreadPoolExecutor(max_workers=2) as pool:
            holder = pool.submit(api.login, "queued@example.com", OWNER)
            assert held.started.wait(30)
            # As if no hash had been timed yet: only the line's length and the wait bound refuse.
            queue.seconds_per_hash = 0.0
            waiter = pool.submit(api.login, "queued@example.com", "203.0.113.20", WRONG)
            _wait_until(lambda: queue.waiting == 1)
            # The one place in the line is taken: refused at once.
            refused = api.login("queued@example.com", "203.0.113.30", WRONG)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["Retry-After"] == "1"
            # The waiter gives up after the wait bound.
            waited = waiter.result(timeout=30)
            assert (waited.status_code, waited.headers["Retry-After"]) == (503, "1")
            # With hashes this slow, the place in line is refused to a login that could not get a slot
            # within the bound, at once.
            queue.seconds_per_hash = 10.0
            hopeless = api.login("queued@example.com", "203.0.113.40", WRONG)
            assert (hopeless.status_code, hopeless.headers["Retry-After"]) == (503, "1")
            # Meanwhile every other auth route answers.
            assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            held.release.set()
            assert holder.result(timeout=30).status_code == 200
        # However slow hashes have been, a free slot takes a login in.
        assert queue.seconds_per_hash >= 10.0 * 0.8
        assert api.login("queued@example.com", "203.0.113.50").status_code == 200
        # Logins that were never checked do not count against their pairs.
        with client.app.state.runtime.uow() as uow:  # type: ignore[attr-defined]
            assert uow.session.scalar(select(func.count()).select_from(LoginFailure)) == 0


class _Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    def register(self, email: str) -> None:
        body = {"email": email, "password": "correct horse battery", "full_name": "Q"}
        assert self.client.post("/api/auth/register", json=body).status_code == 201

    def login(self, email: str, address: str, password: str = "correct horse battery") -> httpx.Response:
        return self.client.post(
            "/api/auth/login", json={"email": email, "password": password}, headers={"X-Forwarded-For": address}
        )


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)
