"""Every sample image through every transport: read → write → read gives the same index.

The real services (loopback registries with and without auth, dockerd,
Podman) are started by ``.ci/services.sh``; a missing one fails the test.
"""

from __future__ import annotations

import subprocess

import pytest

from samples import SAMPLES
from trimcage.image.api import read_image, write_image
from trimcage.image.flatten import flatten
from trimcage.image.interface import TransportOptions

pytestmark = [pytest.mark.samples, pytest.mark.slow]

FILE_TRANSPORTS = ("oci-archive", "docker-archive", "oci")


def _same_index(a, b):
    assert list(a) == list(b)
    diffs = [p for p in a if a[p].to_json() != b[p].to_json()]
    assert not diffs, f"{len(diffs)} entries differ, e.g. {diffs[:3]}"


@pytest.mark.parametrize("name", SAMPLES)
def test_file_transports_round_trip(sample, store, tmp_path, name):
    s = sample(name)
    original = read_image(f"oci-archive:{s.path}", store)
    want = flatten(original, store)
    for transport in FILE_TRANSPORTS:
        dest = tmp_path / f"{name}.{transport}"
        ref = f"{transport}:{dest}:{'v1' if transport != 'docker-archive' else f'trimcage/{name}:v1'}"
        write_image(ref, original, store)
        back = read_image(ref, store)
        assert back.diff_ids == original.diff_ids
        _same_index(want, flatten(back, store))


@pytest.mark.registry
@pytest.mark.parametrize("name", SAMPLES)
def test_registry_round_trip_with_and_without_auth(sample, store, tmp_path, registry_anon, registry_auth,
                                                   unique, name):
    s = sample(name)
    original = read_image(f"oci-archive:{s.path}", store)
    want = flatten(original, store)
    for reg in (registry_anon, registry_auth):
        opts = TransportOptions(creds=reg.creds)
        ref = f"docker://{reg.host}/trimcage-test/{name}-{unique}:v1"
        digest = write_image(ref, original, store, opts)
        fresh = type(store)(tmp_path / f"store-{reg.host.split(':')[1]}")
        back = read_image(ref, fresh, opts)
        assert back.manifest_digest == digest
        _same_index(want, flatten(back, fresh))


@pytest.mark.docker
@pytest.mark.podman
@pytest.mark.parametrize("name", SAMPLES)
def test_engine_round_trip(sample, store, tmp_path, docker_daemon, podman, unique, name):
    s = sample(name)
    original = read_image(f"oci-archive:{s.path}", store)
    want = flatten(original, store)
    tag = f"localhost/trimcage-test/{name}-{unique}:v1"
    try:
        for transport in ("docker-daemon", "containers-storage"):
            write_image(f"{transport}:{tag}", original, store)
            fresh = type(store)(tmp_path / f"store-{transport}")
            back = read_image(f"{transport}:{tag}", fresh)
            _same_index(want, flatten(back, fresh))
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True)
