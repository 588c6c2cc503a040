"""The Gateway's own files imported as versions — from the shell and from admin — using the shipped examples:
YAML is normalised into what the Gateway's loader accepts (each change a warning), a SecRule file is kept byte for
byte and refused by validation when the Gateway would run it differently from how it reads."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from tests.waf_support import people
from waf_config.formats import read_waf_rules
from waf_config.gateway_config import read_gateway_config
from waf_config.models import RuleSet, RuleSetVersion

pytestmark = pytest.mark.django_db

EXAMPLES = Path(__file__).parent / "test_waf_examples"


def run(*args: str) -> str:
    out = StringIO()
    call_command("import_waf_file", *args, stdout=out)
    return out.getvalue()


def test_shipped_examples_import_from_the_shell() -> None:
    people()
    out = run(str(EXAMPLES / "waf-rules.yaml"), "--rule-set", "edge", "--kind", "waf_rules", "--author", "alice")
    version = RuleSetVersion.objects.get(rule_set__name="edge")
    # the example lacks every metadata map: the Gateway would reject it; the import adds them and says so
    assert out.count("import warning:") == 20 and "metadata" in out
    assert (version.state, version.validation_status) == ("validated", "valid"), version.validation_errors
    assert read_waf_rules(version.content, strict=True)[1].ok, "the stored file is what the Gateway's loader takes"
    assert version.comment == "imported from waf-rules.yaml (normalised; 20 import warnings)"
    assert version.author.username == "alice"

    out = run(str(EXAMPLES / "gateway.yaml"), "--rule-set", "gw", "--kind", "gateway_config", "--author", "alice")
    config = RuleSetVersion.objects.get(rule_set__name="gw")
    assert "30s" in out and config.validation_status == "valid"
    assert read_gateway_config(config.content, strict=True)[1].ok and "secs: 30" in config.content

    # the .conf with a `chain`: kept as written, refused by validation with the line and the reason
    text = (EXAMPLES / "200-custom-blocks.conf").read_text()
    out = run(str(EXAMPLES / "200-custom-blocks.conf"), "--rule-set", "blocks", "--kind", "modsecurity",
              "--author", "alice")
    blocks = RuleSetVersion.objects.get(rule_set__name="blocks")
    assert blocks.content == text and blocks.state == "rejected"
    assert "error [chain]" in out and "200031" in out


def test_import_refusals_change_nothing(tmp_path: Path) -> None:
    people()
    bad = tmp_path / "waf-rules.yaml"
    bad.write_text("rules: [unclosed\n")
    with pytest.raises(CommandError, match="cannot be imported as waf_rules"):
        run(str(bad), "--rule-set", "edge", "--kind", "waf_rules", "--author", "alice")
    with pytest.raises(CommandError, match="pass --kind"):
        run(str(EXAMPLES / "waf-rules.yaml"), "--rule-set", "nope", "--author", "alice")
    with pytest.raises(CommandError, match="no user 'mallory'"):
        run(str(EXAMPLES / "waf-rules.yaml"), "--rule-set", "edge", "--kind", "waf_rules", "--author", "mallory")
    with pytest.raises(CommandError, match="lacks the permission"):  # bob approves; he does not author
        run(str(EXAMPLES / "waf-rules.yaml"), "--rule-set", "edge", "--kind", "waf_rules", "--author", "bob")
    assert not RuleSetVersion.objects.exists()


def test_admin_imports_an_uploaded_file_with_its_warnings(client: Any) -> None:
    p = people()
    p.alice.is_staff = True
    p.alice.save()
    p.alice.user_permissions.add(*Permission.objects.filter(codename__in=["add_ruleset", "change_ruleset",
                                                                         "view_ruleset"]))
    client.force_login(p.alice)
    upload = SimpleUploadedFile("waf-rules.yaml", (EXAMPLES / "waf-rules.yaml").read_bytes())
    res = client.post("/admin/waf_config/ruleset/add/", {
        "name": "edge", "kind": "waf_rules", "description": "", "new_content": "", "new_comment": "",
        "import_file": upload, "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"},
        follow=True)
    page = res.content.decode()
    assert res.status_code == 200
    version = RuleSetVersion.objects.get(rule_set=RuleSet.objects.get(name="edge"))
    assert version.validation_status == "valid" and version.author == p.alice
    assert "imported from waf-rules.yaml: validated (20 import warnings" in page
    assert page.count("<li class=\"warning\">Import: ") == 20 and "metadata" in page  # admin capitalises
