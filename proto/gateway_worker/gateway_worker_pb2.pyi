from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthCheckRequest(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: str
    def __init__(self, service: _Optional[str] = ...) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ("status",)
    class ServingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[HealthCheckResponse.ServingStatus]
        SERVING: _ClassVar[HealthCheckResponse.ServingStatus]
        NOT_SERVING: _ClassVar[HealthCheckResponse.ServingStatus]
        SERVICE_UNKNOWN: _ClassVar[HealthCheckResponse.ServingStatus]
    UNKNOWN: HealthCheckResponse.ServingStatus
    SERVING: HealthCheckResponse.ServingStatus
    NOT_SERVING: HealthCheckResponse.ServingStatus
    SERVICE_UNKNOWN: HealthCheckResponse.ServingStatus
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: HealthCheckResponse.ServingStatus
    def __init__(self, status: _Optional[_Union[HealthCheckResponse.ServingStatus, str]] = ...) -> None: ...

class CertificateRequest(_message.Message):
    __slots__ = ("domain", "certificate_type")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    domain: str
    certificate_type: str
    def __init__(self, domain: _Optional[str] = ..., certificate_type: _Optional[str] = ...) -> None: ...

class CertificateResponse(_message.Message):
    __slots__ = ("domain", "certificate_pem", "private_key_pem", "certificate_chain_pem", "expires_at", "is_temporary", "certificate_id")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    IS_TEMPORARY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    domain: str
    certificate_pem: str
    private_key_pem: str
    certificate_chain_pem: str
    expires_at: int
    is_temporary: bool
    certificate_id: str
    def __init__(self, domain: _Optional[str] = ..., certificate_pem: _Optional[str] = ..., private_key_pem: _Optional[str] = ..., certificate_chain_pem: _Optional[str] = ..., expires_at: _Optional[int] = ..., is_temporary: _Optional[bool] = ..., certificate_id: _Optional[str] = ...) -> None: ...

class CertificateWatchRequest(_message.Message):
    __slots__ = ("gateway_id", "domains")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    domains: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gateway_id: _Optional[str] = ..., domains: _Optional[_Iterable[str]] = ...) -> None: ...

class CertificateUpdate(_message.Message):
    __slots__ = ("domain", "certificate_pem", "private_key_pem", "certificate_chain_pem", "expires_at", "is_temporary", "certificate_id", "update_type")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    IS_TEMPORARY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    domain: str
    certificate_pem: str
    private_key_pem: str
    certificate_chain_pem: str
    expires_at: int
    is_temporary: bool
    certificate_id: str
    update_type: str
    def __init__(self, domain: _Optional[str] = ..., certificate_pem: _Optional[str] = ..., private_key_pem: _Optional[str] = ..., certificate_chain_pem: _Optional[str] = ..., expires_at: _Optional[int] = ..., is_temporary: _Optional[bool] = ..., certificate_id: _Optional[str] = ..., update_type: _Optional[str] = ...) -> None: ...

class ConfigurationRequest(_message.Message):
    __slots__ = ("gateway_id", "config_type", "config_version")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    config_type: str
    config_version: str
    def __init__(self, gateway_id: _Optional[str] = ..., config_type: _Optional[str] = ..., config_version: _Optional[str] = ...) -> None: ...

class ConfigurationResponse(_message.Message):
    __slots__ = ("config_type", "config_version", "config_data", "updated_at", "checksum")
    CONFIG_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DATA_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    config_type: str
    config_version: str
    config_data: str
    updated_at: int
    checksum: str
    def __init__(self, config_type: _Optional[str] = ..., config_version: _Optional[str] = ..., config_data: _Optional[str] = ..., updated_at: _Optional[int] = ..., checksum: _Optional[str] = ...) -> None: ...

class UpdateConfigurationRequest(_message.Message):
    __slots__ = ("gateway_id", "config_type", "config_data", "checksum")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DATA_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    config_type: str
    config_data: str
    checksum: str
    def __init__(self, gateway_id: _Optional[str] = ..., config_type: _Optional[str] = ..., config_data: _Optional[str] = ..., checksum: _Optional[str] = ...) -> None: ...

class UpdateConfigurationResponse(_message.Message):
    __slots__ = ("success", "message", "config_version")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    config_version: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., config_version: _Optional[str] = ...) -> None: ...

class ConfigurationWatchRequest(_message.Message):
    __slots__ = ("gateway_id", "config_types")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TYPES_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    config_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gateway_id: _Optional[str] = ..., config_types: _Optional[_Iterable[str]] = ...) -> None: ...

class ConfigurationUpdate(_message.Message):
    __slots__ = ("config_type", "config_version", "config_data", "updated_at", "checksum", "update_type")
    CONFIG_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DATA_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    config_type: str
    config_version: str
    config_data: str
    updated_at: int
    checksum: str
    update_type: str
    def __init__(self, config_type: _Optional[str] = ..., config_version: _Optional[str] = ..., config_data: _Optional[str] = ..., updated_at: _Optional[int] = ..., checksum: _Optional[str] = ..., update_type: _Optional[str] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("gateway_id", "timestamp", "level", "message", "source_ip", "target_host", "method", "path", "status_code", "response_time_ms", "bytes_sent", "bytes_received", "user_agent", "session_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    TARGET_HOST_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    timestamp: int
    level: str
    message: str
    source_ip: str
    target_host: str
    method: str
    path: str
    status_code: int
    response_time_ms: int
    bytes_sent: int
    bytes_received: int
    user_agent: str
    session_id: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, gateway_id: _Optional[str] = ..., timestamp: _Optional[int] = ..., level: _Optional[str] = ..., message: _Optional[str] = ..., source_ip: _Optional[str] = ..., target_host: _Optional[str] = ..., method: _Optional[str] = ..., path: _Optional[str] = ..., status_code: _Optional[int] = ..., response_time_ms: _Optional[int] = ..., bytes_sent: _Optional[int] = ..., bytes_received: _Optional[int] = ..., user_agent: _Optional[str] = ..., session_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LogProcessingResponse(_message.Message):
    __slots__ = ("success", "message", "processed_count", "error_count")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    processed_count: int
    error_count: int
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., processed_count: _Optional[int] = ..., error_count: _Optional[int] = ...) -> None: ...

class MetricsRequest(_message.Message):
    __slots__ = ("gateway_id", "timestamp_from", "timestamp_to")
    GATEWAY_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FROM_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_TO_FIELD_NUMBER: _ClassVar[int]
    gateway_id: str
    timestamp_from: int
    timestamp_to: int
    def __init__(self, gateway_id: _Optional[str] = ..., timestamp_from: _Optional[int] = ..., timestamp_to: _Optional[int] = ...) -> None: ...

class MetricData(_message.Message):
    __slots__ = ("name", "type", "value", "timestamp", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    value: float
    timestamp: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., value: _Optional[float] = ..., timestamp: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class MetricsResponse(_message.Message):
    __slots__ = ("metrics",)
    METRICS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricData]
    def __init__(self, metrics: _Optional[_Iterable[_Union[MetricData, _Mapping]]] = ...) -> None: ...
