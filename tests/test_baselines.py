"""The benchmark baselines really obtain certificates from the fixture Pebble through a real nginx webroot."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.baselines import bench_domains, run_certbot, run_lego_parallel
from certificates import x509
from tests.peers.bind import BindServer
from tests.peers.pebble import Pebble


@pytest.mark.slow
def test_certbot_and_lego_baselines_issue(pebble: Pebble, bind_server: BindServer, nginx_factory,  # noqa: ANN001
                                          tmp_path: Path) -> None:
    nginx = nginx_factory(http_port=pebble.http_port)
    certbot = run_certbot(bench_domains(2, bind_server.zone, "cb"), pebble.directory_url, pebble.ca_bundle,
                          nginx.challenge_dir, tmp_path / "certbot")
    assert certbot.failures == [] and certbot.issued == 2
    assert len(certbot.per_certificate_seconds) == 2 and certbot.seconds_per_certificate > 0
    lego = run_lego_parallel(bench_domains(3, bind_server.zone, "lg"), pebble.directory_url, pebble.ca_bundle,
                             nginx.challenge_dir, tmp_path / "lego", parallel=8)
    assert lego.failures == [] and lego.issued == 3
    leaf = next(p for p in (tmp_path / "lego" / "lego").glob("slot-*/certificates/lg-*.crt")
                if not p.name.endswith(".issuer.crt")).read_text()
    x509.validate_issued_certificate(leaf, "", _key_for(leaf, tmp_path / "lego"),
                                     x509.certificate_info(leaf).domains, pebble.roots_pem())


def _key_for(leaf_pem: str, lego_root: Path) -> str:
    for key in lego_root.glob("lego/slot-*/certificates/*.key"):
        if x509.key_matches_certificate(key.read_text(), leaf_pem):
            return key.read_text()
    raise AssertionError("no lego key matches")
