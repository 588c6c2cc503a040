"""Resource types: builders registered by other apps, and the typed proto message each one becomes.

A builder returns JSON-able data (see the contract in ``gateways.services``); it is converted here into the
proto message the Gateway consumes, serialized deterministically (the bytes are stored and pushed as they
are), and summarized for admin without any secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from gateway_worker.v1 import gateway_worker_pb2 as pb
from google.protobuf import json_format
from google.protobuf.message import Message

from .models import GatewayGroup, ResourceType

# A builder returns the group's full state, or None when the group has none yet (e.g. no rule set deployed to it):
# then nothing is stored and nothing is pushed for that group.
Builder = Callable[[GatewayGroup], dict[str, Any] | None]
# A validator owned by the app that understands the format (waf_config for waf_rules, config and modsecurity): it
# sees every payload of its type before it is stored, whoever built it, and returns what is wrong (empty: nothing).
Validator = Callable[[dict[str, Any]], list[str]]

# resource type -> (proto message class, ResourceUpdate oneof field)
MESSAGE_TYPES: dict[str, type[Message]] = {
    ResourceType.CERTIFICATES: pb.CertificateSet,
    ResourceType.WAF_RULES: pb.FileContent,
    ResourceType.CONFIG: pb.FileContent,
    ResourceType.ACME_CHALLENGES: pb.ChallengeSet,
    ResourceType.EMERGENCY_RULES: pb.EmergencyRuleSet,
    ResourceType.MODSECURITY: pb.FileContent,
}
RESOURCE_TYPES: frozenset[str] = frozenset(str(t) for t in MESSAGE_TYPES)

_builders: dict[str, Builder] = {}
_validators: dict[str, Validator] = {}


class InvalidResource(ValueError):
    """A builder returned data that does not fit its resource type; nothing is stored or pushed."""


def check_type(resource_type: str) -> str:
    if resource_type not in RESOURCE_TYPES:
        raise InvalidResource(f"unknown resource type {resource_type!r}; expected one of {sorted(RESOURCE_TYPES)}")
    return str(resource_type)


def register_resource(resource_type: str, builder: Builder, validator: Validator | None = None) -> None:
    """Declare how to build the full state of ``resource_type`` for one group (last registration wins), and
    optionally the validator every payload of that type must pass before it is stored or pushed."""
    _builders[check_type(resource_type)] = builder
    if validator is not None:
        _validators[resource_type] = validator


def validate(resource_type: str, data: dict[str, Any]) -> None:
    """Run the registered validator of this type; what it finds is an InvalidResource (nothing stored)."""
    validator = _validators.get(resource_type)
    if validator is None:
        return
    problems = validator(data)
    if problems:
        raise InvalidResource(f"{resource_type} refused by its validator: " + "; ".join(problems[:5]))


def registered_types() -> list[str]:
    return sorted(_builders)


def builder_for(resource_type: str) -> Builder:
    check_type(resource_type)
    try:
        return _builders[resource_type]
    except KeyError:
        raise InvalidResource(f"no builder registered for {resource_type!r} (call register_resource)") from None


def to_message(resource_type: str, data: dict[str, Any]) -> Message:
    """Builder output -> typed proto message; unknown keys or wrong types are an InvalidResource."""
    cls = MESSAGE_TYPES[check_type(resource_type)]
    if not isinstance(data, dict):
        raise InvalidResource(f"{resource_type} builder returned {type(data).__name__}, expected a dict")
    try:
        return json_format.ParseDict(data, cls(), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise InvalidResource(f"invalid {resource_type} state: {exc}") from exc


def serialize(message: Message) -> tuple[bytes, str]:
    payload = message.SerializeToString(deterministic=True)
    return payload, hashlib.sha256(payload).hexdigest()


def parse_payload(resource_type: str, payload: bytes) -> Message:
    return MESSAGE_TYPES[check_type(resource_type)].FromString(payload)


def summarize(resource_type: str, message: Message) -> dict[str, Any]:
    """What admin may show: names, domains, counts — never keys, key authorizations or file contents."""
    if isinstance(message, pb.CertificateSet):
        return {"count": len(message.certificates), "certificates": [
            {"name": c.name, "domains": list(c.domains), "temporary": c.temporary, "serial": c.serial,
             "not_after": c.not_after} for c in message.certificates[:50]]}
    if isinstance(message, pb.ChallengeSet):
        return {"count": len(message.challenges), "domains": sorted({c.domain for c in message.challenges})[:50]}
    if isinstance(message, pb.FileContent):
        return {"name": message.name, "bytes": len(message.content.encode())}
    if isinstance(message, pb.EmergencyRuleSet):
        return {"count": len(message.rules), "rules": [{"id": r.id, "kind": r.kind} for r in message.rules[:50]]}
    return {}


def update_message(resource_type: str, version: int, nonce: str, checksum: str, payload: bytes) -> pb.WorkerMessage:
    """The WorkerMessage pushed for one stored version (serialize it once per replica, not per stream)."""
    update = pb.ResourceUpdate(type=resource_type, version=version, nonce=nonce, checksum=checksum)
    getattr(update, resource_type).MergeFrom(parse_payload(resource_type, payload))
    return pb.WorkerMessage(update=update)
