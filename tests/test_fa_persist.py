"""The FA server's holders survive a restart (``[store] path``, mcacm_sip/store/fa.py).

Real loopback SIP: a bare endpoint PUBLISHes to a :class:`FaServerNode` as the FA user and
resolves the FA by SUBSCRIBE as the trusted ACMS; the node is stopped and a new one started on
the same file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mcacm_sip.acm import fa
from mcacm_sip.acm.fa import CT_PIDF, EVENT_PRESENCE, EXPIRES_UNTIL_WITHDRAWN
from mcacm_sip.cli.main import EX_CONFIG, main
from mcacm_sip.core.config import ConfigError
from mcacm_sip.core.fa_server import FaConfig, FaServerConfig
from mcacm_sip.runtime.base import Hops, SipSettings
from mcacm_sip.runtime.config import FaServerNodeConfig, parse_fa_server_node
from mcacm_sip.runtime.fa_server import FaServerNode
from mcacm_sip.runtime.lab import LOOPBACK
from mcacm_sip.sip.aio import Listen, SipEndpoint
from mcacm_sip.sip.aio.usages import SubscriberService
from mcacm_sip.sip.dialog import Body

D = "partner.example"
FA = f"sip:duty@{D}"
PSI = f"sip:fa@{D}"
ACMS = f"sip:acms@{D}"
DAVE, ERIN = f"sip:dave@{D}", f"sip:erin@{D}"
WAIT = 10.0  # upper bound only; loopback exchanges take milliseconds


def config(store: Path | str | None) -> FaServerNodeConfig:
    """``store``: an SQLite file, a postgresql:// URL, or None (memory)."""
    aliases = (FaConfig(FA, frozenset({DAVE, ERIN})),)
    url = store if isinstance(store, str) else None
    return FaServerNodeConfig(PSI, FaServerConfig(aliases, frozenset({ACMS})),
                              SipSettings(trusted_hosts=LOOPBACK),
                              store_path=str(store) if isinstance(store, Path) else None,
                              store_url=url)


@asynccontextmanager
async def running(store: Path | str | None) -> AsyncIterator[tuple[FaServerNode, Client]]:
    node = FaServerNode(config(store))
    await node.start()
    client = Client(node)
    await client.start()
    try:
        yield node, client
    finally:
        await client.close()
        await node.stop()


