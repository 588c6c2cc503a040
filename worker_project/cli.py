"""`gateway-worker ...` is `manage.py ...` for an installed package."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
