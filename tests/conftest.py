"""Shared fixtures: throwaway Redis and Mosquitto servers on free ports (never a shared instance)."""

from __future__ import annotations

import pytest

from iopv.localservers.servers import MosquittoServer, RedisServer, local_servers


@pytest.fixture(scope="session")
def servers() -> tuple[MosquittoServer, RedisServer]:
    """One Mosquitto and one Redis for the whole session; tests isolate by unique topics/keys."""
    with local_servers() as (mosquitto, redis_server):
        yield mosquitto, redis_server


@pytest.fixture(scope="session")
def mosquitto(servers) -> MosquittoServer:
    return servers[0]


@pytest.fixture(scope="session")
def redis_server(servers) -> RedisServer:
    return servers[1]


# Markers follow the folders: tests/integration needs real servers, tests/soak is also slow.
# tests/cluster (the multi-process fault test, `make test-cluster`) needs the cluster fixtures.
_FOLDER_MARKERS = {"integration": ("integration",), "soak": ("integration", "slow"),
                   "cluster": ("integration", "cluster")}


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = item.path.parent.name
        for marker in _FOLDER_MARKERS.get(folder, ()):
            item.add_marker(marker)
