"""Field encryption at rest: MultiFernet over FIELD_ENCRYPTION_KEYS (newest key first, all decrypt)."""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class DecryptionError(Exception):
    """The ciphertext was made with a key that is no longer in FIELD_ENCRYPTION_KEYS (or is corrupt)."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ValueError("FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key "
                         "(32 url-safe base64 bytes; make one with `python -c \"from cryptography.fernet import "
                         "Fernet; print(Fernet.generate_key().decode())\"`)") from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: bytes) -> bytes:
    return fernet().encrypt(plaintext)


def decrypt(token: bytes) -> bytes:
    try:
        return fernet().decrypt(token)
    except InvalidToken as exc:
        raise DecryptionError("cannot decrypt: no FIELD_ENCRYPTION_KEYS entry matches this value") from exc


class EncryptedBytesField(models.BinaryField):
    """Bytes stored as a Fernet token: the database and its backups only ever hold ciphertext.

    Not editable in admin forms; ``dumpdata`` shows ``[encrypted]``, never the plaintext.
    """

    description = "Bytes encrypted at rest with FIELD_ENCRYPTION_KEYS"
    python_type: type = bytes
    # what django-stubs' plugin gives a model attribute of this field (BinaryField's says bytes | memoryview)
    _pyi_private_set_type: bytes
    _pyi_private_get_type: bytes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def _decode(self, plaintext: bytes) -> Any:
        return plaintext

    def _encode(self, value: Any) -> bytes:
        return value

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        return self._decode(decrypt(bytes(value)))

    def to_python(self, value: Any) -> Any:
        if value is None or isinstance(value, self.python_type):
            return value
        return self._decode(decrypt(bytes(value)))

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None:
            return None
        if not isinstance(value, self.python_type):
            raise TypeError(f"{self.name}: takes {self.python_type.__name__}, not {type(value).__name__}")
        return super().get_db_prep_value(encrypt(self._encode(value)), connection, prepared)

    def value_to_string(self, obj: Any) -> str:
        return "[encrypted]"


class EncryptedTextField(EncryptedBytesField):
    """A text secret (PEM private key, account key, TSIG or EAB key, token); the Python value is ``str``."""

    description = "Text encrypted at rest with FIELD_ENCRYPTION_KEYS"
    python_type = str
    _pyi_private_set_type: str  # type: ignore[assignment]
    _pyi_private_get_type: str  # type: ignore[assignment]

    def _decode(self, plaintext: bytes) -> str:
        return plaintext.decode()

    def _encode(self, value: str) -> bytes:
        return value.encode()
