"""What the API hands an auditor verifies with nothing but security.merkle, the log's public
key and the envelope bytes; and the export bundle holds everything needed to do so offline."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from security.merkle import leaf_hash, verify_consistency, verify_inclusion
from security.tree_head import SignedTreeHead, TreeHead, verify_tree_head
from tests.integration.api.conftest import auth
from tests.integration.api.seed import Seed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def aud(seeded: Seed) -> dict[str, str]:
    return auth(seeded.tokens["auditor"])


def sth(h: dict[str, Any]) -> SignedTreeHead:
    head = TreeHead(h["tree_size"], h["timestamp_ms"], bytes.fromhex(h["root_hash"]))
    assert head.to_be_signed().hex() == h["signed_bytes"]
    return SignedTreeHead(head, bytes.fromhex(h["key_id"]), bytes.fromhex(h["signature"]))


def test_tree_heads_are_signed_by_the_log_key(
    client: httpx.Client, seeded: Seed, aud: dict[str, str]
) -> None:
    latest = client.get("/v1/audit/log/tree-head", headers=aud).json()
    assert latest["tree_size"] == seeded.heads[-1]
    assert verify_tree_head(sth(latest), seeded.log_key.public_key())
    forged = {**latest, "tree_size": latest["tree_size"] + 1}
    forged["signed_bytes"] = (
        TreeHead(forged["tree_size"], forged["timestamp_ms"], bytes.fromhex(forged["root_hash"]))
        .to_be_signed()
        .hex()
    )
    assert not verify_tree_head(sth(forged), seeded.log_key.public_key())
    heads = client.get("/v1/audit/log/tree-heads", headers=aud).json()["items"]
    assert [h["tree_size"] for h in heads] == seeded.heads


@pytest.mark.parametrize("seq", [1, 2, 3, 4, 5, 8])
def test_inclusion_proofs_verify(client: httpx.Client, seeded: Seed, aud: dict[str, str], seq: int) -> None:
    p = client.get(f"/v1/audit/envelopes/{seeded.agent_id}/{seq}/inclusion", headers=aud).json()
    head = sth(p["tree_head"])
    assert verify_tree_head(head, seeded.log_key.public_key())
    leaf = leaf_hash(seeded.envelopes[seq])
    assert p["leaf_hash"] == leaf.hex()
    path = [bytes.fromhex(x) for x in p["audit_path"]]
    assert verify_inclusion(p["leaf_index"], p["tree_size"], leaf, path, head.head.root_hash)
    tampered = seeded.envelopes[seq][:-1] + bytes([seeded.envelopes[seq][-1] ^ 1])  # always differs
    assert not verify_inclusion(
        p["leaf_index"], p["tree_size"], leaf_hash(tampered), path, head.head.root_hash
    )


def test_inclusion_in_an_older_head_and_refusals(
    client: httpx.Client, seeded: Seed, aud: dict[str, str]
) -> None:
    url = f"/v1/audit/envelopes/{seeded.agent_id}"
    old = client.get(f"{url}/2/inclusion", params={"tree_size": seeded.heads[0]}, headers=aud).json()
    assert old["tree_size"] == seeded.heads[0]
    assert verify_inclusion(
        old["leaf_index"],
        old["tree_size"],
        leaf_hash(seeded.envelopes[2]),
        [bytes.fromhex(x) for x in old["audit_path"]],
        bytes.fromhex(old["tree_head"]["root_hash"]),
    )
    # seq 8 was logged after the first head; seq 10 is not logged at all; 3 is not a signed size
    assert (
        client.get(f"{url}/8/inclusion", params={"tree_size": seeded.heads[0]}, headers=aud).status_code
        == 409
    )
    res = client.get(f"{url}/10/inclusion", headers=aud)
    assert res.status_code == 409 and res.headers["retry-after"]
    assert client.get(f"{url}/2/inclusion", params={"tree_size": 3}, headers=aud).status_code == 404
    assert client.get(f"{url}/6/inclusion", headers=aud).status_code == 404


def test_consistency_between_heads(client: httpx.Client, seeded: Seed, aud: dict[str, str]) -> None:
    first, second = seeded.heads
    c = client.get("/v1/audit/log/consistency", params={"first": first, "second": second}, headers=aud).json()
    old, new = sth(c["first"]), sth(c["second"])
    proof = [bytes.fromhex(x) for x in c["proof"]]
    assert verify_consistency(first, second, old.head.root_hash, new.head.root_hash, proof)
    assert not verify_consistency(first, second, new.head.root_hash, old.head.root_hash, proof)
    same = client.get("/v1/audit/log/consistency", params={"first": second}, headers=aud).json()
    assert same["proof"] == []
    bad = client.get("/v1/audit/log/consistency", params={"first": second, "second": first}, headers=aud)
    assert bad.status_code == 422
    assert client.get("/v1/audit/log/consistency", params={"first": 4}, headers=aud).status_code == 404


def _check_bundle(b: dict[str, Any], seeded: Seed) -> None:
    assert b["format"] == "wattrail-audit-bundle" and b["version"] == 1
    log_pub = load_pem_public_key(b["log_public_key_pem"].encode())
    head = sth(b["tree_head"])
    assert verify_tree_head(head, log_pub)  # type: ignore[arg-type]
    assert [e["seq"] for e in b["envelopes"]] == sorted(seeded.envelopes)
    assert b["chain_gaps"] == [{"from_seq": 6, "to_seq": 7}, {"from_seq": 9, "to_seq": 9}]
    proved = 0
    for e in b["envelopes"]:
        raw = base64.b64decode(e["raw_base64"])
        assert raw == seeded.envelopes[e["seq"]]
        if e["inclusion_proof"] is None:
            assert e["seq"] == 10  # stored after the latest head
            continue
        assert verify_inclusion(
            e["log_index"],
            head.head.tree_size,
            leaf_hash(raw),
            [bytes.fromhex(x) for x in e["inclusion_proof"]],
            head.head.root_hash,
        )
        proved += 1
    assert proved == 6
    [earlier] = b["earlier_heads"]
    old = sth(earlier["tree_head"])
    assert verify_tree_head(old, log_pub)  # type: ignore[arg-type]
    assert verify_consistency(
        old.head.tree_size,
        head.head.tree_size,
        old.head.root_hash,
        head.head.root_hash,
        [bytes.fromhex(x) for x in earlier["consistency_to_latest"]],
    )
    ca = x509.load_pem_x509_certificate(b["ca_certificate_pem"].encode())
    [key] = b["key_certificates"]
    cert = x509.load_pem_x509_certificate(key["certificate_pem"].encode())
    cert.verify_directly_issued_by(ca)


def test_export_bundle_json_and_zip(client: httpx.Client, seeded: Seed, aud: dict[str, str]) -> None:
    params = {"agent_id": seeded.agent_id, "start": seeded.start.isoformat(), "end": seeded.end.isoformat()}
    res = client.get("/v1/audit/export", params=params, headers=aud)
    assert res.status_code == 200 and "attachment" in res.headers["content-disposition"]
    _check_bundle(res.json(), seeded)
    z = client.get("/v1/audit/export", params={**params, "format": "zip"}, headers=aud)
    assert z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        _check_bundle(json.loads(zf.read("bundle.json")), seeded)
        for seq, raw in seeded.envelopes.items():
            assert zf.read(f"envelopes/{seq:020d}.cose") == raw


def test_export_limits(client: httpx.Client, seeded: Seed, aud: dict[str, str]) -> None:
    params = {"agent_id": seeded.agent_id, "start": seeded.start.isoformat(), "end": seeded.end.isoformat()}
    assert (
        client.get("/v1/audit/export", params={**params, "agent_id": "nobody"}, headers=aud).status_code
        == 404
    )
    long = {**params, "start": "2000-01-01T00:00:00Z"}
    res = client.get("/v1/audit/export", params=long, headers=aud)
    assert res.status_code == 422 and "at most" in res.json()["detail"]
