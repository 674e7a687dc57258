"""The CA's endpoint paths: each URL it renders is routed back to its own endpoint."""

from __future__ import annotations

from acmekit.server import paths
from acmekit.server.render import Urls

ENDPOINTS = [e for e in vars(paths).values() if isinstance(e, paths.Endpoint)]


def test_each_path_matches_its_own_endpoint_only() -> None:
    for endpoint in ENDPOINTS:
        path = endpoint.path("Ab_9-x")
        assert [e for e in ENDPOINTS if e.pattern.fullmatch(path)] == [endpoint], path


def test_the_id_is_the_match_group() -> None:
    assert paths.ORDER.pattern.fullmatch("/acme/order/o-1/finalize") is None
    match = paths.FINALIZE.pattern.fullmatch("/acme/order/o-1/finalize")
    assert match is not None and match[1] == "o-1"
    ari = paths.RENEWAL_INFO_CERT.pattern.fullmatch("/acme/renewal-info/aYh.AjE")
    assert ari is not None and ari[1] == "aYh.AjE"


def test_urls_are_the_base_and_a_path() -> None:
    urls = Urls("https://ca.test")
    assert urls.account("a1") == urls.account_prefix + "a1" == "https://ca.test/acme/acct/a1"
    assert urls.account_orders("a1") == "https://ca.test/acme/acct/a1/orders"
    assert urls.finalize("o1") == "https://ca.test/acme/order/o1/finalize"
    assert urls.resource(paths.ISSUER_CERT) == "https://ca.test/acme/issuer-cert"


def test_a_path_is_its_template_filled_in() -> None:
    """`path` joins the template's parts; it must give what `str.format` gave."""
    for endpoint in ENDPOINTS:
        template = endpoint.template
        for ident in ("", "Ab_9-x", "{}", "{0}", "a/b", "~1-2"):
            wanted = template.format(ident) if "{}" in template else template
            assert endpoint.path(ident) == wanted, (template, ident)
        assert endpoint.path() == (template.format("") if "{}" in template else template)
