"""Download once per cluster: a worker that has a model's files serves them to its peers through
its worker API (``GET /models/cache/...``, Range answered with 206, token required); a peer copies
them before asking the hub, verified against the hub's sha256; a bad or absent peer falls back to
the hub. Real Hugging Face client against the local fake Hub, real worker API over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
from conftest import GGUF_Q4, MMPROJ
from fake_hubs import HubServer

from gpustack_core.models.api import download_model
from gpustack_core.types import PeerCache
from gpustack_core.worker.api import WorkerApi, create_worker_api
from gpustack_core.worker.protocol import mint_api_token, token_sha256

MODEL = "huggingface:org/tiny-gguf#Q4_K_M"
FILES = ("org/tiny-gguf/tiny-Q4_K_M.gguf", "org/tiny-gguf/mmproj-tiny-f16.gguf")
JOIN_TOKEN = "join-token"


def _peer(cache: Path, name: str = "worker-a") -> HubServer:
    api = WorkerApi(
        worker_name=name,
        token_sha256=token_sha256(JOIN_TOKEN),
        log_path=lambda iid: cache / f"{iid}.log",
        model_cache=cache,
    )
    return HubServer(create_worker_api(api))


def _peer_cache(server: HubServer, name: str = "worker-a") -> PeerCache:
    token = mint_api_token(token_sha256(JOIN_TOKEN), name)
    return PeerCache(url=f"{server.url}/models/cache", headers={"Authorization": f"Bearer {token}"})


def test_the_second_worker_copies_from_the_first_and_the_hub_is_asked_once(
    host, hf_hub, options_for, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    state, hub = hf_hub
    cache_a, cache_b = tmp_path / "a", tmp_path / "b"
    _, first = download_model(host, MODEL, options_for(hub, cache_dir=str(cache_a)))
    assert [len(state.download_gets(f)) for f in FILES] == [1, 1]
    with _peer(cache_a) as peer:
        options = options_for(hub, cache_dir=str(cache_b), peers=(_peer_cache(peer),))
        _, second = download_model(host, MODEL, options)
    assert [len(state.download_gets(f)) for f in FILES] == [1, 1]  # the hub was not asked again
    assert [Path(p).read_bytes() for p in second.paths] == [GGUF_Q4, MMPROJ]
    assert [Path(p).relative_to(cache_b) for p in second.paths] == [
        Path(p).relative_to(cache_a) for p in first.paths
    ]


def test_a_peer_with_a_corrupt_copy_or_without_the_file_falls_back_to_the_hub(
    host, hf_hub, options_for, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    state, hub = hf_hub
    cache_a, cache_b = tmp_path / "a", tmp_path / "b"
    _, first = download_model(host, MODEL, options_for(hub, cache_dir=str(cache_a)))
    corrupt = Path(first.paths[0])
    corrupt.write_bytes(corrupt.read_bytes()[:-1] + b"\x00")  # same size, wrong sha256
    Path(first.paths[1]).unlink()  # the peer lacks this one
    with _peer(cache_a) as peer:
        options = options_for(hub, cache_dir=str(cache_b), peers=(_peer_cache(peer),))
        _, second = download_model(host, MODEL, options)
    assert [len(state.download_gets(f)) for f in FILES] == [2, 2]
    assert [Path(p).read_bytes() for p in second.paths] == [GGUF_Q4, MMPROJ]


def test_the_cache_route_wants_a_token_serves_ranges_and_never_state_or_outside_files(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "hf" / "m" / "rev" / ".gpustack" / "partial").mkdir(parents=True)
    (cache / "hf" / "m" / "rev" / "w.gguf").write_bytes(b"0123456789")
    (cache / "hf" / "m" / "rev" / ".gpustack" / "partial" / "x.partial").write_bytes(b"half")
    (tmp_path / "secret").write_text("no")
    with _peer(cache) as peer:
        auth = _peer_cache(peer).headers
        base = f"{peer.url}/models/cache"
        assert httpx.get(f"{base}/hf/m/rev/w.gguf").status_code == 401
        other = _peer_cache(peer, "worker-b").headers  # a token for another worker
        assert httpx.get(f"{base}/hf/m/rev/w.gguf", headers=other).status_code == 401
        r = httpx.get(f"{base}/hf/m/rev/w.gguf", headers={**auth, "Range": "bytes=4-"})
        assert (r.status_code, r.content) == (206, b"456789")
        for bad in ("hf/m/rev/.gpustack/partial/x.partial", "../secret", "hf/m/rev", "hf/m/rev/nope"):
            assert httpx.get(f"{base}/{bad}", headers=auth).status_code == 404, bad
