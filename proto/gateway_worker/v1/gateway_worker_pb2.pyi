from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GatewayMessage(_message.Message):
    __slots__ = ("hello", "ack", "nack", "logs", "security_events")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    SECURITY_EVENTS_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    ack: Ack
    nack: Nack
    logs: LogBatch
    security_events: SecurityEventBatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., nack: _Optional[_Union[Nack, _Mapping]] = ..., logs: _Optional[_Union[LogBatch, _Mapping]] = ..., security_events: _Optional[_Union[SecurityEventBatch, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("instance_id", "group", "agent_version", "known_versions")
    class KnownVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    KNOWN_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    group: str
    agent_version: str
    known_versions: _containers.ScalarMap[str, int]
    def __init__(self, instance_id: _Optional[str] = ..., group: _Optional[str] = ..., agent_version: _Optional[str] = ..., known_versions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("type", "version", "nonce")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    type: str
    version: int
    nonce: str
    def __init__(self, type: _Optional[str] = ..., version: _Optional[int] = ..., nonce: _Optional[str] = ...) -> None: ...

class Nack(_message.Message):
    __slots__ = ("type", "version", "nonce", "error")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    type: str
    version: int
    nonce: str
    error: str
    def __init__(self, type: _Optional[str] = ..., version: _Optional[int] = ..., nonce: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("timestamp_ms", "level", "message", "client_ip", "host", "method", "path", "status_code", "response_time_ms", "bytes_sent", "bytes_received", "user_agent", "request_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    timestamp_ms: int
    level: str
    message: str
    client_ip: str
    host: str
    method: str
    path: str
    status_code: int
    response_time_ms: int
    bytes_sent: int
    bytes_received: int
    user_agent: str
    request_id: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, timestamp_ms: _Optional[int] = ..., level: _Optional[str] = ..., message: _Optional[str] = ..., client_ip: _Optional[str] = ..., host: _Optional[str] = ..., method: _Optional[str] = ..., path: _Optional[str] = ..., status_code: _Optional[int] = ..., response_time_ms: _Optional[int] = ..., bytes_sent: _Optional[int] = ..., bytes_received: _Optional[int] = ..., user_agent: _Optional[str] = ..., request_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("entries", "source", "offset_start", "offset_end")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_START_FIELD_NUMBER: _ClassVar[int]
    OFFSET_END_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    source: str
    offset_start: int
    offset_end: int
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., source: _Optional[str] = ..., offset_start: _Optional[int] = ..., offset_end: _Optional[int] = ...) -> None: ...

class SecurityEvent(_message.Message):
    __slots__ = ("timestamp_ms", "event_type", "severity", "client_ip", "rule_id", "description", "request_id", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    timestamp_ms: int
    event_type: str
    severity: str
    client_ip: str
    rule_id: str
    description: str
    request_id: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, timestamp_ms: _Optional[int] = ..., event_type: _Optional[str] = ..., severity: _Optional[str] = ..., client_ip: _Optional[str] = ..., rule_id: _Optional[str] = ..., description: _Optional[str] = ..., request_id: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SecurityEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[SecurityEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[SecurityEvent, _Mapping]]] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("welcome", "update", "log_ack")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    LOG_ACK_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    update: ResourceUpdate
    log_ack: LogAck
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., update: _Optional[_Union[ResourceUpdate, _Mapping]] = ..., log_ack: _Optional[_Union[LogAck, _Mapping]] = ...) -> None: ...

class LogAck(_message.Message):
    __slots__ = ("source", "offset_end", "stored", "malformed")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_END_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    MALFORMED_FIELD_NUMBER: _ClassVar[int]
    source: str
    offset_end: int
    stored: int
    malformed: int
    def __init__(self, source: _Optional[str] = ..., offset_end: _Optional[int] = ..., stored: _Optional[int] = ..., malformed: _Optional[int] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("replica", "server_time")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    replica: str
    server_time: int
    def __init__(self, replica: _Optional[str] = ..., server_time: _Optional[int] = ...) -> None: ...

class ResourceUpdate(_message.Message):
    __slots__ = ("type", "version", "nonce", "checksum", "certificates", "waf_rules", "config", "acme_challenges", "emergency_rules", "modsecurity")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    WAF_RULES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ACME_CHALLENGES_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_RULES_FIELD_NUMBER: _ClassVar[int]
    MODSECURITY_FIELD_NUMBER: _ClassVar[int]
    type: str
    version: int
    nonce: str
    checksum: str
    certificates: CertificateSet
    waf_rules: FileContent
    config: FileContent
    acme_challenges: ChallengeSet
    emergency_rules: EmergencyRuleSet
    modsecurity: FileContent
    def __init__(self, type: _Optional[str] = ..., version: _Optional[int] = ..., nonce: _Optional[str] = ..., checksum: _Optional[str] = ..., certificates: _Optional[_Union[CertificateSet, _Mapping]] = ..., waf_rules: _Optional[_Union[FileContent, _Mapping]] = ..., config: _Optional[_Union[FileContent, _Mapping]] = ..., acme_challenges: _Optional[_Union[ChallengeSet, _Mapping]] = ..., emergency_rules: _Optional[_Union[EmergencyRuleSet, _Mapping]] = ..., modsecurity: _Optional[_Union[FileContent, _Mapping]] = ...) -> None: ...

class Certificate(_message.Message):
    __slots__ = ("name", "domains", "cert_pem", "chain_pem", "key_pem", "temporary", "serial", "fingerprint", "not_after", "version_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    TEMPORARY_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    domains: _containers.RepeatedScalarFieldContainer[str]
    cert_pem: str
    chain_pem: str
    key_pem: str
    temporary: bool
    serial: str
    fingerprint: str
    not_after: int
    version_id: int
    def __init__(self, name: _Optional[str] = ..., domains: _Optional[_Iterable[str]] = ..., cert_pem: _Optional[str] = ..., chain_pem: _Optional[str] = ..., key_pem: _Optional[str] = ..., temporary: _Optional[bool] = ..., serial: _Optional[str] = ..., fingerprint: _Optional[str] = ..., not_after: _Optional[int] = ..., version_id: _Optional[int] = ...) -> None: ...

class CertificateSet(_message.Message):
    __slots__ = ("certificates",)
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    certificates: _containers.RepeatedCompositeFieldContainer[Certificate]
    def __init__(self, certificates: _Optional[_Iterable[_Union[Certificate, _Mapping]]] = ...) -> None: ...

class Challenge(_message.Message):
    __slots__ = ("domain", "token", "key_authorization")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEY_AUTHORIZATION_FIELD_NUMBER: _ClassVar[int]
    domain: str
    token: str
    key_authorization: str
    def __init__(self, domain: _Optional[str] = ..., token: _Optional[str] = ..., key_authorization: _Optional[str] = ...) -> None: ...

class ChallengeSet(_message.Message):
    __slots__ = ("challenges",)
    CHALLENGES_FIELD_NUMBER: _ClassVar[int]
    challenges: _containers.RepeatedCompositeFieldContainer[Challenge]
    def __init__(self, challenges: _Optional[_Iterable[_Union[Challenge, _Mapping]]] = ...) -> None: ...

class FileContent(_message.Message):
    __slots__ = ("name", "content")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    content: str
    def __init__(self, name: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class EmergencyRule(_message.Message):
    __slots__ = ("id", "kind", "value", "action", "expires_at", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    value: str
    action: str
    expires_at: int
    reason: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., value: _Optional[str] = ..., action: _Optional[str] = ..., expires_at: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class EmergencyRuleSet(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[EmergencyRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[EmergencyRule, _Mapping]]] = ...) -> None: ...

class FetchResourceRequest(_message.Message):
    __slots__ = ("instance_id", "group", "type")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    group: str
    type: str
    def __init__(self, instance_id: _Optional[str] = ..., group: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class StatusReport(_message.Message):
    __slots__ = ("instance_id", "status", "running_versions", "message")
    class RunningVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    status: str
    running_versions: _containers.ScalarMap[str, int]
    message: str
    def __init__(self, instance_id: _Optional[str] = ..., status: _Optional[str] = ..., running_versions: _Optional[_Mapping[str, int]] = ..., message: _Optional[str] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    def __init__(self, accepted: _Optional[bool] = ...) -> None: ...
