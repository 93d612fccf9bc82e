"""A DNS server on 127.0.0.1 (random UDP port) whose behaviour a test switches at will (the board double's
DnsServer with one answer for every name).

mode: "answer" (an A record for `address`, TTL `ttl`, behind a CNAME when `cname` is set), "drop" (no reply at
all: a dead or unreachable server), "nxdomain", "servfail". Queries are in `queries` as (name, time).
"""

from __future__ import annotations

from oxilink.double.dnsserver import DnsServer


class FakeDns(DnsServer):
    def __init__(self, mode: str = "answer", address: str = "127.0.0.1", ttl: int = 3600, cname: str | None = None):
        self.mode = mode
        self.address = address
        self.ttl = ttl
        self.cname = cname
        super().__init__(self._answer)

    def _answer(self, name: str) -> tuple:
        if self.mode == "drop":
            return ("silent",)
        if self.mode in ("nxdomain", "servfail"):
            return ("rcode", 3 if self.mode == "nxdomain" else 2)
        if self.cname:
            return ("cname", self.cname, self.address, self.ttl)
        return ("a", self.address, self.ttl)

    def __enter__(self) -> FakeDns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
