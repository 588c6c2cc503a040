"""The audit trail: hash chain, first broken link named, PostgreSQL refusing UPDATE and DELETE."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction

from audit.models import ActorType, AuditEvent
from audit.services import (
    GENESIS_HASH,
    Actor,
    event_hash,
    record_automation_event,
    record_event,
    record_person_event,
    verify_chain,
)

pytestmark = pytest.mark.django_db


def make_chain(n: int = 4) -> list[AuditEvent]:
    user = User.objects.create_user("alice", password="x")
    events = [record_person_event(user, "rule_set.created", obj=user, after={"name": "base", "n": 1.5})]
    events += [record_automation_event("certificates.renew_certificate", "certificate.renewed",
                                       summary=f"renewal {i}", before={"v": i}, after={"v": i + 1})
               for i in range(n - 1)]
    return events


def sql_update_bypassing_trigger(sql: str, params: list) -> None:
    """Tamper as an attacker with table ownership would: disable the trigger (PostgreSQL) and edit."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


def test_events_chain_and_verify() -> None:
    events = make_chain(4)
    assert events[0].prev_hash == GENESIS_HASH
    for prev, event in zip(events, events[1:], strict=False):
        assert event.prev_hash == prev.hash
    assert events[0].actor == "alice" and events[0].actor_type == ActorType.PERSON
    assert events[0].object_type == "auth.user"
    assert events[0].object_id == str(User.objects.get(username="alice").pk)
    assert events[1].actor_type == ActorType.AUTOMATION
    reloaded = AuditEvent.objects.get(pk=events[0].pk)
    assert event_hash(reloaded) == reloaded.hash  # the hashed content survives the database round trip
    assert verify_chain() == (4, None)
    call_command("verify_audit_chain")


def test_edited_row_is_named_as_first_broken_link() -> None:
    events = make_chain(5)
    sql_update_bypassing_trigger("UPDATE audit_auditevent SET summary = %s WHERE id = %s",
                                 ["nothing happened", events[2].pk])
    checked, broken = verify_chain()
    assert broken is not None and broken.event_id == events[2].pk
    assert "edited" in broken.reason and checked == 3
    with pytest.raises(CommandError, match=f"audit event #{events[2].pk}: hash does not match"):
        call_command("verify_audit_chain")


def test_removed_row_breaks_the_next_link() -> None:
    events = make_chain(5)
    sql_update_bypassing_trigger("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    _, broken = verify_chain()
    assert broken is not None and broken.event_id == events[2].pk
    assert f"does not match event #{events[0].pk}" in broken.reason


def test_edited_before_after_json_is_detected() -> None:
    events = make_chain(3)
    sql_update_bypassing_trigger("UPDATE audit_auditevent SET after = %s WHERE id = %s",
                                 ['{"v": 999}', events[1].pk])
    assert verify_chain()[1].event_id == events[1].pk


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_postgresql_trigger_refuses_update_and_delete() -> None:
    event = make_chain(1)[0]
    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(summary="rewritten")
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor = 'mallory'")
    assert AuditEvent.objects.get(pk=event.pk).summary == ""
    assert verify_chain() == (1, None)


def test_bad_input_is_refused_and_records_nothing() -> None:
    with pytest.raises(ValueError, match="authenticated user"):
        record_person_event(AnonymousUser(), "x.y")
    with pytest.raises(ValueError, match="needs an action"):
        record_event(Actor.automation("t"), "")
    with pytest.raises(ValueError, match="actor_type 'robot'"):
        record_event("t", "x.y", actor_type="robot")
    assert AuditEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_one_chain() -> None:
    """Two writers at once never chain onto the same predecessor (advisory lock / SQLite write lock)."""
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(15):
                record_automation_event(name, "test.append", summary=str(i))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(f"writer-{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert verify_chain() == (45, None)
    assert len(set(AuditEvent.objects.values_list("prev_hash", flat=True))) == 45
