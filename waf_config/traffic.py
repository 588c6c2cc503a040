"""A request as the Gateway's WAF sees it (its ``RequestContext``), and the values its rules read.

Nothing in the Gateway fills the context from real traffic yet (FORMATS §a.2), so the Worker decides, and says:
``uri`` is the request target with its query string; ``query`` is parsed from it when not given (percent-decoded,
the last value of a repeated name wins, as a map would keep it); ``user_agent``, ``content_type`` and
``content_length`` come from the ``User-Agent``, ``Content-Type`` and ``Content-Length`` headers when not given.
Header names are exact-case map keys, as in the Gateway. The request body is not modelled: it is always None there.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


@dataclass(slots=True)
class Request:
    method: str = "GET"
    uri: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    client_ip: str = "127.0.0.1"
    query: dict[str, str] | None = None
    user_agent: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    timestamp: float = 0.0  # seconds; the rate limiter's clock
    label: str | None = None  # "benign" / "attack" when known, for false-positive estimates
    request_id: str | None = None

    def __post_init__(self) -> None:
        try:
            self.client_ip = str(ipaddress.ip_address(self.client_ip))  # the Gateway prints an IpAddr
        except ValueError:
            raise ValueError(f"request {self.request_id or self.uri!r}: client_ip {self.client_ip!r} is not an IP "
                             "address") from None
        if self.query is None:
            _, _, qs = self.uri.partition("?")
            self.query = dict(parse_qsl(qs.partition("#")[0], keep_blank_values=True)) if qs else {}
        if self.user_agent is None:
            self.user_agent = self.headers.get("User-Agent")
        if self.content_type is None:
            self.content_type = self.headers.get("Content-Type")
        if self.content_length is None:
            raw = self.headers.get("Content-Length")
            if raw is not None and raw.isdigit():
                self.content_length = int(raw)

    def field_value(self, name: str) -> str | None:
        """The value a YAML condition's ``field`` reads (FORMATS §a.2); None for a field the Gateway does not know."""
        if name == "uri":
            return self.uri
        if name == "method":
            return self.method
        if name == "ip":
            return self.client_ip
        if name == "user_agent":
            return self.user_agent or ""
        if name == "content_type":
            return self.content_type or ""
        if name == "content_length":
            return str(self.content_length or 0)
        if name.startswith("header."):
            return self.headers.get(name[7:], "")
        if name.startswith("query."):
            return (self.query or {}).get(name[6:], "")
        return None

    def variable_values(self, variable: str) -> list[str]:
        """The values a SecRule variable checks (FORMATS §a.4); unknown variables yield nothing."""
        if variable in ("REQUEST_URI", "REQUEST_FILENAME"):
            return [self.uri]
        if variable in ("ARGS", "ARGS_NAMES"):
            return list((self.query or {}).values())
        if variable == "REQUEST_HEADERS":
            return list(self.headers.values())
        if variable == "REQUEST_METHOD":
            return [self.method]
        if variable.startswith("REQUEST_HEADERS:"):
            value = self.headers.get(variable[16:])
            return [] if value is None else [value]
        return []  # REQUEST_BODY (always None in the Gateway), REMOTE_ADDR, TX:…, &ARGS…

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Request:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}
