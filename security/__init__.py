"""Device security: keys, the device PKI (CA, certificates, CRL), envelope signing and
verification, the per-agent hash chain and the transparency log (Merkle tree, inclusion and
consistency proofs, signed tree heads). Pure code where possible; `mypy --strict`.
"""
