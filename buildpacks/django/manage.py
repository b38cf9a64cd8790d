#!/usr/bin/env python
"""manage.py added by paas: the project has none. Django's standard one; the
settings come from DJANGO_SETTINGS_MODULE (the paas settings shim)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paas_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
