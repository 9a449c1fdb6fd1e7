"""The TLS certificate chain a server sends, and what is wrong with its order.

AWS fetches an OIDC issuer's discovery document and keys over HTTPS; a chain served out of
order, or starting with a CA certificate, can make it fail with "Could not connect to openid
configuration of provider". ``gitlab-botocore doctor`` uses this to say so before AWS does.
"""

from __future__ import annotations

import socket
import ssl

__all__ = ["chain_problem", "served_chain"]

_DER = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)


def served_chain(host: str, port: int, *, timeout: float) -> list[bytes] | None:
    """The certificates ``host:port`` sends (DER, in the order sent), verified or not.

    ``None`` where Python cannot show them (before 3.10).
    """
    context = ssl.create_default_context()
    # We want to see the chain exactly as served, even if it does not verify.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = socket.create_connection((host, port), timeout=timeout)
    with context.wrap_socket(connection, server_hostname=host) as tls:
        # Public from Python 3.13; the same method exists privately from 3.10.
        getter = getattr(tls, "get_unverified_chain", None) or getattr(
            tls._sslobj,  # type: ignore[attr-defined]
            "get_unverified_chain",
            None,
        )
        if getter is None:
            return None
        certificates = getter() or []
    return [
        cert if isinstance(cert, bytes) else cert.public_bytes(_DER)  # 3.10-3.12 give objects
        for cert in certificates
    ]


def chain_problem(chain: list[bytes]) -> str | None:
    """What is wrong with a served chain (DER certificates, as sent), or ``None``."""
    try:
        from cryptography import x509
    except ImportError:
        return None
    if len(set(chain)) != len(chain):
        return "the chain contains the same certificate twice; serve each once"
    certificates = [x509.load_der_x509_certificate(der) for der in chain]
    names = [cert.subject.rfc4514_string() for cert in certificates]
    try:
        leaf_is_ca = certificates[0].extensions.get_extension_for_class(x509.BasicConstraints)
        if leaf_is_ca.value.ca:
            return (
                f"the chain starts with a CA certificate ({names[0]}), not the server's own; "
                "serve leaf, intermediate, root in that order"
            )
    except x509.ExtensionNotFound:
        pass
    for index in range(len(certificates) - 1):
        if certificates[index].issuer != certificates[index + 1].subject:
            return (
                f"certificate {index + 2} ({names[index + 1]}) did not issue certificate "
                f"{index + 1} ({names[index]}): the chain is out of order or has an extra "
                "certificate. Serve leaf, intermediate, root in that order (AWS then says "
                "'Could not connect to openid configuration of provider')"
            )
    return None