class Client:
    """A user publishing its FA status and an ACMS resolving the FA, on one bare endpoint."""

    def __init__(self, node: FaServerNode) -> None:
        self.endpoint = SipEndpoint([Listen("udp", "127.0.0.1", 0)],
                                    locate=Hops({"*": node.hop("udp")}).peer_for)
        self.subscriber = SubscriberService(self.endpoint)

    async def start(self) -> None:
        await self.endpoint.start()
        self.subscriber.start()

    async def close(self) -> None:
        await self.subscriber.close()
        await self.endpoint.close()

    async def publish(self, user: str, active: bool) -> int:
        # 24.379 9A.2.2.2.6: what an MCPTT client (AcmcNode.set_functional_alias) sends
        content_type, body = fa.publish_body(FA, user)
        request = self.endpoint.new_request(
            "PUBLISH", FA, from_uri=user, to_uri=FA, body=body, content_type=content_type,
            headers=(("Event", EVENT_PRESENCE),
                     ("Expires", str(EXPIRES_UNTIL_WITHDRAWN if active else 0))))
        return (await self.endpoint.send(request, timeout=WAIT)).status

    async def holders(self) -> tuple[str | None, ...]:
        """Who holds FA, from the first NOTIFY of a resolution SUBSCRIBE (9A.2.2.3.8)."""
        content_type, body = fa.resolution_subscribe_body(FA)
        handle = await self.subscriber.subscribe(
            FA, event=EVENT_PRESENCE, from_uri=ACMS, accept=(CT_PIDF,),
            expires=EXPIRES_UNTIL_WITHDRAWN, body=Body(content_type, body))
        note = await handle.next(WAIT)
        assert note is not None and note.content_type == CT_PIDF
        return tuple(e.user for e in fa.decode_presence(note.body).entries)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_holders_survive_restarts(tmp_path: Path, engine: str,
                                  request: pytest.FixtureRequest) -> None:
    store: Path | str = tmp_path / "fa.sqlite"
    if engine == "postgres":  # a standby on another machine continues from the database
        store = request.getfixturevalue("pg_url")

    async def scenario() -> None:
        async with running(store) as (_, client):
            assert await client.publish(ERIN, True) == 200
            assert await client.publish(DAVE, True) == 200
            assert await client.holders() == (ERIN, DAVE)
        async with running(store) as (node, client):  # a new process on the same file
            assert await client.holders() == (ERIN, DAVE)  # activation order kept
            assert await client.publish(ERIN, False) == 200  # deactivation (9A.2.2.3.3 step 11)
            assert node.server.holders(FA) == (DAVE,)
        async with running(store) as (_, client):
            assert await client.holders() == (DAVE,)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_without_a_store_holders_are_forgotten(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(None) as (_, client):
            assert await client.publish(DAVE, True) == 200
            assert await client.holders() == (DAVE,)
        async with running(None) as (_, client):
            assert await client.holders() == ()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_store_that_cannot_commit_refuses_and_fails_the_node(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path / "fa.sqlite") as (node, client):
            assert node.store is not None and node.failed is not None
            node.store.close()  # every later commit fails
            assert await client.publish(DAVE, True) == 500  # never a 200 for an unsaved change
            assert node.failed.done() and "store failed" in node.failed.result()
            assert await client.publish(ERIN, True) == 503  # memory may be ahead of the file
        async with running(tmp_path / "fa.sqlite") as (_, client):
            assert await client.holders() == ()

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.parametrize("kind", ["corrupt", "directory", "no-directory"])
def test_unusable_store_is_a_config_error(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "fa.sqlite"
    if kind == "corrupt":
        store.write_bytes(b"this is not an SQLite database, " * 64)
    elif kind == "directory":
        store.mkdir()
    else:
        store = tmp_path / "missing" / "fa.sqlite"
    with pytest.raises(ConfigError) as exc:
        FaServerNode(config(store))
    assert exc.value.key == "store.path" and str(store) in str(exc.value)


def test_an_unreachable_postgresql_is_a_config_error(tmp_path: Path) -> None:
    url = f"postgresql:///fa?host={tmp_path}&user=nobody"  # no server on that socket
    with pytest.raises(ConfigError) as exc:
        FaServerNode(config(url))
    assert exc.value.key == "store.url" and "cannot connect" in str(exc.value)


def test_cli_exits_78_on_a_corrupt_store(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fa.sqlite").write_bytes(b"garbage " * 512)
    path = tmp_path / "fa-server.toml"
    path.write_text(f'psi = "{PSI}"\n[store]\npath = "fa.sqlite"\n'
                    f'[sip]\ntrusted_hosts = ["127.0.0.1"]\n'
                    f'[[aliases]]\nuri = "{FA}"\nusers = ["{DAVE}"]\n')
    assert main(["fa-server", "--config", str(path)]) == EX_CONFIG
    assert "store.path" in capsys.readouterr().err


def test_store_path_config(tmp_path: Path) -> None:
    base = {"psi": PSI, "aliases": [{"uri": FA}]}
    assert parse_fa_server_node(base, tmp_path).store_path is None
    parsed = parse_fa_server_node({**base, "store": {"path": "fa.sqlite"}}, tmp_path)
    assert parsed.store_path == str(tmp_path / "fa.sqlite")  # relative to the config file
    url = "postgresql://fa@db.example/fa"
    assert parse_fa_server_node({**base, "store": {"url": url}}, tmp_path).store_url == url
    for bad in ({"path": 3}, {"path": ""}, {"file": "x"}, {"url": "mysql://x"},
                {"url": url, "path": "fa.sqlite"}):
        with pytest.raises(ConfigError) as exc:
            parse_fa_server_node({**base, "store": bad}, tmp_path)
        assert exc.value.key.startswith("store.")
